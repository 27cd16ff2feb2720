"""Traps for people who build their own ``lightning.Trainer`` with litcpt's modules and callbacks (issue #14):
``train/loss`` is the mean over a step's micro-batches, ``tokens_per_step`` is derived from the trainer, the LR
callback's place in ``callbacks`` does not matter, ``load_from_checkpoint`` works, the optimizer dict is not
modified, reference syncing counts optimizer steps, and the harness's logger choice (wandb / mlflow)."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger

from litcpt.callbacks import WarmupCosineLR
from litcpt.models.lm import LanguageModel
from tests.conftest import tiny_config

T, B = 16, 2


class Blocks(L.LightningDataModule):
    """Random ``[B, T+1]`` token blocks (the LM batch format), with the ``batch_size`` a litcpt datamodule has."""

    def __init__(self, n: int = 64, batch_size: int = B) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.data = torch.randint(0, 4096, (n, T + 1), generator=torch.Generator().manual_seed(0))

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.data, batch_size=self.batch_size)


class RecordLosses(L.Callback):
    """(optimizer step, loss) of every micro-batch (Lightning divides the returned loss by the accumulation)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rows.append((self.step, float(outputs["loss"]) * trainer.accumulate_grad_batches))


def trainer(tmp_path: Path, callbacks=(), max_steps: int = 3, accumulate: int = 2, logger=False) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, accumulate_grad_batches=accumulate,
                     callbacks=list(callbacks), logger=logger, log_every_n_steps=1, default_root_dir=tmp_path,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     limit_val_batches=0, num_sanity_val_steps=0)


def adamw(lr: float = 1e-3) -> dict:
    return {"class_path": "torch.optim.AdamW", "init_args": {"lr": lr, "betas": [0.9, 0.95]}}


# ------------------------------------------------------------------------------------------ train/loss, tokens
def test_train_loss_is_the_mean_over_micro_batches_and_tokens_per_step_is_derived(tmp_path):
    torch.manual_seed(0)
    model = LanguageModel(tiny_config(block_size=T), optimizer=adamw())
    record, logger = RecordLosses(), CSVLogger(tmp_path, name="logs")
    trainer(tmp_path, [record], max_steps=3, accumulate=3, logger=logger).fit(model, datamodule=Blocks())
    assert model.tokens_per_step == B * T * 3 * 1  # micro-batch x T x accumulation x world size
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}
    assert sorted(logged) == [0, 1, 2]
    for step in range(3):
        losses = [loss for s, loss in record.rows if s == step]
        assert len(losses) == 3
        assert logged[step] == pytest.approx(sum(losses) / 3, rel=1e-6, abs=0)
        assert logged[step] != pytest.approx(losses[-1], rel=1e-6, abs=0)  # not the last micro-batch's loss
    tokens = {int(r["step"]): float(r["train/tokens"]) for r in rows if r.get("train/tokens")}
    assert tokens[2] == 3 * B * T * 3


def test_explicit_tokens_per_step_is_kept(tmp_path):
    model = LanguageModel(tiny_config(block_size=T), tokens_per_step=1000, optimizer=adamw())
    trainer(tmp_path, max_steps=1).fit(model, datamodule=Blocks())
    assert model.tokens_per_step == 1000


# ------------------------------------------------------------------------------------------ LR callback order
class SGDModel(BoringModel):
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("monitor_first", [True, False], ids=["monitor-first", "monitor-last"])
def test_learning_rate_monitor_logs_the_scheduled_lr_in_any_order(tmp_path, monitor_first):
    cb, monitor = WarmupCosineLR(warmup_steps=2, min_lr_ratio=0.1), LearningRateMonitor("step")
    callbacks = [monitor, cb] if monitor_first else [cb, monitor]
    trainer(tmp_path, callbacks, max_steps=6, accumulate=2, logger=CSVLogger(tmp_path)).fit(SGDModel())
    # the monitor logs at every micro-batch (2 per optimizer step): each sees its own step's LR
    assert monitor.lrs["lr-SGD"] == [cb.schedule(k) for k in range(6) for _ in range(2)]
    assert monitor.lrs["lr-SGD"][0] == 0.0  # warmup from 0, not the optimizer's configured 0.1


# ------------------------------------------------------------------------------------------ checkpoints
def test_load_from_checkpoint_rebuilds_the_module(tmp_path):
    spec = adamw(2e-3)
    model = LanguageModel(tiny_config(block_size=T), seq_length=T // 2, z_loss=1e-4, optimizer=spec)
    assert "defer_init" not in model.hparams and isinstance(model.hparams["config"], dict)
    t = trainer(tmp_path, max_steps=1)
    t.fit(model, datamodule=Blocks())
    t.save_checkpoint(tmp_path / "x.ckpt")
    loaded = LanguageModel.load_from_checkpoint(tmp_path / "x.ckpt", weights_only=True)  # plain hparams only
    assert loaded.config == model.config and loaded.seq_length == T // 2 and loaded.z_loss_weight == 1e-4
    assert loaded.optimizer_spec == spec and loaded.tokens_per_step is None
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())


def test_non_plain_arguments_are_not_saved():
    model = LanguageModel(tiny_config(), optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
                          checkpoint_dir=None)
    assert "optimizer" not in model.hparams  # a callable cannot be saved safely: give it again when loading


def test_the_users_optimizer_dict_is_not_modified(monkeypatch):
    spec = adamw()
    before = copy.deepcopy(spec)
    model = LanguageModel(tiny_config(), optimizer=spec)
    # on CUDA configure_optimizers adds fused=True, which litgpt writes into init_args in place
    monkeypatch.setattr(LanguageModel, "device", property(lambda self: torch.device("cuda")))
    for _ in range(2):
        optimizer = model.configure_optimizers()
        assert optimizer.defaults["fused"] is True
    assert spec == before and model.optimizer_spec == before


# ------------------------------------------------------------------------------------------ reference syncing
class PolicyAndReference(BoringModel):
    def __init__(self):
        super().__init__()
        self.model = self.layer
        self.ref_model = torch.nn.Linear(32, 2)


def test_sync_reference_counts_optimizer_steps_not_micro_batches(tmp_path):
    from litcpt.callbacks.sync_reference import SyncReference

    sync = SyncReference(alpha=1.0, sync_steps=2)
    trainer(tmp_path, [sync], max_steps=5, accumulate=3).fit(PolicyAndReference())
    assert sync.syncs == 2  # after steps 2 and 4


# ------------------------------------------------------------------------------------------ harness loggers
def test_wandb_and_mlflow_loggers_come_from_litgpt(monkeypatch, tmp_path):
    import importlib.util

    import litgpt.utils

    from litcpt.training.harness import make_logger

    calls = []
    monkeypatch.setattr(litgpt.utils, "choose_logger", lambda *args, **kwargs: calls.append((args, kwargs)) or "L")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name in ("wandb", "mlflow")
                        else real(name, *a))
    assert make_logger("wandb", tmp_path / "run1") == make_logger("mlflow", tmp_path / "run1") == "L"
    (wandb_args, wandb_kwargs), (mlflow_args, mlflow_kwargs) = calls
    assert wandb_args[0] == "wandb" and wandb_kwargs["save_dir"] == str(tmp_path / "run1")
    assert wandb_kwargs["log_args"]["run"] == "run1"
    assert mlflow_args[0] == "mlflow" and mlflow_kwargs["save_dir"] == str(tmp_path / "run1" / "mlruns")


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_missing_logger_package_is_a_clear_error(monkeypatch, tmp_path, name):
    import importlib.util

    from litcpt.training.harness import make_logger

    monkeypatch.setattr(importlib.util, "find_spec", lambda *a: None)
    with pytest.raises(ValueError, match=rf"logger_name: {name} needs the `{name}` package \(pip install {name}\)"):
        make_logger(name, tmp_path)


def test_csv_logger_writes_a_new_version_per_run(tmp_path):
    from litcpt.training.harness import make_logger

    first, second = make_logger("csv", tmp_path), make_logger("csv", tmp_path)
    first.log_metrics({"a": 1.0}, step=0)
    first.save()
    assert Path(first.log_dir).name == "version_0" and Path(second.log_dir).name == "version_1"
