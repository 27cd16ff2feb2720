"""Each wrapper of :mod:`litcpt._private` against the installed Lightning / LitGPT / torch: an upgrade that moves a
private name breaks one of these tests (and that one module), not litcpt at large."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from litcpt import _private


def _trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(accelerator="cpu", devices=1, max_steps=4, limit_val_batches=1, val_check_interval=2,
                    logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    default_root_dir=str(tmp_path))
    return L.Trainer(**{**defaults, **kwargs})


def test_attached_trainer(tmp_path):
    model = BoringModel()
    assert _private.attached_trainer(model) is None
    with pytest.raises(RuntimeError):
        model.trainer  # noqa: B018  (what the wrapper avoids: the public property raises)
    trainer = _trainer(tmp_path)
    trainer.fit(model)
    assert _private.attached_trainer(model) is trainer


def test_logs_reach_loggers_follows_log_every_n_steps(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    seen = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(_private.logs_reach_loggers(trainer))

    trainer = _trainer(
        tmp_path, max_steps=6, log_every_n_steps=3, logger=CSVLogger(str(tmp_path)), callbacks=[Record()]
    )
    trainer.fit(BoringModel())
    assert seen == [False, False, True, False, False, True]


def test_logging_step_shifted_and_batches_that_stepped(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.fit(BoringModel())
    step = _private.batches_that_stepped(trainer)
    assert step == trainer.global_step == 4
    with _private.logging_step_shifted(trainer, 1):
        assert _private.batches_that_stepped(trainer) == 3
    assert _private.batches_that_stepped(trainer) == 4


def test_summary_table():
    from lightning.pytorch.utilities.model_summary import ModelSummary

    summary = ModelSummary(BoringModel())
    columns = [(name, values) for name, values in summary._get_summary_data() if name != "FLOPs"]
    table = _private.summary_table(
        summary.total_parameters,
        summary.trainable_parameters,
        summary.model_size,
        summary.total_training_modes,
        *columns,
    )
    assert "Trainable params" in table and "layer" in table


def test_throughput_monitor_adapter_hooks(tmp_path):
    calls = {"update": 0, "compute": 0}

    class Monitor(_private.ThroughputMonitorAdapter):
        def update_throughput(self, trainer, pl_module, batch, iter_num):
            calls["update"] += 1
            super().update_throughput(trainer, pl_module, batch, iter_num)

        def compute_throughput(self, trainer, iter_num):
            calls["compute"] += 1
            super().compute_throughput(trainer, iter_num)

    monitor = Monitor(batch_size_fn=lambda batch: batch.shape[0])
    assert monitor.module_has_flops is None
    monitor.module_has_flops = False
    assert monitor._module_has_flops is False
    _trainer(tmp_path, callbacks=[monitor]).fit(BoringModel())
    assert calls["update"] >= 4 and calls["compute"] >= 4


def test_weight_averaging_adapter(tmp_path):
    from lightning.pytorch.callbacks import EMAWeightAveraging

    swaps = []

    class Average(_private.WeightAveragingAdapter, EMAWeightAveraging):
        def swap_weights(self, pl_module):
            swaps.append(True)
            super().swap_weights(pl_module)

    callback = Average(device="cpu", decay=0.5)
    assert callback.average_model is None and callback.averaging_device == torch.device("cpu")
    assert isinstance(callback.averaging_kwargs, dict)  # the AveragedModel arguments
    model = BoringModel()
    _trainer(tmp_path, callbacks=[callback]).fit(model)
    assert callback.average_model is not None and swaps  # Lightning swapped weights around validation


def test_fsdp_strategy_adapter_hooks():
    from lightning.pytorch.strategies import FSDPStrategy

    assert hasattr(FSDPStrategy, "_setup_model")

    class Strategy(_private.FSDPStrategyAdapter):
        def wrap_model(self, model):
            return ("wrapped", model)

    module = torch.nn.Linear(2, 2)
    assert Strategy()._setup_model(module) == ("wrapped", module)
    strategy = _private.FSDPStrategyAdapter(activation_checkpointing_policy={torch.nn.Linear})
    assert strategy._activation_checkpointing_kwargs  # read by finish_wrapping
    from lightning.pytorch.strategies.fsdp import _move_torchmetrics_to_device, _setup_activation_checkpointing

    assert callable(_move_torchmetrics_to_device) and callable(_setup_activation_checkpointing)


def test_apply_activation_checkpointing_recomputes_and_keeps_gradients():
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x = torch.randn(3, 4)
    model(x).sum().backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    _private.apply_activation_checkpointing(model, check_fn=lambda m: isinstance(m, torch.nn.Linear))
    assert sum(isinstance(m, CheckpointWrapper) for m in model.modules()) == 2
    model(x).sum().backward()
    for got, want in zip([p.grad for p in model.parameters()], expected):
        torch.testing.assert_close(got, want)


def test_block_attention_is_the_attention_of_block_forward():
    from litgpt import GPT

    from tests.conftest import tiny_config

    torch.manual_seed(0)
    model = GPT(tiny_config(n_layer=1))
    block = model.transformer.h[0]
    x = torch.randn(2, 5, model.config.n_embd)
    cos, sin = model.cos[:5].unsqueeze(0), model.sin[:5].unsqueeze(0)
    with torch.no_grad():
        h = _private.block_attention(block, block.norm_1(x), cos, sin, None, None)
        manual = h + x
        manual = block.mlp(block.norm_2(manual)) + manual
        torch.testing.assert_close(block(x, cos, sin), manual)
    assert issubclass(_private.KVCache, torch.nn.Module)


def test_cluster_environment_of(tmp_path, monkeypatch):
    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    assert isinstance(_private.cluster_environment_of(_trainer(tmp_path)), LightningEnvironment)
    for key, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
                       "SLURM_NODEID": "0", "SLURM_JOB_ID": "4242"}.items():
        monkeypatch.setenv(key, value)
    trainer = _trainer(tmp_path)  # one device: the strategy has no cluster_environment of its own
    assert not hasattr(trainer.strategy, "cluster_environment")
    assert isinstance(_private.cluster_environment_of(trainer), SLURMEnvironment)


def test_validates_after_this_batch_and_log_step_metrics_now(tmp_path):
    seen: list[tuple[int, bool]] = []

    class Probe(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append((trainer.global_step, _private.validates_after_this_batch(trainer)))
            _private.log_step_metrics_now(trainer)  # must not fail; Lightning logs the same values again

    trainer = _trainer(tmp_path, callbacks=[Probe()])  # validation every 2 batches
    trainer.fit(BoringModel())
    assert seen == [(1, False), (2, True), (3, False), (4, True)]
