"""EMA (and SWA) under FSDP2 and FSDP1 on 2 gloo CPU ranks: each rank averages its own shards (FSDP2: DTensor shards;
FSDP1: its pieces of the flat parameters); the written averages follow the EMA recursion of the raw weights, and a
resumed run continues the average restored from the (sharded) checkpoint."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import run_litcpt, tiny_recipe

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

DECAY = 0.9
EMA = {"callbacks": [{"class_path": "litcpt.callbacks.EMA", "init_args": {"decay": DECAY}},
                     {"class_path": "litcpt.callbacks.SWA", "init_args": {"start_step": 1}}],
       "train.max_steps": 4, "train.save_interval": 1, "eval.interval": 100}


def _load(out, name):
    return torch.load(out / name / "lit_model.pth", weights_only=True)


def _assert_ema_step(out, step, previous_ema):
    """``ema_step == decay * previous_ema + (1 - decay) * raw_step`` for every tensor."""
    raw, ema = _load(out, f"step-{step:08d}"), _load(out, f"step-{step:08d}-ema")
    assert raw.keys() == ema.keys() == previous_ema.keys()
    for key in raw:
        torch.testing.assert_close(ema[key], DECAY * previous_ema[key] + (1 - DECAY) * raw[key], rtol=1e-5,
                                   atol=1e-6)
    assert not all(torch.equal(raw[k], ema[k]) for k in raw)


@pytest.mark.parametrize("strategy", ["fsdp2", "fsdp"])
def test_sharded_ema_is_the_average_of_the_shards_and_resumes(tmp_path, strategy):
    src = tmp_path / "a"
    run_litcpt("pretrain", "--config", str(tiny_recipe(src, **EMA)), "--devices", "2", "--strategy", strategy,
               "--accelerator", "cpu", timeout=600)
    out = src / "out"
    first_raw, first_ema = _load(out, "step-00000001"), _load(out, "step-00000001-ema")
    assert all(torch.equal(first_raw[k], first_ema[k]) for k in first_raw)  # the first update copies the weights
    for step in (2, 3, 4):
        _assert_ema_step(out, step, _load(out, f"step-{step - 1:08d}-ema"))
    final, final_ema = _load(out, "final-ema"), _load(out, "step-00000004-ema")
    assert all(torch.equal(final[k], final_ema[k]) for k in final)
    swa, raws = _load(out, "final-swa"), [_load(out, f"step-{s:08d}") for s in (2, 3, 4)]  # SWA from step index 1
    for key in swa:
        torch.testing.assert_close(swa[key], sum(r[key] for r in raws) / 3, rtol=1e-5, atol=1e-6)

    # resume at step 2 in another run dir: the average continues from the checkpoint's, not from the weights
    resumed = tmp_path / "b"
    run_litcpt("pretrain", "--config", str(tiny_recipe(resumed, **EMA)), "--devices", "2", "--strategy", strategy,
               "--accelerator", "cpu", "--resume", str(out / "checkpoints" / "step-00000002.ckpt"), timeout=600)
    _assert_ema_step(resumed / "out", 3, _load(out, "step-00000002-ema"))
    _assert_ema_step(resumed / "out", 4, _load(resumed / "out", "step-00000003-ema"))
    # ... and so does the SWA beside it (each average under its own key of the .ckpt)
    swa, raws = _load(resumed / "out", "final-swa"), [_load(out, "step-00000002")] + \
        [_load(resumed / "out", f"step-{s:08d}") for s in (3, 4)]
    for key in swa:
        torch.testing.assert_close(swa[key], sum(r[key] for r in raws) / 3, rtol=1e-5, atol=1e-6)
