"""EMA / SWA of the weights (Lightning's WeightAveraging): closed forms; raw weights stay the model; LitGPT dirs."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from litcpt.callbacks import EMA, SWA
from tests.losses.test_stability import SpikyModel


class Smooth(SpikyModel):
    spike_step = -1  # no spike


class Record(Callback):
    def __init__(self):
        self.params = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.params.append([p.detach().clone() for p in pl_module.parameters()])


def fit(callback, steps=10):
    torch.manual_seed(0)
    record, model = Record(), Smooth()
    trainer = Trainer(max_steps=steps, accelerator="cpu", devices=1, callbacks=[callback, record], logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0)
    trainer.fit(model)
    return model, record.params, callback


def test_ema_matches_the_recurrence_and_keeps_raw_weights(tmp_path):
    model, params, cb = fit(EMA(decay=0.9, save=False))
    ema = [p.clone() for p in params[0]]  # the first update copies the weights
    for step in params[1:]:
        for e, w in zip(ema, step):
            e.lerp_(w, 0.1)
    averaged = list(cb._average_model.module.parameters())
    for e, a in zip(ema, averaged):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-7)
    # the model keeps its raw (last) weights: Lightning's on_train_end copy is not done
    for w, p in zip(params[-1], model.parameters()):
        assert torch.equal(w, p)
    assert not all(torch.equal(a, p) for a, p in zip(averaged, model.parameters()))


def test_swa_is_the_mean_from_start_step():
    model, params, cb = fit(SWA(start_step=4, save=False))
    for i, a in enumerate(cb._average_model.module.parameters()):
        expected = torch.stack([step[i] for step in params[4:]]).mean(0)
        torch.testing.assert_close(a, expected, rtol=1e-6, atol=1e-7)
    assert int(cb._average_model.n_averaged) == 6


@pytest.mark.parametrize("bad, match", [({"decay": 1.0}, "decay=1.0"), ({"every_n_steps": 0}, "every_n_steps=0")])
def test_bad_arguments(bad, match):
    with pytest.raises(ValueError, match=match):
        EMA(**bad)


@pytest.mark.parametrize("strategy", ["fsdp", "fsdp2"])
def test_sharded_strategies_keep_no_full_copy(strategy):
    """FSDP1 and FSDP2 are accepted, and setup makes no ``AveragedModel`` (a full copy per rank): the average is made
    of the shards once the model is sharded (tests/callbacks/test_ema_fsdp2.py runs both on 2 ranks)."""
    from types import SimpleNamespace

    from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

    trainer = SimpleNamespace(strategy=FSDPStrategy() if strategy == "fsdp" else ModelParallelStrategy())
    callback = EMA()
    callback.setup(trainer, None, "fit")
    assert callback._sharded and callback._average_model is None
