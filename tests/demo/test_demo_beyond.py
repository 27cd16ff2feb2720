"""``litcpt demo --part beyond``: the scenarios (fast) and the evaluation of a checkpoint."""

from __future__ import annotations

import pytest

from litcpt.demo.beyond import build_beyond, evaluate_checkpoint
from litcpt.demo.runtime import instantiate
from litcpt.schedules.config import StageFacts
from litcpt.training.carry import CarryArgs
from tests.conftest import make_checkpoint, tiny_config


def test_beyond_scenarios():
    runs, tps, interval = build_beyond(d1_tokens=65536, d2_tokens=65536, lr=3e-3, seed=1, quick=True, cache_dir=None)
    by_name = {r.name: r for r in runs}
    assert list(by_name) == ["const", "const-anneal", "d1-cosine", "d1-d2z", "d2-fresh", "d2-carried"]
    assert tps == 1024 and interval == 8
    assert by_name["const-anneal"].parent == "const" and by_name["d2-carried"].parent == "d1-cosine"
    CarryArgs(**by_name["const-anneal"].recipe["carry"])
    assert by_name["d2-carried"].recipe["carry"] == {"optimizer": True}
    assert "carry" not in by_name["d2-fresh"].recipe
    (ema,) = instantiate(by_name["const"].recipe["callbacks"])
    assert ema.decay == 0.98
    schedule = instantiate(by_name["d1-d2z"].recipe["lr_schedule"])
    assert type(schedule).__name__ == "LinearDecayLR"
    assert schedule.resolve(StageFacts(steps=10, peak_lr=1e-3)).min_lr == 0.0  # D2Z: decays to zero
    with pytest.raises(ValueError, match="needs at least 8 optimizer steps of 1024 tokens on D1"):
        build_beyond(d1_tokens=7 * 1024, d2_tokens=65536, lr=3e-3, seed=1, quick=True, cache_dir=None)


@pytest.mark.slow
def test_evaluate_checkpoint(tmp_path):
    ckpt = make_checkpoint(tmp_path / "c", config=tiny_config(block_size=32))
    losses = evaluate_checkpoint(ckpt, seed=1, cache_dir=tmp_path / "cache", seq_length=32, batches=2, batch_size=4)
    assert set(losses) == {"en", "fr"}
    assert all(7.5 < v < 9.5 for v in losses.values())  # ~ ln(4096) = 8.3 for a random model
