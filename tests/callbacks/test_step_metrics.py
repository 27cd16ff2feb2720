"""metrics.csv has one row per optimizer step with one LR column and validation on the step's row; the progress
bar counts optimizer steps of the run (and tokens), after a resume too; the usual log noise is gone."""

from __future__ import annotations

import csv
import re

import pytest

from tests.helpers import run_litcpt, tiny_recipe

pytestmark = pytest.mark.slow


def _rows(path):
    with open(path, newline="") as fp:
        return list(csv.DictReader(fp))


def _bar(stdout: str) -> list[tuple[int, int]]:
    return [(int(n), int(t)) for n, t in re.findall(r"train:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)", stdout)]


def test_metrics_rows_and_progress_bar_count_optimizer_steps(tmp_path):
    # micro_batch 2 of a global batch 8: 4 micro-batches per optimizer step
    recipe = tiny_recipe(tmp_path, **{"train.max_steps": 6, "train.micro_batch_size": 2, "train.save_interval": 3,
                                      "eval.interval": 4})
    first = run_litcpt("pretrain", "--config", str(recipe))
    out = tmp_path / "out"
    rows = _rows(out / "logs" / "version_0" / "metrics.csv")
    steps = [int(r["step"]) for r in rows]
    assert steps == list(range(6)), steps  # one row per optimizer step (validation merged into its row)
    assert not [k for k in rows[0] if k.startswith("lr") and k != "lr"], rows[0].keys()  # one LR column
    assert all(r["lr"] and r["train/loss"] and r["train/tokens"] for r in rows)
    val = [int(r["step"]) for r in rows if r["val/loss"]]
    assert val == [3, 5], val  # after optimizer steps 4 and 6 (final validation), on those steps' rows
    assert all(r["validate/samples"] for r in rows if r["val/loss"])  # validation throughput on the same row
    bar = _bar(first.stdout)
    assert bar and bar[-1] == (6, 6) and {t for _, t in bar} == {6}, bar
    assert "tokens=" in first.stdout and "Epoch" not in first.stdout
    for noise in ("litlogger", "LeafSpec", "flops_per_batch", "Total Flops", "Total FLOPs"):
        assert noise not in first.stderr + first.stdout, noise
    assert "Training FLOPs per micro-batch" in first.stderr + first.stdout

    # a resume that extends the run to 10 steps: the bar starts at 6 and ends at 10/10
    saved = {p.name: p.read_bytes() for p in (out / "checkpoints").glob("*.ckpt")}
    resumed = run_litcpt("pretrain", "--config", str(recipe), "--resume", "true", "--train.max_steps", "10")
    # the step resumed from is not saved again (it was, mid-step, after the first micro-batch: unresumable)
    assert (out / "checkpoints" / "step-00000006.ckpt").read_bytes() == saved["step-00000006.ckpt"]
    bar = _bar(resumed.stdout)
    assert bar[0][0] == 6 and bar[-1] == (10, 10) and {t for _, t in bar} == {10}, bar
    rates = [float(r) for r in re.findall(r"([\d.]+)it/s", resumed.stdout)]
    assert max(rates, default=0) < 1000, rates  # the rate of the steps this process trained, not of 0 -> 6 at once
    steps = [int(r["step"]) for r in _rows(out / "logs" / "version_1" / "metrics.csv")]
    assert steps == list(range(6, 10)), steps
