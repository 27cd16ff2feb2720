"""What a finished training command prints at the end (steps, tokens, wall time, tokens/s, final losses per
source, where final/ and the logs are), and the per-step metrics.csv it leaves."""

from __future__ import annotations

import re

import pytest

from litcpt.report.runs import read_rows
from litcpt.training.summary import summary_lines
from tests.helpers import run_litcpt, tiny_recipe


def test_summary_lines_per_source_and_resumed():
    lines = summary_lines(metrics={"train/loss": 2.5, "val/loss": 3.0, "val/loss/en": 2.0, "val/loss/fr": 4.0},
                          steps=100, start_step=40, tokens_per_step=2048, seconds=12.0, final_dir=None,
                          log_dir="out/logs/version_1")
    assert lines == ["100 optimizer steps (resumed at step 40), 205k tokens in 12.0 s wall (10.2k tokens/s)",
                     "final train loss 2.5000; val loss 3.0000 (en 2.0000, fr 4.0000)",
                     "logs: out/logs/version_1"]


@pytest.mark.slow
def test_a_finished_run_prints_its_summary_and_logs_every_optimizer_step(tmp_path):
    """docs/pretraining.md promises one metrics.csv row per optimizer step; with log_interval 10 and gradient
    accumulation a 12-step run had rows only at steps 5, 9 and 11."""
    recipe = tiny_recipe(tmp_path, **{"train.max_steps": 12, "train.log_interval": 10, "eval.interval": 6})
    proc = run_litcpt("pretrain", "--config", str(recipe))
    out = tmp_path / "out"
    rows, _ = read_rows(out)
    assert [int(r["step"]) for r in rows] == list(range(12))
    for row in rows:
        assert all(row[k] != "" for k in ("train/loss", "lr", "train/tokens")), row
        assert float(row["train/tokens"]) == (int(row["step"]) + 1) * 8 * 64
    assert [int(r["step"]) for r in rows if r["val/loss"] != ""] == [5, 11]

    lines = [line for line in proc.stdout.splitlines() if line.startswith("litcpt: ")]
    assert len(lines) == 4, proc.stdout[-2000:]
    assert re.fullmatch(r"litcpt: 12 optimizer steps, 6\.14k tokens in \d+\.\d s wall \(\d+(\.\d+)?k? tokens/s\)",
                        lines[0]), lines
    last = rows[-1]
    assert lines[1] == (f"litcpt: final train loss {float(last['train/loss']):.4f}; val loss "
                        f"{float(last['val/loss']):.4f} (en {float(last['val/loss/en']):.4f})")
    assert lines[2:] == [f"litcpt: final checkpoint: {out / 'final'}", f"litcpt: logs: {out / 'logs' / 'version_0'}"]
