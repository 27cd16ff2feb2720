"""`litcpt demo --part reward`: a reduced run trains both heads and reports held-out accuracy."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_litcpt

pytestmark = pytest.mark.slow


def test_reward_part_quick(tmp_path):
    proc = run_litcpt("demo", "--out_dir", str(tmp_path / "demo"), "--quick", "true", "--part", "reward",
                      "--reward_steps", "16", "--cache_dir", str(tmp_path / "cache"), timeout=600)
    assert "| linear |" in proc.stdout and "| logit |" in proc.stdout
    results = json.loads((tmp_path / "demo" / "reward.json").read_text())
    assert set(results["heads"]) == {"linear", "logit"}
    for head in results["heads"].values():
        assert head["held_out_pairs"] == 200  # 10% of the 2000 bundled pairs
        assert 0.0 <= head["val_accuracy_before"] <= 1.0 and 0.0 <= head["val_accuracy_after"] <= 1.0
    assert (tmp_path / "demo" / "reward.md").is_file()
    assert (tmp_path / "demo" / "runs" / "reward-logit" / "final" / "reward_head.pth").is_file()
    # validation ran before training and exactly once at the last step (eval.interval == the run's length)
    from tests.helpers import read_metrics, series

    steps = [s for s, _ in series(read_metrics(tmp_path / "demo" / "runs" / "reward-linear"), "val/accuracy")]
    assert len(steps) == 2 and steps[0] == 0 and steps[1] >= results["steps"] - 1, steps
