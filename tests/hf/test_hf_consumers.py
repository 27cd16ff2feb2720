"""What consumers of a reward model see: the same rewards whatever the batch size (``litcpt score`` and
``litcpt rewardbench`` versions 1 and 2, with and without prompt sharing), and the official RewardBench classifier path
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


@pytest.fixture(scope="module")
def best_of_n_file(tmp_path_factory) -> Path:
    """RewardBench 2 rows: 30 bundled pairs, each with two other pairs' rejected responses as more incorrect
    completions (five subsets), then the hand-made fixture in the official layout (Ties with ref/tied ids)."""
    from litcpt.assets import preference_file
    from litcpt.data.preference.pair_loading import load_preference_pairs

    pairs = [p for p in load_preference_pairs(preference_file()) if len(p.prompt + p.chosen + p.rejected) < 600][:30]
    subsets = ("Factuality", "Precise IF", "Math", "Safety", "Focus")
    rows = [{"id": str(i), "subset": subsets[i % 5], "prompt": p.prompt, "chosen": [p.chosen],
             "rejected": [p.rejected, pairs[(i + 1) % 30].rejected, pairs[(i + 7) % 30].rejected], "num_correct": 1}
            for i, p in enumerate(pairs)]
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "reward-bench-2-tiny.jsonl"
    path = tmp_path_factory.mktemp("data") / "rb2.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + fixture.read_text())
    return path


def rewardbench_scores(reward_dir: Path, data: Path, out: Path, **options) -> tuple[torch.Tensor, dict]:
    """``litcpt rewardbench`` (the command's function, in this process: no CLI parse per run) in float32 on CPU: its
    rewards in data order (v1: chosen, rejected per pair; v2: every completion of every row, flattened) and
    ``results.json``."""
    from litcpt.commands.rewardbench import main

    main(checkpoint_dir=reward_dir, data=data, out_dir=out, accelerator="cpu", precision="32-true", **options)
    rows = sorted((json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()),
                  key=lambda r: r["index"])
    values = [r["scores"] if "scores" in r else [r["score_chosen"], r["score_rejected"]] for r in rows]
    return torch.tensor([x for v in values for x in v], dtype=torch.float64), \
        json.loads((out / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("version", [1, 2])
def test_rewardbench_rewards_do_not_depend_on_batch_size(tmp_path, reward_dir, pairs_file, best_of_n_file, version):
    """RewardBench 1 (pairs) and 2 (best of N): batch sizes 1, 8, 32, with and without prompt sharing, give the same
    rewards (<= 1e-5, float32)."""
    data = pairs_file if version == 1 else best_of_n_file
    base = None
    for share in (False, True):
        for batch in (1, 8, 32):
            scores, results = rewardbench_scores(reward_dir, data, tmp_path / f"b{batch}-{share}", version=version,
                                                 batch_size=batch, share_prompt=share)
            assert results["litcpt"]["share_prompt"] is share
            if base is None:  # one sequence per forward, no sharing
                base = scores
                assert base.abs().max() > 0.5 and len(base) == (80 if version == 1 else 30 * 4 + 43)
            assert (scores - base).abs().max() <= 1e-5, (batch, share, (scores - base).abs().max())


def test_score_rewards_do_not_depend_on_batch_size(tmp_path, reward_dir, pairs_file):
    """``litcpt score``: batch sizes 1, 8, 32 give the same rewards (<= 1e-5, float32)."""
    from litcpt.commands.score import main

    results = {}
    for batch in (1, 8, 32):
        out = tmp_path / f"scores-{batch}.jsonl"
        main(checkpoint_dir=reward_dir, data=pairs_file, out_file=out, batch_size=batch)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        results[batch] = torch.tensor([[r["score_chosen"], r["score_rejected"]] for r in rows], dtype=torch.float64)
    assert results[1].abs().max() > 0.5
    for batch in (8, 32):
        assert (results[batch] - results[1]).abs().max() <= 1e-5, batch


@pytest.mark.slow
def test_rewardbench_pipeline_on_export_matches_litcpt_rewardbench(tmp_path, reward_dir, pairs_file):
    """``run_rm.py``'s path: ``pipeline("text-classification")`` on the exported model (batched, padded, truncated,
    ``function_to_apply="none"``) over ``prompt + response + EOS`` gives ``litcpt rewardbench --convention
    rewardbench``'s rewards and accuracy."""
    run_litcpt("export", "--checkpoint_dir", str(reward_dir), "--out_dir", str(tmp_path / "hf"))
    ours, results = rewardbench_scores(reward_dir, pairs_file, tmp_path / "rb", convention="rewardbench")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    pipe = transformers.pipeline("text-classification", model=str(tmp_path / "hf"), tokenizer=tokenizer,
                                 dtype=torch.float32)
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    kwargs = {"batch_size": 8, "truncation": True, "padding": True, "max_length": 2048, "function_to_apply": "none",
              "return_token_type_ids": False}
    texts = {key: [r["prompt"] + r[key] + tokenizer.eos_token for r in rows] for key in ("chosen", "rejected")}
    theirs = torch.tensor([[o["score"] for o in pipe(texts[key], **kwargs)] for key in ("chosen", "rejected")],
                          dtype=torch.float64).T
    ours = ours.reshape(-1, 2)
    assert (theirs - ours).abs().max() <= 1e-4, (theirs - ours).abs().max()
    accuracy = (theirs[:, 0] > theirs[:, 1]).double().mean().item()
    assert 0.0 < accuracy < 1.0
    assert accuracy == pytest.approx(results["accuracy"] if "accuracy" in results else
                                     (ours[:, 0] > ours[:, 1]).double().mean().item())
