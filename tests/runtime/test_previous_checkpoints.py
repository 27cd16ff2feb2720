"""Run dirs written by the previous main (litcpt 78273da, before the redesign) still load and resume with this code
(issue 22: the checkpoint format is not a shim).

The run dirs are ``tests/fixtures/previous_main/`` (made by ``tests/fixtures/make_previous_checkpoints.py``, which
says with which commands; ``manifest.json`` records the commit and library versions). Every test copies them to
``tmp_path`` first and goes through the CLI in-process (``litcpt.cli.main.main``): the command line is what stays
stable while modules move. Paths of the machine that wrote them (``out_dir``, ``checkpoint_dir``, the DPO reference
in ``dpo.json``) are overridden on the command line or rewritten in the copy; the data paths in the old
``config.yaml`` files are the bundled ``litcpt/assets/data/...``, relative to the repo root (the working directory
here). The previous run's own numbers (``metrics.csv``, ``final/``, ``ref_logps.pt``, the ``score`` and
``rewardbench`` outputs in ``eval/``) are what the current code must reproduce: a resume that continues the stream,
the optimizer and the LR schedule exactly trains the same steps on the same batches.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from tests.helpers import read_metrics, series
from tests.runtime.conftest import PREVIOUS_MAIN

MANIFEST = json.loads((PREVIOUS_MAIN / "manifest.json").read_text())
WRITER = MANIFEST["work"]  # the dir the previous litcpt ran in: the prefix of every absolute path in the files
BUNDLED_PAIRS = "litcpt/assets/data/preference/hh-rlhf-harmless-base.jsonl.gz"

# float32 on another CPU may round differently; a different batch, step or LR changes these numbers by far more
LOSS = dict(rel=1e-5, abs=1e-6)


@pytest.fixture(autouse=True)
def tracebacks(monkeypatch):
    """A failure shows its traceback, not one line (``old``, the previous runs: tests/runtime/conftest.py)."""
    monkeypatch.setenv("LITCPT_DEBUG", "1")


def litcpt(*args: str | Path) -> None:
    from litcpt.cli.main import main

    main([str(a) for a in args])


def logged(run: Path, version: int = 0) -> list[dict[str, str]]:
    """The rows of ``run/logs/version_<version>/metrics.csv`` (version 0: the previous run's own log)."""
    with open(run / f"logs/version_{version}/metrics.csv", newline="") as fp:
        return list(csv.DictReader(fp))


def by_step(rows: list[dict[str, str]], key: str) -> dict[int, float]:
    return dict(series(rows, key))


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_weights(path: Path, expected: Path) -> None:
    got, want = load(path), load(expected)
    assert sorted(got) == sorted(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key], msg=lambda m, key=key: f"{path}: {key}: {m}")


def assert_same_steps(rows: list[dict[str, str]], before: list[dict[str, str]], first_step: int,
                      keys: tuple[str, ...]) -> None:
    """``rows`` (a resumed run's log) hold the previous run's numbers (``before``) from ``first_step`` on."""
    for key in keys:
        want = {step: value for step, value in by_step(before, key).items() if step >= first_step}
        assert by_step(rows, key) == pytest.approx(want, **LOSS), key


def assert_continues(out_dir: Path, run: Path, first_step: int, last_step: int, keys: tuple[str, ...]) -> None:
    """The resumed run logged exactly steps ``first_step..last_step`` and the previous run's numbers at them."""
    rows = read_metrics(out_dir)
    assert sorted(by_step(rows, "train/loss")) == list(range(first_step, last_step + 1))
    assert_same_steps(rows, logged(run), first_step, keys)


def last_step_of(checkpoint: Path) -> int:
    return int(load(checkpoint)["global_step"])


# ------------------------------------------------------------------------------------------------------- pretrain
@pytest.mark.slow
def test_pretrain_resumes_mid_cooldown_and_continues_the_infinite_schedule(old, tmp_path):
    from litcpt.schedules import Infinite

    run, out = old / "pretrain", tmp_path / "resumed"
    litcpt("pretrain", "--config", run / "config.yaml", "--resume", run / "checkpoints/step-00000003.ckpt",
           "--out_dir", out)

    # the recipe's InfiniteLR over 8 steps: warmup 0.125 -> 1 step, inv_sqrt cooldown 0.5 -> 4, constant the rest
    schedule = Infinite(warmup=1, cooldown=4, constant=3, anneal=0, max_lr=0.01, const_lr=0.005, min_lr=0.001,
                        cooldown_shape="inv_sqrt")
    lrs = by_step(read_metrics(out), "lr")
    assert sorted(lrs) == [3, 4, 5, 6, 7]
    assert lrs == pytest.approx({step: schedule(step) for step in lrs}, rel=1e-12)
    assert lrs[3] > lrs[4] > lrs[5] == 0.005  # resumed inside the cooldown, not at a re-warmed or constant LR
    # the same batches (Replay's fr + 25 % en stream) with the same weights and Adam moments: the same numbers
    assert_continues(out, run, 3, 7, ("lr", "train/loss", "train/tokens", "val/loss", "val/loss/en", "val/loss/fr"))
    # save_interval 3: the previous run's last.ckpt is its step-6 save, and so is this one's, with the same weights
    assert last_step_of(out / "checkpoints/last.ckpt") == last_step_of(run / "checkpoints/last.ckpt") == 6
    for key, value in load(run / "checkpoints/last.ckpt")["state_dict"].items():
        torch.testing.assert_close(load(out / "checkpoints/last.ckpt")["state_dict"][key], value)
    assert_same_weights(out / "final/lit_model.pth", run / "final/lit_model.pth")  # the weights after step 7


@pytest.mark.slow
def test_anneal_from_previous_last_ckpt(old, tmp_path):
    run, out = old / "pretrain", tmp_path / "anneal"
    litcpt("anneal", "--checkpoint", run / "checkpoints/last.ckpt", "--anneal_steps", "2", "--out_dir", out)

    record = json.loads((out / "anneal.json").read_text())
    # const_lr and min_lr come from the InfiniteLR state in the previous checkpoint
    # last.ckpt is the previous run's step-6 save (save_interval 3), in the constant phase (t >= 5)
    assert (record["source_step"], record["first_global_step"], record["last_global_step"]) == (6, 6, 7)
    assert record["source_phase"] == "constant" and record["const_lr_from"] == "schedule"
    assert (record["const_lr"], record["min_lr"]) == pytest.approx((0.005, 0.001), rel=1e-12)
    assert by_step(read_metrics(out), "lr") == pytest.approx({6: 0.005, 7: 0.001}, rel=1e-12)
    # the stream continues where the run was: steps 6 and 7 see the run's batches (step 6 at the run's LR as well)
    assert_continues(out, run, 6, 7, ("train/loss", "train/tokens"))
    assert (out / "final/lit_model.pth").is_file()
    assert not torch.equal(load(out / "final/lit_model.pth")["lm_head.weight"],
                           load(run / "final/lit_model.pth")["lm_head.weight"])


@pytest.mark.slow
def test_new_stage_carries_optimizer_schedule_and_data_from_previous_run(old, tmp_path):
    """``carry.*`` reads the previous run's ``last.ckpt`` (next to ``final/``): Adam moments and step counts, the
    InfiniteLR state and the Replay stream position."""
    run, out = old / "pretrain", tmp_path / "stage"
    litcpt("pretrain", "--config", run / "config.yaml", "--initial_checkpoint_dir", run / "final", "--out_dir", out,
           "--carry.optimizer", "true", "--carry.schedule", "true", "--carry.data", "true",
           "--train.max_steps", "2", "--train.save_interval", "2")

    # the schedule continues at t = 6, 7 (constant phase) instead of re-warming from 0 at step 0
    assert by_step(read_metrics(out), "lr") == pytest.approx({0: 0.005, 1: 0.005}, rel=1e-12)
    saved = load(out / "checkpoints/last.ckpt")
    assert saved["global_step"] == 2
    steps = {int(s["step"]) for s in saved["optimizer_states"][0]["state"].values()}
    assert steps == {6 + 2}  # AdamW's step counts went on from the previous run's 6
    before = load(run / "checkpoints/last.ckpt")["Replay"]
    assert saved["Replay"]["stream"] == before["stream"]  # the same fr + 25 % en mixture ...
    assert saved["Replay"]["consumed_samples"] == before["consumed_samples"] + 2 * 4  # ... continued: 2 steps of 4


# --------------------------------------------------------------------------------------------------------- reward
@pytest.mark.slow
def test_reward_resumes(old, tmp_path):
    run, out = old / "reward", tmp_path / "reward"
    litcpt("reward", "--config", run / "config.yaml", "--checkpoint_dir", old / "pretrain/final", "--out_dir", out,
           "--resume", run / "checkpoints/step-00000002.ckpt")

    assert_continues(out, run, 2, 3, ("lr", "train/loss", "train/accuracy", "train/margin", "val/loss"))
    assert last_step_of(out / "checkpoints/last.ckpt") == 4
    assert json.loads((out / "final/reward_model.json").read_text())["head"] == "linear"
    assert_same_weights(out / "final/reward_head.pth", run / "final/reward_head.pth")
    assert_same_weights(out / "final/lit_model.pth", run / "final/lit_model.pth")


# ------------------------------------------------------------------------------------------------------------ dpo
@pytest.mark.slow
def test_dpo_resumes_with_its_reference_in_the_checkpoint(old, tmp_path):
    run, out = old / "dpo", tmp_path / "dpo"
    assert any(k.startswith("ref_model.") for k in load(run / "checkpoints/step-00000002.ckpt")["state_dict"])
    litcpt("dpo", "--config", run / "config.yaml", "--checkpoint_dir", old / "pretrain/final", "--out_dir", out,
           "--resume", run / "checkpoints/step-00000002.ckpt")

    assert_continues(out, run, 2, 3, ("lr", "train/loss", "train/rewards/margins", "val/loss"))
    assert last_step_of(out / "checkpoints/last.ckpt") == 4
    meta = json.loads((out / "final/dpo.json").read_text())
    assert (meta["beta"], meta["loss_type"], meta["precompute_ref"]) == (0.1, "sigmoid", False)
    assert_same_weights(out / "final/lit_model.pth", run / "final/lit_model.pth")


@pytest.mark.slow
def test_dpo_with_precomputed_reference_resumes_in_its_own_dir(old):
    """``--resume`` in the run dir itself reads the previous ``ref_logps.pt`` (it names another reference path, so it
    is computed again) and the previous checkpoint without reference weights."""
    run = old / "dpo-precompute"
    before = load(run / "ref_logps.pt")
    assert not any(k.startswith("ref_model.") for k in load(run / "checkpoints/step-00000002.ckpt")["state_dict"])
    litcpt("dpo", "--config", run / "config.yaml", "--checkpoint_dir", old / "pretrain/final", "--out_dir", run,
           "--resume", run / "checkpoints/step-00000002.ckpt")

    after = load(run / "ref_logps.pt")
    assert after["meta"]["reference"] == str((old / "pretrain/final").resolve())
    assert after["meta"]["data"] == before["meta"]["data"]  # the same pairs, tokenised to the same ids
    assert sorted(after["tables"]) == sorted(before["tables"]) == ["train", "val"]
    for split, table in before["tables"].items():
        torch.testing.assert_close(after["tables"][split], table)
    rows = [r for r in read_metrics(run) if r.get("train/loss")]
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 2, 3]  # version_0: the previous run, version_1: resumed
    assert_same_steps(logged(run, 1), logged(run, 0), 2,
                      ("lr", "train/loss", "train/loss/sft", "train/loss/sigmoid", "val/loss"))
    assert last_step_of(run / "checkpoints/last.ckpt") == 4
    assert json.loads((run / "final/dpo.json").read_text())["loss_type"] == ["sigmoid", "sft"]


# ------------------------------------------------------------------------------------- score, rewardbench, merge
def scores(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_scores(got: list[dict], want: list[dict], keys: tuple[str, ...]) -> None:
    assert [r["index"] for r in got] == [r["index"] for r in want]
    for key in keys:
        assert [r[key] for r in got] == pytest.approx([r[key] for r in want], **LOSS), key


def test_score_reads_previous_reward_model(old, tmp_path):
    evals = old / "eval"
    litcpt("score", "--checkpoint_dir", old / "reward/final", "--data", evals / "pairs.jsonl", "--out_dir", tmp_path)

    got, want = scores(tmp_path / "pairs.scores.jsonl"), scores(evals / "score/pairs.scores.jsonl")
    assert len(got) == 8
    assert_same_scores(got, want, ("score_chosen", "score_rejected"))


def test_rewardbench_reads_previous_reward_model(old, tmp_path):
    evals = old / "eval/rewardbench-reward"
    litcpt("rewardbench", "--checkpoint_dir", old / "reward/final", "--data", BUNDLED_PAIRS, "--limit", "8",
           "--accelerator", "cpu", "--out_dir", tmp_path)

    got, want = json.loads((tmp_path / "results.json").read_text()), json.loads((evals / "results.json").read_text())
    assert got["model_type"] == want["model_type"]
    assert got["litcpt"]["kind"] == "reward" and got["litcpt"]["pairs"] == 8
    assert got["litcpt"]["subsets"] == want["litcpt"]["subsets"]
    assert_same_scores(scores(tmp_path / "scores.jsonl"), scores(evals / "scores.jsonl"),
                       ("score_chosen", "score_rejected"))


def test_rewardbench_reads_previous_dpo_model_and_its_dpo_json(old, tmp_path):
    """The reference comes from the previous ``dpo.json`` (its path rewritten to the copy)."""
    final, evals = old / "dpo/final", old / "eval/rewardbench-dpo"
    meta_file = final / "dpo.json"
    meta_file.write_text(meta_file.read_text().replace(WRITER + "/runs", str(old)))
    litcpt("rewardbench", "--checkpoint_dir", final, "--data", BUNDLED_PAIRS, "--limit", "8", "--accelerator", "cpu",
           "--out_dir", tmp_path)

    got, want = json.loads((tmp_path / "results.json").read_text()), json.loads((evals / "results.json").read_text())
    assert got["ref_model"] == str(old / "pretrain/final")
    assert got["litcpt"]["kind"] == "dpo" and got["litcpt"]["pairs"] == 8
    for key in ("beta", "average_logps", "reduction", "subsets"):
        assert got["litcpt"][key] == want["litcpt"][key], key
    assert_same_scores(scores(tmp_path / "scores.jsonl"), scores(evals / "scores.jsonl"),
                       ("logps_chosen", "logps_rejected", "ref_logps_chosen", "ref_logps_rejected"))


def test_merge_of_previous_finals(old, tmp_path):
    a, b, out = old / "pretrain/final", old / "dpo/final", tmp_path / "soup"
    litcpt("merge", a, b, "--weights", "[0.75, 0.25]", "--out_dir", out)

    merged, first, second = load(out / "lit_model.pth"), load(a / "lit_model.pth"), load(b / "lit_model.pth")
    assert sorted(merged) == sorted(first)
    for key, value in merged.items():
        torch.testing.assert_close(value, 0.75 * first[key] + 0.25 * second[key])
    assert json.loads((out / "merge.json").read_text())["weights"] == [0.75, 0.25]
    assert (out / "tokenizer.json").read_bytes() == (a / "tokenizer.json").read_bytes()
