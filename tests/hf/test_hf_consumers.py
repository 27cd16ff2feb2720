"""What consumers of a reward model see: the same rewards whatever the batch size (``litcpt score`` and
``litcpt rewardbench``, with and without prompt sharing), and the official RewardBench classifier path
(``transformers``' ``pipeline("text-classification")`` as ``run_rm.py`` calls it) on an exported model giving
``litcpt rewardbench --convention rewardbench``'s rewards and accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_config
from tests.helpers import run_litcpt

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory) -> Path:
    """A random litcpt reward model (linear head, non-trivial scores) with the bundled tokenizer."""
    from litcpt.assets import tokenizer_dir
    from litcpt.models.reward import RewardModel
    from litcpt.runtime.checkpoint import save_litgpt_dir

    config = tiny_config(name="Llama-tiny", block_size=512)
    torch.manual_seed(0)
    rm = RewardModel(config)
    with torch.no_grad():
        rm.head.weight.mul_(2.0)  # rewards of order 1: float32 rounding differs by ~1e-7 of |r| between batch shapes
    weights, extra = rm.litgpt_export(rm.state_dict())
    return save_litgpt_dir(weights, config, tmp_path_factory.mktemp("rm") / "rm", tokenizer_dir=tokenizer_dir(),
                           extra_objects=extra)


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory) -> Path:
    """40 short bundled pairs as RewardBench rows."""
    from litcpt.assets import preference_file
    from litcpt.data.preference.pair_loading import load_preference_pairs

    pairs = [p for p in load_preference_pairs(preference_file()) if len(p.prompt + p.chosen + p.rejected) < 700][:40]
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected,
                                        "subset": "hh", "id": str(i)}) + "\n" for i, p in enumerate(pairs)))
    return path


def rewardbench_scores(reward_dir: Path, data: Path, out: Path, *extra: str) -> tuple[torch.Tensor, dict]:
    run_litcpt("rewardbench", "--checkpoint_dir", str(reward_dir), "--data", str(data), "--out_dir", str(out),
               "--accelerator", "cpu", "--precision", "32-true", *extra)
    rows = sorted((json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()),
                  key=lambda r: r["index"])
    scores = torch.tensor([[r["score_chosen"], r["score_rejected"]] for r in rows], dtype=torch.float64)
    return scores, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_rewardbench_rewards_do_not_depend_on_batch_size(tmp_path, reward_dir, pairs_file):
    """Batch sizes 1, 8, 32, with and without prompt sharing: the same rewards (<= 1e-5, float32)."""
    base, _ = rewardbench_scores(reward_dir, pairs_file, tmp_path / "b1", "--batch_size", "1", "--share_prompt",
                                 "false")
    assert base.abs().max() > 0.5
    for batch in ("1", "8", "32"):
        for share in ("true", "false"):
            scores, _ = rewardbench_scores(reward_dir, pairs_file, tmp_path / f"b{batch}-{share}", "--batch_size",
                                           batch, "--share_prompt", share)
            assert (scores - base).abs().max() <= 1e-5, (batch, share, (scores - base).abs().max())


def test_score_rewards_do_not_depend_on_batch_size(tmp_path, reward_dir, pairs_file):
    """``litcpt score``: batch sizes 1, 8, 32 give the same rewards (<= 1e-5, float32)."""
    results = {}
    for batch in ("1", "8", "32"):
        out = tmp_path / f"scores-{batch}.jsonl"
        run_litcpt("score", "--checkpoint_dir", str(reward_dir), "--data", str(pairs_file), "--out_file", str(out),
                   "--batch_size", batch)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        results[batch] = torch.tensor([[r["score_chosen"], r["score_rejected"]] for r in rows], dtype=torch.float64)
    assert results["1"].abs().max() > 0.5
    for batch in ("8", "32"):
        assert (results[batch] - results["1"]).abs().max() <= 1e-5, batch


@pytest.mark.slow
def test_rewardbench_pipeline_on_export_matches_litcpt_rewardbench(tmp_path, reward_dir, pairs_file):
    """``run_rm.py``'s path: ``pipeline("text-classification")`` on the exported model (batched, padded, truncated,
    ``function_to_apply="none"``) over ``prompt + response + EOS`` gives ``litcpt rewardbench --convention
    rewardbench``'s rewards and accuracy."""
    run_litcpt("export", "--checkpoint_dir", str(reward_dir), "--out_dir", str(tmp_path / "hf"))
    ours, results = rewardbench_scores(reward_dir, pairs_file, tmp_path / "rb", "--convention", "rewardbench")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    pipe = transformers.pipeline("text-classification", model=str(tmp_path / "hf"), tokenizer=tokenizer,
                                 dtype=torch.float32)
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    kwargs = {"batch_size": 8, "truncation": True, "padding": True, "max_length": 2048, "function_to_apply": "none",
              "return_token_type_ids": False}
    texts = {key: [r["prompt"] + r[key] + tokenizer.eos_token for r in rows] for key in ("chosen", "rejected")}
    theirs = torch.tensor([[o["score"] for o in pipe(texts[key], **kwargs)] for key in ("chosen", "rejected")],
                          dtype=torch.float64).T
    assert (theirs - ours).abs().max() <= 1e-4, (theirs - ours).abs().max()
    accuracy = (theirs[:, 0] > theirs[:, 1]).double().mean().item()
    assert 0.0 < accuracy < 1.0
    assert accuracy == pytest.approx(results["accuracy"] if "accuracy" in results else
                                     (ours[:, 0] > ours[:, 1]).double().mean().item())
