"""``--convention rewardbench``: RewardBench's tokenisation (joint encoding, boundary merge, BOS, truncation) and
rewards (summed with a reference; norm/avg/sum without), against a straightforward per-sequence re-implementation of
the official rules (``rewardbench/dpo.py`` ``DPOInference``) that tokenises with transformers' own tokenizer."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from litgpt import GPT, Config, Tokenizer

from litcpt import assets
from litcpt.data.preference.pair_rows import PreferencePair
from litcpt.data.preference.pair_tokens import tokenize_pairs
from litcpt.rewardbench.conventions import (
    rewardbench_scorer,
    rewardbench_sequences,
    split_prompt_answer,
    tokenize_pairs_rewardbench,
)
from litcpt.rewardbench.engine import score_pairs
from litcpt.rewardbench.scorers import ImplicitRewardScorer
from litcpt.runtime.checkpoint import load_weights
from tests.conftest import make_checkpoint, tiny_config

HH_PROMPT = "Human: Hi\n\nAssistant: "           # trailing space: merges with the response's first word
PAIRS = [
    PreferencePair(HH_PROMPT, "Sure, here it is.", "No."),
    PreferencePair("Question: two plus two?\n", "Four.", "Five, I think."),             # no merge at "\n"
    PreferencePair("Say hi: ", "hi there", "Say hi: hello"),                            # prompt inside a response
    PreferencePair("A long prompt " + "with many words " * 8 + "ends here: ", "yes it does " * 3, "no"),
    PreferencePair("Answer: ", "\n42", "42"),               # only the rejected merges: prompts of 5 and 4 tokens
]


@pytest.fixture(scope="module")
def hf_tokenizer():
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(assets.tokenizer_dir()))


def bos_tokenizer_dir(tmp_path):
    """The bundled tokenizer with ``add_bos_token: true`` (litgpt then prepends BOS)."""
    path = tmp_path / "bos-tokenizer"
    shutil.copytree(assets.tokenizer_dir(), path)
    config = json.loads((path / "tokenizer_config.json").read_text())
    (path / "tokenizer_config.json").write_text(json.dumps({**config, "add_bos_token": True}))
    return path


# ------------------------------------------------------------------ the official rules, one sequence at a time
def official_rows(hf, prompt, chosen, rejected, max_length=2048, max_prompt_length=128):
    """DPOInference.tokenize_row, written out for one pair: [(prompt_ids, answer_ids)] for chosen and rejected."""
    def enc(text):
        return hf(text, add_special_tokens=False)["input_ids"]

    bos = hf.bos_token_id if hf.bos_token_id is not None else hf.eos_token_id
    rows = []
    for response in (chosen, rejected):
        answer = (prompt + response).replace(prompt, "")
        full, alone = enc(prompt + answer), enc(prompt)
        cut = len(alone) - (1 if full[:len(alone)] != alone else 0)
        rows.append(([bos] + full[:cut], full[cut:] + [hf.eos_token_id]))
    longer = max(len(rows[0][1]), len(rows[1][1]))
    out = []
    for p, a in rows:
        if len(p) + longer > max_length:
            p = p[-max_prompt_length:]
        if len(p) + longer > max_length:
            a = a[:max_length - max_prompt_length]
        out.append((p, a))
    return out


def logps_by_loop(model, prompt_ids, answer_ids, how="sum"):
    """log π of each answer token given everything before it, one token at a time in float64."""
    ids = torch.tensor(prompt_ids + answer_ids)
    with torch.no_grad():
        logits = model(ids.view(1, -1))[0].double()
    terms = [F.log_softmax(logits[t - 1], -1)[int(ids[t])].item() for t in range(len(prompt_ids), len(ids))]
    if how == "sum":
        return sum(terms)
    if how == "avg":
        return sum(terms) / len(terms)
    return -math.sqrt(sum(t * t for t in terms))          # norm


def _gpt(path):
    model = GPT(Config.from_file(path / "model_config.yaml"))
    load_weights(model, path)
    return model.eval()


# ---------------------------------------------------------------------------------------------- tokenisation
def test_the_boundary_token_moves_into_the_response(hf_tokenizer):
    tok = Tokenizer(assets.tokenizer_dir())
    prompt_ids, answer_ids = split_prompt_answer(tok, HH_PROMPT, "Sure, here it is.")
    assert tok.decode(torch.tensor(answer_ids[:1])) == " S"           # RewardBench scores " S"ure ...
    assert prompt_ids == hf_tokenizer(HH_PROMPT, add_special_tokens=False)["input_ids"][:-1]
    # ... litcpt encodes separately: the prompt keeps " " and the response starts with "S"
    item = tokenize_pairs([PAIRS[0]], tok)[0][0]
    separate = item.chosen_ids[item.chosen_prompt_length:].tolist()
    assert tok.decode(torch.tensor(separate[:1])) == "S"
    assert item.chosen_prompt_length == len(prompt_ids) + 1


@pytest.mark.parametrize("use_bos", [False, True])
def test_tokenisation_equals_the_official_rules(hf_tokenizer, tmp_path, use_bos):
    tok = Tokenizer(bos_tokenizer_dir(tmp_path) if use_bos else assets.tokenizer_dir())
    assert tok.use_bos is use_bos
    for max_length, max_prompt_length in ((2048, 128), (30, 6)):       # (30, 6): the prompt cut and response cut
        items, stats = tokenize_pairs_rewardbench(PAIRS, tok, max_length=max_length,
                                                  max_prompt_length=max_prompt_length)
        for pair, item in zip(PAIRS, items):
            (cp, ca), (rp, ra) = official_rows(hf_tokenizer, pair.prompt, pair.chosen, pair.rejected, max_length,
                                               max_prompt_length)
            assert item.chosen_ids.tolist() == cp + ca and item.chosen_prompt_length == len(cp)
            assert item.rejected_ids.tolist() == rp + ra and item.rejected_prompt_length == len(rp)
        if max_length == 30:
            assert stats.truncated >= 1
            long = items[3]
            assert long.chosen_prompt_length == 6 and long.chosen_ids[0] != tok.bos_id   # last 6 prompt tokens
    # BOS is always there under RewardBench's rules; litcpt's follows the tokenizer's config
    assert all(item.chosen_ids[0] == tok.bos_id for item in tokenize_pairs_rewardbench(PAIRS[:3], tok)[0])
    last = tokenize_pairs_rewardbench(PAIRS[4:], tok)[0][0]
    assert last.chosen_prompt_length == last.rejected_prompt_length + 1
    litcpt_items = tokenize_pairs(PAIRS, tok)[0]
    assert all(bool(item.chosen_ids[0] == tok.bos_id) is use_bos for item in litcpt_items)


def test_reward_model_sequences_are_the_joint_encoding_cut_from_the_end(hf_tokenizer):
    tok = Tokenizer(assets.tokenizer_dir())
    (p, a), _ = rewardbench_sequences(tok, HH_PROMPT, ["Sure, here it is.", "No."], kind="reward")[0]
    assert p + a == hf_tokenizer(HH_PROMPT + "Sure, here it is.", add_special_tokens=False)["input_ids"] + [0]
    rows, truncated = rewardbench_sequences(tok, HH_PROMPT, ["Sure, here it is."], kind="reward", max_length=8,
                                            max_prompt_length=4)
    assert truncated and rows[0][0] + rows[0][1] == (p + a)[:8]
    with pytest.raises(ValueError, match="max_prompt_length"):
        rewardbench_sequences(tok, HH_PROMPT, ["x"], max_length=8, max_prompt_length=8)


# ----------------------------------------------------------------------------------------------------- rewards
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    config = tiny_config(block_size=96)
    return (_gpt(make_checkpoint(root / "policy", config, seed=0)),
            _gpt(make_checkpoint(root / "ref", config, seed=1)))


@pytest.mark.parametrize("share_prompt", [True, False])
def test_rewards_with_a_reference_are_summed_log_ratios(hf_tokenizer, models, share_prompt):
    policy, ref = models
    tok = Tokenizer(assets.tokenizer_dir())
    got = score_pairs(rewardbench_scorer(policy, ref, share_prompt=share_prompt), PAIRS, tok, batch_size=3,
                      convention="rewardbench")
    for pair, (r_c, r_r) in zip(PAIRS, got):
        for (p, a), value in zip(official_rows(hf_tokenizer, pair.prompt, pair.chosen, pair.rejected), (r_c, r_r)):
            assert value == pytest.approx(logps_by_loop(policy, p, a) - logps_by_loop(ref, p, a), abs=1e-4)


@pytest.mark.parametrize("how", ["norm", "avg", "sum"])
def test_reference_free_rewards(hf_tokenizer, models, how):
    policy, _ = models
    tok = Tokenizer(assets.tokenizer_dir())
    got = score_pairs(rewardbench_scorer(policy, None, ref_free_type=how), PAIRS, tok, convention="rewardbench",
                      max_length=40, max_prompt_length=8)
    for pair, scores in zip(PAIRS, got):
        rows = official_rows(hf_tokenizer, pair.prompt, pair.chosen, pair.rejected, 40, 8)
        for (p, a), value in zip(rows, scores):
            assert value == pytest.approx(logps_by_loop(policy, p, a, how), abs=1e-4)
    with pytest.raises(ValueError, match="ref_free_type"):
        rewardbench_scorer(policy, None, ref_free_type="mean")


def test_the_conventions_give_different_rewards_on_a_merging_boundary(models):
    policy, ref = models
    tok = Tokenizer(assets.tokenizer_dir())
    ours = score_pairs(ImplicitRewardScorer(policy, ref, beta=1.0), PAIRS[:1], tok)
    theirs = score_pairs(rewardbench_scorer(policy, ref), PAIRS[:1], tok, convention="rewardbench")
    assert abs(ours[0][0] - theirs[0][0]) > 1e-3


def test_command_convention_rewardbench(tmp_path, hf_tokenizer):
    from litcpt.commands.rewardbench import main

    config = tiny_config(block_size=96)
    policy_dir = make_checkpoint(tmp_path / "policy", config, seed=0)
    ref_dir = make_checkpoint(tmp_path / "ref", config, seed=1)
    (policy_dir / "dpo.json").write_text(json.dumps({"beta": 0.5, "reference_checkpoint_dir": str(ref_dir),
                                                     "average_logps": True}))
    rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "subset": "alpacaeval-easy" if i % 2
             else "math-prm", "id": str(i)} for i, p in enumerate(PAIRS)]
    data = tmp_path / "rb.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = main(policy_dir, data, out_dir=tmp_path / "out", accelerator="cpu", convention="rewardbench")
    policy, ref = _gpt(policy_dir), _gpt(ref_dir)
    records = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    correct = {}
    for row, record in zip(rows, records):
        (cp, ca), (rp, ra) = official_rows(hf_tokenizer, row["prompt"], row["chosen"], row["rejected"], 96, 48)
        chosen = logps_by_loop(policy, cp, ca) - logps_by_loop(ref, cp, ca)       # summed although dpo.json avg
        rejected = logps_by_loop(policy, rp, ra) - logps_by_loop(ref, rp, ra)
        assert record["score_chosen"] == pytest.approx(chosen, abs=1e-4)
        assert record["score_rejected"] == pytest.approx(rejected, abs=1e-4)
        correct.setdefault(row["subset"], []).append(chosen > rejected)
    for subset, outcomes in correct.items():
        assert results[subset] == sum(outcomes) / len(outcomes)
    assert results["litcpt"]["convention"] == "rewardbench" and results["litcpt"]["reduction"] == "sum"
    with pytest.raises(ValueError, match="beta: not used with --convention rewardbench"):
        main(policy_dir, data, out_dir=tmp_path / "out2", accelerator="cpu", convention="rewardbench", beta=0.1)
    free = main(policy_dir, data, out_dir=tmp_path / "free", accelerator="cpu", convention="rewardbench",
                ref_free=True, ref_free_type="norm")
    assert free["litcpt"]["reduction"] == "norm" and free["model_type"] == "DPO Ref. Free"


def test_reward_model_scores_under_the_rewardbench_convention(hf_tokenizer):
    from litcpt.models.base import init_weights
    from litcpt.models.reward import RewardModel

    torch.manual_seed(0)
    rm = RewardModel(tiny_config(block_size=96)).eval()
    init_weights(rm.model)
    tok = Tokenizer(assets.tokenizer_dir())
    got = score_pairs(rm, PAIRS, tok, convention="rewardbench")
    for pair, scores in zip(PAIRS, got):
        for response, value in zip((pair.chosen, pair.rejected), scores):
            ids = hf_tokenizer(pair.prompt + response, add_special_tokens=False)["input_ids"] + [tok.eos_id]
            with torch.no_grad():
                want = rm(torch.tensor([ids]), torch.tensor([len(ids) - 1])).item()
            assert value == pytest.approx(want, abs=1e-5)
