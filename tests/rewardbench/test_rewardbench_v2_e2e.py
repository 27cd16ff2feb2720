"""RewardBench 2 end to end: the hand-made fixture in the official layout (tests/fixtures/reward-bench-2-tiny.jsonl: a
tie inside a prompt, a Ties subset with ref/tied ids), loading from jsonl and parquet, the engine's batching, and
``litcpt rewardbench --version 2`` on a tiny reward model and a tiny DPO model, every score checked against a
one-sequence-at-a-time loop."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from litgpt import Tokenizer

from litcpt import assets
from litcpt.data.preference.best_of_n import collate_groups, load_best_of_n_rows, tokenize_groups
from litcpt.rewardbench.engine_v2 import score_groups, summarize_groups
from litcpt.rewardbench.v2 import final_score, subset_scores
from litcpt.runtime.checkpoint import save_litgpt_dir
from tests.conftest import make_checkpoint, tiny_config
from tests.helpers import run_function_on_two_ranks
from tests.rewardbench.test_rewardbench_conventions import _gpt, logps_by_loop

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "reward-bench-2-tiny.jsonl"


def tokenizer():
    return Tokenizer(assets.tokenizer_dir())


def fixture_rows():
    return [json.loads(line) for line in FIXTURE.read_text().splitlines()]


def sequences(row, tok):
    """litcpt's convention, written out: prompt tokens, then each completion's tokens with EOS."""
    prompt = tok.encode(row["prompt"]).tolist()
    return [(prompt, tok.encode(text, bos=False, eos=True).tolist()) for text in row["chosen"] + row["rejected"]]


def expected_results(rows, scores):
    return subset_scores({"subset": r["subset"], "id": r["id"], "num_correct": r["num_correct"], "scores": s}
                         for r, s in zip(rows, scores))


# ------------------------------------------------------------------------------------------------------- data
def test_fixture_loads_from_jsonl_and_parquet(tmp_path):
    rows = load_best_of_n_rows(FIXTURE)
    assert len(rows) == 10 and rows[7].id == "tied:0" and rows[7].num_correct == 3 and len(rows[7].completions) == 6
    assert rows[1].completions[0] == rows[1].completions[2]               # a tie inside a prompt
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(fixture_rows()), tmp_path / "rb2.parquet")
    assert load_best_of_n_rows(tmp_path / "rb2.parquet") == rows


def test_bad_rows_name_file_line_and_field(tmp_path):
    bad = fixture_rows()[:2]
    bad[1]["num_correct"] = 9
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(ValueError, match=r"bad.jsonl: line 2: field 'num_correct': 9 but 'chosen' holds 1 "
                                         r"completion\(s\): expected num_correct == len\(chosen\)"):
        load_best_of_n_rows(path)
    bad[1]["num_correct"] = 3  # in range, but only one completion is chosen: rejected ones would count as correct
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(ValueError, match=r"bad.jsonl: line 2: field 'num_correct': 3 but 'chosen' holds 1 "
                                         r"completion\(s\): expected num_correct == len\(chosen\)"):
        load_best_of_n_rows(path)
    bad[1] = {**fixture_rows()[1], "rejected": [1, 2]}
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(ValueError, match="line 2: field 'rejected': expected a list of strings"):
        load_best_of_n_rows(path)


# The official rule (allenai/reward-bench at 05a9005, rewardbench/utils.py, used by scripts/run_v2.py): the
# completions are chosen + rejected in that order (load_bon_dataset_v2), regrouped total_completions at a time
# (reroll_and_score_dataset, where scores[0] alone is the correct one outside Ties) and, in Ties, completion i is
# correct iff i < num_correct (process_single_model). The dataset's num_correct / num_incorrect / total_completions
# count chosen / rejected / both, so any other value would score rejected completions as correct (or the reverse).
@pytest.mark.parametrize(("change", "message"), [
    ({"num_correct": 2}, r"field 'num_correct': 2 but 'chosen' holds 3 completion\(s\): expected num_correct == "
                         r"len\(chosen\) \(RewardBench 2: the first num_correct of chosen \+ rejected are the correct"),
    ({"num_correct": 4}, r"field 'num_correct': 4 but 'chosen' holds 3 completion\(s\)"),
    ({"num_correct": "3"}, r"field 'num_correct': expected an integer \(len\(chosen\) = 3\), got '3'"),
    ({"num_correct": True}, r"field 'num_correct': expected an integer \(len\(chosen\) = 3\), got True"),
    ({"num_incorrect": 2}, r"field 'num_incorrect': 2 but 'rejected' holds 3 completion\(s\): expected "
                           r"num_incorrect == len\(rejected\)"),
    ({"total_completions": 7}, r"field 'total_completions': 7 but chosen \+ rejected hold 6 completion\(s\)"),
    ({"chosen": [], "num_correct": None, "total_completions": None},
     r"field 'chosen': expected at least one completion \(the correct ones\), got an empty list"),
])
def test_counts_follow_the_official_rule(tmp_path, change, message):
    tied = fixture_rows()[7]  # tied:0, 3 chosen, 3 rejected, num_correct 3
    assert (len(tied["chosen"]), len(tied["rejected"]), tied["num_correct"]) == (3, 3, 3)
    good = {**tied, "num_incorrect": 3}
    path = tmp_path / "rb2.jsonl"
    path.write_text(json.dumps(good) + "\n")
    row = load_best_of_n_rows(path)[0]  # the first len(chosen) completions are the correct ones, as the lists say
    assert row.num_correct == 3 and row.completions == tuple(tied["chosen"] + tied["rejected"])
    path.write_text(json.dumps({k: v for k, v in {**good, **change}.items() if v is not None}) + "\n")
    with pytest.raises(ValueError, match=r"rb2.jsonl: line 1: " + message):
        load_best_of_n_rows(path)
    without = {k: v for k, v in good.items() if k not in ("num_correct", "num_incorrect", "total_completions")}
    path.write_text(json.dumps(without) + "\n")
    assert load_best_of_n_rows(path)[0] == row  # the counts are optional: the lists say it all


def test_collate_groups_layout():
    groups, _ = tokenize_groups(load_best_of_n_rows(FIXTURE)[:2], tokenizer())
    batch = collate_groups(groups)
    assert batch["group"].tolist() == [0] * 4 + [1] * 4 and batch["sizes"] == [4, 4]
    for k, (ids, n) in enumerate(zip([r for g in groups for r in g.rows], batch["prompt_lengths"].tolist())):
        assert batch["input_ids"][k, : len(ids)].tolist() == ids.tolist()
        assert batch["response_mask"][k].nonzero().flatten().tolist() == list(range(n, len(ids)))
    assert batch["shared"].tolist() == [groups[0].prompt_lengths[0], groups[1].prompt_lengths[0]]


# ----------------------------------------------------------------------------------------------------- engine
class ResponseLengthScorer:
    """score = number of response tokens of the row: a feature with known best-of-N results."""

    device = torch.device("cpu")

    def score_rows(self, batch, rows_per_forward=None):
        return {"score": batch["response_mask"].sum(-1).float()}


@pytest.mark.parametrize("batch_size", [1, 3, 100])
def test_engine_keeps_every_prompt_once_in_order(batch_size):
    tok = tokenizer()
    rows = fixture_rows()
    groups, _ = tokenize_groups(load_best_of_n_rows(FIXTURE), tok)
    scores = score_groups(ResponseLengthScorer(), groups, batch_size=batch_size, rank=0, world_size=1)
    expected = [[float(len(a)) for _, a in sequences(r, tok)] for r in rows]
    assert [list(s.scores) for s in scores] == expected
    summary = summarize_groups(scores)
    assert {k: v for k, (v, _) in summary.subsets.items()} == {k: v for k, (v, _) in
                                                               expected_results(rows, expected).items()}
    assert summary.subsets["Math"][0] == 0.5            # "12 + 30 = 42." ties "12 + 30 = 32." at the top: 1/2
    assert summary.groups["RewardBench 2"] == ["Factuality", "Precise IF", "Math", "Safety", "Focus", "Ties"]
    assert summary.sections["Score"] == pytest.approx(final_score(summary.subsets))


# ----------------------------------------------------------------------------------------------- the command
def test_command_version_2_reward_model(tmp_path, capsys):
    from litcpt.commands.rewardbench import main
    from litcpt.models.reward import RewardModel, load_reward_model

    config = tiny_config(block_size=96)
    rm = RewardModel(config, checkpoint_dir=make_checkpoint(tmp_path / "base", config))
    weights, extra = rm.litgpt_export(rm.state_dict())
    save_litgpt_dir(weights, config, tmp_path / "rm", tokenizer_dir=assets.tokenizer_dir(), extra_objects=extra)
    results = main(tmp_path / "rm", FIXTURE, version=2, out_dir=tmp_path / "out", plot=True, batch_size=3,
                   accelerator="cpu")
    rm = load_reward_model(tmp_path / "rm")
    tok, rows = tokenizer(), fixture_rows()
    with torch.no_grad():
        loop = [[rm(torch.tensor([p + a]), torch.tensor([len(p + a) - 1])).item() for p, a in sequences(r, tok)]
                for r in rows]
    records = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    for record, want in zip(records, loop):
        assert record["scores"] == pytest.approx(want, abs=1e-4)
    # identical completions score alike (to float rounding: rows at other places of a batch may differ in the
    # last bit, as in any batched scorer; the exact 1/k tie rule is checked with ResponseLengthScorer above)
    assert records[1]["scores"][0] == pytest.approx(records[1]["scores"][2], abs=1e-5)
    produced = [r["scores"] for r in records]
    for subset, (value, n) in expected_results(rows, produced).items():
        assert results[subset] == pytest.approx(value, abs=1e-12) and results["litcpt"]["num_pairs"][subset] == n
    assert results["litcpt"]["sections"]["Score"] == pytest.approx(final_score(expected_results(rows, produced)))
    assert results["litcpt"]["version"] == 2 and results["litcpt"]["share_prompt"] is True
    assert (tmp_path / "out" / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "RewardBench 2" in out and "prompts" in out and "Ties" in out


@pytest.mark.parametrize("convention", ["litcpt", "rewardbench"])
def test_command_version_2_dpo_model(tmp_path, convention):
    from litcpt.commands.rewardbench import main
    from litcpt.rewardbench.conventions import rewardbench_sequences

    config = tiny_config(block_size=96)
    policy_dir = make_checkpoint(tmp_path / "policy", config, seed=0)
    ref_dir = make_checkpoint(tmp_path / "ref", config, seed=1)
    (policy_dir / "dpo.json").write_text(json.dumps({"beta": 0.5, "reference_checkpoint_dir": str(ref_dir),
                                                     "average_logps": False}))
    results = main(policy_dir, FIXTURE, version=2, out_dir=tmp_path / "out", batch_size=2, share_group=2,
                   accelerator="cpu", convention=convention)
    policy, ref = _gpt(policy_dir), _gpt(ref_dir)
    tok, rows = tokenizer(), fixture_rows()
    records = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    beta = 0.5 if convention == "litcpt" else 1.0
    for row, record in zip(rows, records):
        seqs = (sequences(row, tok) if convention == "litcpt" else
                rewardbench_sequences(tok, row["prompt"], row["chosen"] + row["rejected"], max_length=96,
                                      max_prompt_length=48)[0])
        want = [beta * (logps_by_loop(policy, p, a) - logps_by_loop(ref, p, a)) for p, a in seqs]
        assert record["scores"] == pytest.approx(want, abs=1e-4)
        assert record["logps"] == pytest.approx([logps_by_loop(policy, p, a) for p, a in seqs], abs=1e-4)
    produced = [r["scores"] for r in records]
    for subset, (value, _) in expected_results(rows, produced).items():
        assert results[subset] == pytest.approx(value, abs=1e-12)
    assert results["model_type"] == "DPO" and results["litcpt"]["convention"] == convention


def _rank_worker(rank, world_size, port, out_file):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        groups, _ = tokenize_groups(load_best_of_n_rows(FIXTURE), tokenizer())
        scores = score_groups(ResponseLengthScorer(), groups, batch_size=2)   # rank/world from torch.distributed
        Path(f"{out_file}.{rank}").write_text(json.dumps([s.to_record() for s in scores]))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_score_every_prompt_exactly_once(tmp_path):
    run_function_on_two_ranks(f"{__name__}:_rank_worker", str(tmp_path / "scores"))
    rank0, rank1 = (json.loads((tmp_path / f"scores.{r}").read_text()) for r in (0, 1))
    assert rank0 == rank1
    groups, _ = tokenize_groups(load_best_of_n_rows(FIXTURE), tokenizer())
    single = score_groups(ResponseLengthScorer(), groups, batch_size=2, rank=0, world_size=1)
    assert rank0 == [s.to_record() for s in single]


def test_dpo_rows_with_no_response_token_left_name_the_file(tmp_path):
    """A DPO model scores response tokens only: a max_length that leaves none is a one-line error naming the data
    file and the row (it was a NameError)."""
    from litcpt.commands.rewardbench import main

    config = tiny_config(block_size=96)
    policy_dir = make_checkpoint(tmp_path / "policy", config, seed=0)
    (policy_dir / "dpo.json").write_text(json.dumps({"beta": 0.5, "reference_checkpoint_dir": None,
                                                     "average_logps": False}))
    with pytest.raises(ValueError, match=r"reward-bench-2-tiny\.jsonl: row \d+ completion \d+: no response token"):
        main(policy_dir, FIXTURE, version=2, out_dir=tmp_path / "out", accelerator="cpu", ref_free=True,
             max_length=1)
