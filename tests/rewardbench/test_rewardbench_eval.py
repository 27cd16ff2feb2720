"""`litcpt rewardbench` and its scoring engine: batching, known accuracies and sections, RewardBench's tie rule,
DPO implicit rewards by hand, reward-model scores, output files, 2-rank sharding, bad inputs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from litgpt import GPT, Config, Tokenizer

from litcpt import assets
from litcpt.data.preference.pair_rows import PreferencePair
from litcpt.data.preference.pair_tokens import tokenize_pairs
from litcpt.rewardbench import section_scores
from litcpt.rewardbench.engine import PairScore, plan_batches, plan_calls, score_pairs, score_tokenized
from litcpt.rewardbench.results import format_table, results_json, summarize, write_outputs
from litcpt.rewardbench.scorers import ImplicitRewardScorer, RewardModelScorer
from litcpt.runtime.checkpoint import load_weights, save_litgpt_dir
from tests.conftest import make_checkpoint, tiny_config
from tests.helpers import run_function_on_two_ranks, run_litcpt

LONG, SHORT = " one two three four five six", " one"
TIE_A, TIE_B = " Yes", " No"          # 3 tokens each (with EOS): equal length scores
# subset -> (chosen, rejected) responses; the LengthScorer prefers the longer response
KNOWN = {
    "alpacaeval-easy": [(LONG, SHORT)] * 3,                      # 3/3
    "alpacaeval-hard": [(LONG, SHORT), (SHORT, LONG)],           # 1/2
    "hep-python": [(LONG, SHORT), (TIE_A, TIE_B)],               # 1/2: a tie is wrong
    "math-prm": [(SHORT, LONG)],                                 # 0/1
    "my-own-set": [(LONG, SHORT), (LONG, " two")],               # 2/2, no RewardBench section
}


def known_pairs():
    pairs = []
    for subset, rows in KNOWN.items():
        for k, (chosen, rejected) in enumerate(rows):
            pairs.append(PreferencePair(f"Prompt {len(pairs)} of {subset}:", chosen, rejected, subset=subset,
                                        id=f"{subset}-{k}"))
    return pairs


class LengthScorer:
    """Score = number of response tokens: a 'feature we control' with a known answer for every pair."""

    device = torch.device("cpu")

    def __init__(self):
        self.batch_rows = []

    def __call__(self, batch):
        n = batch["response_mask"].sum(-1).float()
        self.batch_rows.append(batch["input_ids"].shape[0])
        half = n.shape[0] // 2
        return {"chosen": n[:half], "rejected": n[half:], "length_chosen": n[:half]}


def tokenizer():
    return Tokenizer(assets.tokenizer_dir())


def items_of(pairs, max_length=None):
    return tokenize_pairs(pairs, tokenizer(), max_length=max_length)[0]


def _gpt(checkpoint_dir):
    model = GPT(Config.from_file(checkpoint_dir / "model_config.yaml"))
    load_weights(model, checkpoint_dir)
    return model.eval()


def hand_logps(model, ids, prompt_length, average=False):
    with torch.no_grad():
        logits = model(torch.as_tensor(ids).view(1, -1))[0].double()
    terms = [F.log_softmax(logits[t - 1], -1)[int(ids[t])].item() for t in range(max(prompt_length, 1), len(ids))]
    return sum(terms) / len(terms) if average else sum(terms)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rb_rows(pairs):
    return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "subset": p.subset, "id": p.id}
            for p in pairs]


# ---------------------------------------------------------------------------------------------- the engine
def test_plan_batches_longest_first_and_every_pair_once():
    batches = plan_batches([3, 9, 1, 9, 4], 2)
    assert batches == [[1, 3], [4, 0], [2]]
    with pytest.raises(ValueError, match="batch_size"):
        plan_batches([1], 0)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_known_accuracies_sections_and_score_through_the_batching(batch_size):
    pairs = known_pairs()
    items = items_of(pairs)
    assert len(items[6].chosen_ids) == len(items[6].rejected_ids)          # the tie really is one
    scorer = LengthScorer()
    scores = score_tokenized(scorer, items, batch_size=batch_size, rank=0, world_size=1)
    assert [s.index for s in scores] == list(range(len(pairs)))
    assert [s.id for s in scores] == [p.id for p in pairs]
    assert all(rows % 2 == 0 and rows <= 2 * batch_size for rows in scorer.batch_rows)   # chosen+rejected together
    assert all("length_chosen" in s.extras for s in scores)
    summary = summarize(scores)
    assert summary.subsets == {"alpacaeval-easy": (1.0, 3), "alpacaeval-hard": (0.5, 2), "hep-python": (0.5, 2),
                               "math-prm": (0.0, 1), "my-own-set": (1.0, 2)}
    assert summary.groups == {"Chat": ["alpacaeval-easy", "alpacaeval-hard"], "Reasoning": ["hep-python", "math-prm"],
                              "other": ["my-own-set"]}
    chat = (1.0 * 100 + 0.5 * 95) / (100 + 95)                 # example-count weights
    reasoning = (0.5 * 164 + 0.0 * 984) / (164 + 984)          # math-prm weighs 984
    assert summary.sections["Chat"] == pytest.approx(chat)
    assert summary.sections["Reasoning"] == pytest.approx(reasoning)
    assert summary.sections["Score"] == pytest.approx((chat + reasoning) / 2)
    table = format_table(summary)
    assert "alpacaeval-hard" in table and "other" in table and f"{(chat + reasoning) / 2:.4f}" in table


def test_data_without_subset_is_one_subset_reported_as_other():
    pairs = [PreferencePair(f"Prompt {i}", LONG, SHORT) for i in range(3)]
    scores = score_tokenized(LengthScorer(), items_of(pairs), default_subset="hh", rank=0, world_size=1)
    summary = summarize(scores)
    assert summary.subsets == {"hh": (1.0, 3)} and summary.groups == {"other": ["hh"]} and summary.sections == {}
    assert "accuracy (all pairs)" in format_table(summary)


def test_reward_model_scores_equal_one_sequence_at_a_time(tiny_checkpoint):
    from litcpt.models.reward import RewardModel

    torch.manual_seed(0)
    rm = RewardModel(tiny_config(), checkpoint_dir=tiny_checkpoint).eval()
    pairs = known_pairs()
    got = score_pairs(rm, pairs, tokenizer(), batch_size=4)
    with torch.no_grad():
        for (r_c, r_r), item in zip(got, items_of(pairs)):
            for value, ids in ((r_c, item.chosen_ids), (r_r, item.rejected_ids)):
                expected = rm(ids.view(1, -1), torch.tensor([len(ids) - 1])).item()
                assert value == pytest.approx(expected, abs=1e-5)
    assert RewardModelScorer(rm).shares_prompt and not RewardModelScorer(rm, share_prompt=False).shares_prompt
    plain = score_pairs(RewardModelScorer(rm, share_prompt=False), pairs, tokenizer(), batch_size=4)
    assert torch.tensor(plain) == pytest.approx(torch.tensor(got), abs=1e-5)
    rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs[:2]]
    flat = [value for pair in score_pairs(rm, rows, tokenizer()) for value in pair]
    assert flat == pytest.approx([value for pair in got[:2] for value in pair], abs=1e-5)
    with pytest.raises(ValueError, match="row 2: field 'rejected'"):
        score_pairs(rm, [rows[0], {"prompt": "p", "chosen": "c"}], tokenizer())


def test_prompt_sharing_with_unequal_truncated_prompts_scores_like_the_plain_path(tiny_checkpoint):
    """keep_end truncation cuts chosen and rejected prompts differently: only the truly common prefix is shared."""
    from litcpt.models.reward import RewardModel

    torch.manual_seed(0)
    rm = RewardModel(tiny_config(), checkpoint_dir=tiny_checkpoint).eval()
    long_prompt = PreferencePair("word " * 20 + "then a question?", " Short answer.", " A much longer answer " * 3)
    pairs = [long_prompt, *known_pairs()]
    items, _ = tokenize_pairs(pairs, tokenizer(), max_length=30, truncation="keep_end")
    assert items[0].chosen_prompt_length != items[0].rejected_prompt_length
    policy, ref = _gpt(tiny_checkpoint), _gpt(tiny_checkpoint)
    with torch.no_grad():
        ref.lm_head.weight.mul_(0.5)
    for shared, plain in ((RewardModelScorer(rm), RewardModelScorer(rm, share_prompt=False)),
                          (ImplicitRewardScorer(policy, ref), ImplicitRewardScorer(policy, ref, share_prompt=False))):
        for batch_size in (1, 3):
            a = score_tokenized(shared, items, batch_size=batch_size, rank=0, world_size=1, share_group=2)
            b = score_tokenized(plain, items, batch_size=batch_size, rank=0, world_size=1)
            assert [s.index for s in a] == [s.index for s in b] == list(range(len(items)))
            assert [v for s in a for v in (s.chosen, s.rejected)] == pytest.approx(
                [v for s in b for v in (s.chosen, s.rejected)], abs=2e-4)


class SharingScorer(LengthScorer):
    """Records how score_tokenized calls a scorer that shares prompts."""

    shares_prompt = True

    def __init__(self):
        super().__init__()
        self.calls = []

    def __call__(self, batch, *, rows_per_forward=None):
        self.calls.append((batch["input_ids"].shape[0] // 2, rows_per_forward))
        return super().__call__(batch)


def test_a_sharing_scorer_gets_groups_of_batches_and_the_batch_size_as_rows_per_forward():
    pairs = [PreferencePair(f"Prompt {i}" + " more" * (i % 5), LONG, SHORT) for i in range(23)]
    items = items_of(pairs)
    scorer = SharingScorer()
    scores = score_tokenized(scorer, items, batch_size=2, share_group=3, rank=0, world_size=1)
    assert [pairs for pairs, _ in scorer.calls] == [6, 6, 6, 5]          # 12 batches of 2 (the last of 1), 3 a call
    assert {rows for _, rows in scorer.calls} == {2}
    assert [s.index for s in scores] == list(range(len(items)))
    # ranks take batches round-robin first, then group their own: the same sharding as without sharing
    batches = plan_batches([int(i.length) for i in items], 2)
    expected = [[i for b in batches[1:7:2] for i in b], [i for b in batches[7::2] for i in b]]
    assert plan_calls(batches[1::2], 3) == expected
    with pytest.raises(ValueError, match="share_group"):
        score_tokenized(SharingScorer(), items, share_group=0, rank=0, world_size=1)


def test_shared_prompt_bytes_is_the_largest_calls_prompt_keys_and_values(tiny_checkpoint):
    from litcpt.rewardbench.engine import shared_prompt_bytes

    policy, ref = _gpt(tiny_checkpoint), _gpt(tiny_checkpoint)
    items = items_of(known_pairs())
    c = policy.config
    per_token = 2 * c.n_layer * c.n_query_groups * c.head_size * 4  # float32, one model
    prompts = [min(i.chosen_prompt_length, i.rejected_prompt_length) for i in items]
    batches = plan_batches([int(i.length) for i in items], 2)
    largest = max(sum(prompts[i] for b in batches[k : k + 2] for i in b) for k in range(0, len(batches), 2))
    scorer = ImplicitRewardScorer(policy, ref)
    assert shared_prompt_bytes(scorer, items, batch_size=2, share_group=2) == 2 * per_token * largest
    assert shared_prompt_bytes(
        ImplicitRewardScorer(policy, None), items, batch_size=2, share_group=100
    ) == per_token * sum(prompts)
    assert shared_prompt_bytes(ImplicitRewardScorer(policy, ref, share_prompt=False), items) == 0
    assert shared_prompt_bytes(LengthScorer(), items) == 0


def test_prompt_sharing_rejects_left_padded_batches(tiny_checkpoint):
    from litcpt.data.preference.batching import collate_preference

    model = _gpt(tiny_checkpoint)
    batch = collate_preference(items_of(known_pairs()[:3]), padding_side="left")
    with pytest.raises(ValueError, match="right-padded"):
        ImplicitRewardScorer(model, None)(batch, rows_per_forward=2)


@pytest.mark.parametrize("average", [False, True])
def test_dpo_implicit_reward_by_hand(tmp_path, average):
    policy, ref = _gpt(make_checkpoint(tmp_path / "p", seed=0)), _gpt(make_checkpoint(tmp_path / "r", seed=1))
    pairs = known_pairs()[:4]
    items = items_of(pairs)
    beta = 0.25
    with_ref = score_pairs(
        ImplicitRewardScorer(policy, ref, beta=beta, average_logps=average), pairs, tokenizer(), batch_size=3
    )
    ref_free = score_pairs(ImplicitRewardScorer(policy, None, beta=beta, average_logps=average), pairs, tokenizer())
    for item, (r_c, r_r), (f_c, f_r) in zip(items, with_ref, ref_free):
        for ids, prompt, got, got_free in (
            (item.chosen_ids, item.chosen_prompt_length, r_c, f_c),
            (item.rejected_ids, item.rejected_prompt_length, r_r, f_r),
        ):
            lp = hand_logps(policy, ids, prompt, average)
            lr = hand_logps(ref, ids, prompt, average)
            assert got == pytest.approx(beta * (lp - lr), abs=2e-4)
            assert got_free == pytest.approx(beta * lp, abs=2e-4)
    assert ImplicitRewardScorer(policy, ref).shares_prompt  # the default path is prompt sharing
    plain = score_pairs(
        ImplicitRewardScorer(policy, ref, beta=beta, average_logps=average, share_prompt=False), pairs, tokenizer()
    )
    assert torch.tensor(plain) == pytest.approx(torch.tensor(with_ref), abs=2e-4)


def test_policy_equal_to_reference_scores_every_pair_as_a_tie(tiny_checkpoint):
    model = _gpt(tiny_checkpoint)
    scores = score_tokenized(ImplicitRewardScorer(model, model), items_of(known_pairs()), rank=0, world_size=1)
    assert all(s.chosen == s.rejected == 0.0 for s in scores)
    assert all(acc == 0.0 for acc, _ in summarize(scores).subsets.values())  # RewardBench: a tie is wrong


def test_output_files(tmp_path):
    scores = score_tokenized(LengthScorer(), items_of(known_pairs()), rank=0, world_size=1)
    summary = summarize(scores)
    meta = {"model": "m", "ref_model": None, "model_type": "Seq. Classifier", "chat_template": None, "beta": 0.1}
    paths = write_outputs(tmp_path / "out", scores, summary, meta, plot=True)
    results = json.loads(paths["results"].read_text())
    assert results["model"] == "m" and results["model_type"] == "Seq. Classifier"
    assert results["alpacaeval-hard"] == 0.5 and results["my-own-set"] == 1.0  # RewardBench: subsets top level
    assert results["litcpt"]["sections"]["Score"] == pytest.approx(summary.sections["Score"])
    assert results["litcpt"]["num_pairs"]["alpacaeval-easy"] == 3
    assert results["litcpt"]["other_subsets"] == ["my-own-set"] and results["litcpt"]["beta"] == 0.1
    assert section_scores(results) == pytest.approx(summary.sections)  # readable by RewardBench code
    lines = [json.loads(line) for line in paths["scores"].read_text().splitlines()]
    assert len(lines) == 10 and set(lines[0]) >= {"index", "id", "subset", "score_chosen", "score_rejected", "correct"}
    assert [line["correct"] for line in lines][5:7] == [True, False]
    png = paths["plot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert results_json(summary, meta) == results


# ----------------------------------------------------------------------------------------------- the command
def _dpo_dirs(tmp_path, beta=0.5):
    policy = make_checkpoint(tmp_path / "policy", seed=0)
    ref = make_checkpoint(tmp_path / "ref", seed=1)
    (policy / "dpo.json").write_text(
        json.dumps({"beta": beta, "reference_checkpoint_dir": str(ref), "average_logps": False})
    )
    return policy, ref


def test_main_scores_a_dpo_model_with_the_reference_from_dpo_json(tmp_path, capsys):
    from litcpt.commands.rewardbench import main

    policy, ref = _dpo_dirs(tmp_path)
    pairs = known_pairs()
    data = write_jsonl(tmp_path / "rb.jsonl", rb_rows(pairs))
    results = main(policy, data, out_dir=tmp_path / "out", plot=True, batch_size=3, accelerator="cpu")
    assert results["model_type"] == "DPO" and results["ref_model"] == str(ref)
    assert results["litcpt"]["beta"] == 0.5 and results["litcpt"]["pairs"] == len(pairs)
    assert set(KNOWN) <= set(results)
    out = capsys.readouterr().out
    assert "Chat" in out and "Reasoning" in out and "Score" in out and "pairs/s" in out
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"results.json", "scores.jsonl", "accuracy.png"}
    records = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    pm, rm = _gpt(policy), _gpt(ref)
    for record, item in list(zip(records, items_of(pairs)))[:3]:
        expected = 0.5 * (
            hand_logps(pm, item.chosen_ids, item.chosen_prompt_length)
            - hand_logps(rm, item.chosen_ids, item.chosen_prompt_length)
        )
        assert record["score_chosen"] == pytest.approx(expected, abs=2e-4)
        assert record["ref_logps_chosen"] == pytest.approx(
            hand_logps(rm, item.chosen_ids, item.chosen_prompt_length), abs=2e-4
        )
    summary = summarize([PairScore(r["index"], r["subset"], r["score_chosen"], r["score_rejected"]) for r in records])
    assert {k: v for k, (v, _) in summary.subsets.items()} == {k: results[k] for k in summary.subsets}

    free = main(policy, data, ref_free=True, out_dir=tmp_path / "free", accelerator="cpu")
    assert free["model_type"] == "DPO Ref. Free" and free["ref_model"] is None


def test_main_scores_a_reference_free_dpo_checkpoint_without_flags(tmp_path):
    """A SimPO-trained policy's dpo.json says reference_free: scored reference-free without --ref_free."""
    from litcpt.commands.rewardbench import main

    policy = make_checkpoint(tmp_path / "policy", seed=0)
    (policy / "dpo.json").write_text(
        json.dumps({"beta": 2.0, "reference_free": True, "average_logps": True, "reference_checkpoint_dir": None})
    )
    data = write_jsonl(tmp_path / "rb.jsonl", rb_rows(known_pairs()))
    results = main(policy, data, out_dir=tmp_path / "out", accelerator="cpu")
    assert results["model_type"] == "DPO Ref. Free" and results["ref_model"] is None
    assert results["litcpt"]["beta"] == 2.0 and results["litcpt"]["average_logps"] is True


def test_main_scores_a_reward_model_and_counts_ties_as_wrong(tmp_path):
    from litcpt.commands.rewardbench import main
    from litcpt.models.reward import RewardModel

    base = make_checkpoint(tmp_path / "base")
    rm = RewardModel(tiny_config(), checkpoint_dir=base)
    with torch.no_grad():
        rm.head.weight.zero_()
        rm.head.bias.fill_(0.5)  # every response scores 0.5: all ties
    weights, extra = rm.litgpt_export(rm.state_dict())
    save_litgpt_dir(weights, tiny_config(), tmp_path / "rm", tokenizer_dir=assets.tokenizer_dir(), extra_objects=extra)
    data = write_jsonl(tmp_path / "rb.jsonl", rb_rows(known_pairs()))
    results = main(tmp_path / "rm", data, out_dir=tmp_path / "out", accelerator="cpu")
    assert results["model_type"] == "Seq. Classifier"
    assert all(results[subset] == 0.0 for subset in KNOWN)
    assert results["litcpt"]["sections"]["Score"] == 0.0


def test_main_bad_inputs(tmp_path):
    from litcpt.commands.rewardbench import main

    policy, ref = _dpo_dirs(tmp_path)
    good = rb_rows(known_pairs()[:2])
    missing = write_jsonl(tmp_path / "missing.jsonl", [good[0], {k: v for k, v in good[1].items() if k != "rejected"}])
    with pytest.raises(ValueError, match=r"missing.jsonl: line 2: field 'rejected'"):
        main(policy, missing, out_dir=tmp_path / "o")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no preference pairs"):
        main(policy, empty, out_dir=tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl"):
        main(policy, tmp_path / "nowhere.jsonl", out_dir=tmp_path / "o")
    data = write_jsonl(tmp_path / "rb.jsonl", good)
    plain = make_checkpoint(tmp_path / "plain")
    with pytest.raises(ValueError, match="cannot tell"):
        main(plain, data, out_dir=tmp_path / "o")
    with pytest.raises(ValueError, match="no dpo.json naming its reference"):
        main(plain, data, kind="dpo", out_dir=tmp_path / "o")
    other_tok = tmp_path / "other-tok"
    shutil.copytree(ref, other_tok)
    raw = json.loads((other_tok / "tokenizer.json").read_text())
    raw["added_tokens"][0]["content"] = "<|something-else|>"
    (other_tok / "tokenizer.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="policy.*other-tok.*different tokenizers"):
        main(policy, data, ref_checkpoint_dir=other_tok, out_dir=tmp_path / "o")
    with pytest.raises(ValueError, match="block_size"):
        main(policy, data, max_length=10_000, out_dir=tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="reward_model.json"):
        main(plain, data, kind="reward", out_dir=tmp_path / "o")


# ------------------------------------------------------------------------------------------------ 2 ranks
def _rank_worker(rank, world_size, port, policy_dir, ref_dir, out_file):
    policy_dir, ref_dir = Path(policy_dir), Path(ref_dir)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        scorer = ImplicitRewardScorer(_gpt(policy_dir), _gpt(ref_dir), beta=0.1)
        pairs = known_pairs() + [PreferencePair(f"Extra {i}", LONG, TIE_B, subset="hep-go") for i in range(3)]
        scores = score_tokenized(scorer, items_of(pairs), batch_size=2)  # rank/world from torch.distributed
        out_file = f"{out_file}.{rank}"
        with open(out_file, "w") as fp:
            json.dump([s.to_record() for s in scores], fp)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_count_every_pair_exactly_once(tmp_path):
    policy, ref = _dpo_dirs(tmp_path)
    run_function_on_two_ranks(f"{__name__}:_rank_worker", str(policy), str(ref), str(tmp_path / "scores"))
    rank0 = json.loads((tmp_path / "scores.0").read_text())
    rank1 = json.loads((tmp_path / "scores.1").read_text())
    assert rank0 == rank1  # every rank holds the gathered result
    pairs = known_pairs() + [PreferencePair(f"Extra {i}", LONG, TIE_B, subset="hep-go") for i in range(3)]
    single = score_tokenized(
        ImplicitRewardScorer(_gpt(policy), _gpt(ref), beta=0.1), items_of(pairs), batch_size=2, rank=0, world_size=1
    )
    assert [r["index"] for r in rank0] == list(range(len(pairs)))  # 13 pairs, 7 batches over 2 ranks: once each
    for record, expected in zip(rank0, single):
        assert record["score_chosen"] == pytest.approx(expected.chosen, abs=1e-5)
        assert record["score_rejected"] == pytest.approx(expected.rejected, abs=1e-5)
    assert (
        summarize(single).subsets
        == summarize(
            [PairScore(r["index"], r["subset"], r["score_chosen"], r["score_rejected"]) for r in rank0]
        ).subsets
    )


@pytest.mark.slow
@pytest.mark.distributed
def test_cli_with_two_devices_matches_one_device(tmp_path):
    policy, _ = _dpo_dirs(tmp_path)
    data = write_jsonl(tmp_path / "rb.jsonl", rb_rows(known_pairs()))
    for devices in ("1", "2"):
        run_litcpt(
            "rewardbench",
            "--checkpoint_dir",
            str(policy),
            "--data",
            str(data),
            "--batch_size",
            "1",
            "--out_dir",
            str(tmp_path / devices),
            "--devices",
            devices,
            "--accelerator",
            "cpu",
            timeout=300,
        )
    one = (tmp_path / "1" / "scores.jsonl").read_text().splitlines()
    two = (tmp_path / "2" / "scores.jsonl").read_text().splitlines()
    assert len(one) == len(two) == 10
    for a, b in zip(map(json.loads, one), map(json.loads, two)):
        assert a["index"] == b["index"] and a["score_chosen"] == pytest.approx(b["score_chosen"], abs=1e-5)
    r1, r2 = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("1", "2"))
    assert {k: r1[k] for k in KNOWN} == {k: r2[k] for k in KNOWN} and r2["litcpt"]["world_size"] == 2


@pytest.mark.slow
@pytest.mark.distributed
def test_cli_sharded_two_devices_match_one_device(tmp_path, strategy="fsdp2"):
    """``--strategy fsdp2`` (``fsdp`` takes the same path): policy and reference sharded over 2 gloo ranks
    (Trainer.predict), same scores as
    one device (which shares prompts; the sharded run cannot: its forwards are collectives)."""
    policy, _ = _dpo_dirs(tmp_path)
    data = write_jsonl(tmp_path / "rb.jsonl", rb_rows(known_pairs()))
    for devices in ("1", "2"):
        run_litcpt(
            "rewardbench",
            "--checkpoint_dir",
            str(policy),
            "--data",
            str(data),
            "--batch_size",
            "3",
            "--out_dir",
            str(tmp_path / devices),
            "--devices",
            devices,
            "--accelerator",
            "cpu",
            "--strategy",
            strategy,
            timeout=300,
        )
    one = [json.loads(line) for line in (tmp_path / "1" / "scores.jsonl").read_text().splitlines()]
    two = [json.loads(line) for line in (tmp_path / "2" / "scores.jsonl").read_text().splitlines()]
    assert len(one) == len(two) == 10  # 4 calls of 3, 2, ... pairs: rank 1 pads with a dropped repeat
    for a, b in zip(one, two):
        assert a["index"] == b["index"]
        for key in ("score_chosen", "score_rejected", "ref_logps_chosen", "logps_rejected"):
            assert a[key] == pytest.approx(b[key], abs=1e-4)
    r1, r2 = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("1", "2"))
    assert {k: r1[k] for k in KNOWN} == {k: r2[k] for k in KNOWN}
    assert r2["litcpt"]["world_size"] == 2 and r2["litcpt"]["share_prompt"] is False


@pytest.mark.slow
def test_cli_bad_input_is_one_line(tmp_path):
    policy, _ = _dpo_dirs(tmp_path)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": "c"}])
    proc = run_litcpt(
        "rewardbench",
        "--checkpoint_dir",
        str(policy),
        "--data",
        str(bad),
        "--out_dir",
        str(tmp_path / "o"),
        check=False,
    )
    assert proc.returncode == 1
    error = [line for line in proc.stderr.splitlines() if "error" in line]
    assert error == [f"litcpt rewardbench: error: {bad}: line 1: field 'rejected': missing (or null)"]
