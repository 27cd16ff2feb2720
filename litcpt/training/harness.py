"""The one Trainer harness that every litcpt training command shares.

A command builds its LightningModule, its DataModule and its own callbacks; :func:`fit` does the rest the same
way for all of them: seeds, the strategy by name, loggers (CSV / TensorBoard, a new version per run so nothing
written before is lost; Weights & Biases / MLflow through litgpt's ``choose_logger``), progress bar, throughput, LR
monitor, Lightning ``.ckpt`` checkpoints for exact resume,
LitGPT-layout checkpoints for interop, and final validation.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from litcpt._private import batches_that_stepped, logging_step_shifted
from litcpt.callbacks.litgpt_checkpoint import LitGPTCheckpoint
from litcpt.callbacks.progress import StepProgressBar
from litcpt.callbacks.step_metrics import OptimizerLR, RowsBeforeCheckpoint, StepThroughputMonitor
from litcpt.callbacks.summary import RunSummary
from litcpt.report.metrics_csv import StepCSVLogger
from litcpt.runtime.checkpoint import is_trusted
from litcpt.runtime.outputs import write_pending_config
from litcpt.runtime.quiet import quiet_third_party
from litcpt.runtime.ranks import is_global_zero
from litcpt.runtime.resume import (
    AtomicCheckpointIO,
    StepCheckpoint,
    check_loadable,
    check_resume_config,
    clean_stale_saves,
    pick_resume_checkpoint,
)
from litcpt.runtime.strategies import make_strategy
from litcpt.training.args import EvalArgs, TrainArgs

LoggerName = Literal["csv", "tensorboard", "wandb", "mlflow"]
_LOGGER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}
Resume = bool | Literal["auto"] | Path


@dataclass
class RunSpec:
    """Everything about *how* to run that is not the model or the data."""

    out_dir: Path
    train: TrainArgs
    eval: EvalArgs
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None
    logger_name: LoggerName = "csv"
    seed: int = 42
    resume: Resume = False
    tokenizer_dir: Path | None = None
    accelerator: str = "auto"
    callbacks: list[Callback] = field(default_factory=list)
    resume_checkpoint: Path | None = field(init=False, default=None)
    """The checkpoint ``resume`` resolves to (:func:`find_resume_checkpoint`), found and checked at construction."""

    def __post_init__(self) -> None:
        """Checks only (no side effects): the batch sizes divide over the world size and the checkpoint to resume
        from exists and loads (an untrusted one is refused), so a run fails on that before any data work."""
        self.out_dir = Path(self.out_dir)
        if self.tokenizer_dir is not None:
            self.tokenizer_dir = Path(self.tokenizer_dir)
        self.train.accumulation(self.world_size)
        self.resume_checkpoint = find_resume_checkpoint(self.resume, self.out_dir)

    def seed_everything(self) -> None:
        """Seed every RNG with ``seed``: a run calls it before it builds its model, so fresh weights are the same on
        every rank and in every run."""
        L.seed_everything(self.seed, workers=True, verbose=False)

    @property
    def num_devices(self) -> int:
        if self.devices in ("auto", -1, "-1"):
            return torch.cuda.device_count() if self.on_gpu else 1
        devices = int(self.devices)
        if devices <= 0:
            raise ValueError(f"devices must be 'auto' or a positive integer, got {self.devices!r}")
        return devices

    @property
    def on_gpu(self) -> bool:
        return self.accelerator in ("gpu", "cuda") or (self.accelerator == "auto" and torch.cuda.is_available())

    @property
    def sharded(self) -> bool:
        """True for the strategies that shard the model (``fsdp``, ``fsdp2``): models are then built on the meta
        device and materialised shard by shard (``GPTModule(defer_init=True)``)."""
        return self.strategy in ("fsdp", "fsdp2")

    @property
    def world_size(self) -> int:
        return self.num_devices * self.num_nodes

    def resolved_precision(self) -> str:
        if self.precision:
            return self.precision
        from litcpt.runtime.precision import default_precision

        return default_precision(self.on_gpu, self.on_gpu and torch.cuda.is_bf16_supported())


def find_resume_checkpoint(resume: Resume, out_dir: Path) -> Path | None:
    """``True``: ``out_dir/checkpoints/last.ckpt``, or the newest ``step-*.ckpt`` there that loads if it does not
    (one must exist); ``"auto"``: the same if there is any checkpoint; a path: that path (it must load)."""
    if resume is False or resume is None:
        return None
    ckpt_dir = Path(out_dir) / "checkpoints"
    if resume is True or resume == "auto":
        found = pick_resume_checkpoint(ckpt_dir)
        if found is not None or resume == "auto":
            return found
        raise FileNotFoundError(f"resume: true but no checkpoint in {ckpt_dir} (use resume: auto to start fresh)")
    path = Path(resume)
    if not path.exists():
        raise FileNotFoundError(f"resume: checkpoint {str(path)!r} does not exist")
    return check_loadable(path)


def make_logger(name: LoggerName, out_dir: Path) -> Logger:
    """The run's logger. ``csv`` and ``tensorboard`` write a new version per run (``logs/version_N``: a resumed run
    never overwrites earlier metrics); ``wandb`` (project ``litcpt``, run named after ``out_dir``, files in
    ``out_dir/wandb``) and ``mlflow`` (experiment ``litcpt``, local store ``out_dir/mlruns`` unless
    ``MLFLOW_TRACKING_URI`` is set) come from litgpt's ``choose_logger``."""
    if name not in _LOGGER_PACKAGES and name != "csv":
        raise ValueError(f"logger_name: expected one of {', '.join(LoggerName.__args__)}, got {name!r}")
    import importlib.util

    packages = _LOGGER_PACKAGES.get(name, ())
    if packages and not any(importlib.util.find_spec(m) for m in packages):
        install = "'litcpt[tensorboard]'" if name == "tensorboard" else packages[0]
        raise ValueError(f"logger_name: {name} needs the `{packages[0]}` package (pip install {install}) or use "
                         "logger_name: csv")
    if name == "csv":
        return StepCSVLogger(save_dir=str(out_dir), name="logs")  # one metrics.csv row per optimizer step
    if name == "tensorboard":
        return TensorBoardLogger(save_dir=str(out_dir), name="logs")
    from litgpt.utils import choose_logger

    out_dir = Path(out_dir)
    if name == "wandb":
        import os

        return choose_logger("wandb", out_dir, "litcpt", save_dir=str(out_dir),
                             log_args={"run": os.environ.get("WANDB_RUN_NAME") or out_dir.name})
    return choose_logger("mlflow", out_dir, "litcpt", run_name=out_dir.name, save_dir=str(out_dir / "mlruns"))


class _LastValidationStep(Callback):
    """Remembers the global step of the last validation run, so final validation is not run twice."""

    def __init__(self) -> None:
        self.step: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.step = trainer.global_step


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        return int(batch["input_ids"].shape[0])
    return int(batch.shape[0])


def _batch_length(batch: Any) -> int:
    if isinstance(batch, dict):
        return int(batch["input_ids"].numel())
    return int(batch.shape[0] * (batch.shape[1] - 1))


def build_trainer(spec: RunSpec, *, max_steps: int) -> L.Trainer:
    """The Lightning ``Trainer`` for ``spec`` (callbacks, loggers, strategy, accumulation, validation cadence)."""
    train, evaluation = spec.train, spec.eval
    accumulate = train.accumulation(spec.world_size)
    ckpt_dir = spec.out_dir / "checkpoints"
    callbacks: list[Callback] = list(spec.callbacks)
    callbacks += [
        StepCheckpoint(dirpath=ckpt_dir, filename="step-{step:08d}", every_n_train_steps=train.save_interval or 0,
                       save_top_k=train.keep_checkpoints, save_last=True, auto_insert_metric_name=False,
                       # keeping k: the k newest (Lightning ranks by a monitored value; "step" is always there)
                       monitor="step" if train.keep_checkpoints != -1 else None, mode="max",
                       save_on_train_epoch_end=False),
        LitGPTCheckpoint(spec.out_dir, save_interval=train.save_interval, tokenizer_dir=spec.tokenizer_dir,
                         extra_files=[spec.out_dir / "config.yaml"]),
        OptimizerLR(),
        StepThroughputMonitor(batch_size_fn=_batch_size, length_fn=_batch_length),
        StepProgressBar(refresh_rate=train.log_interval),
        RowsBeforeCheckpoint(),
        RunSummary(),
        _LastValidationStep(),
    ]
    quiet_third_party()
    return L.Trainer(
        accelerator=spec.accelerator,
        devices=spec.num_devices,
        num_nodes=spec.num_nodes,
        strategy=make_strategy(spec.strategy, accelerator=spec.accelerator, world_size=spec.world_size,
                               activation_checkpointing=train.activation_checkpointing),
        precision=spec.resolved_precision(),
        logger=make_logger(spec.logger_name, spec.out_dir),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],  # .ckpt written in its own dir (tmp, fsync, rename) whatever TMPDIR is
        max_steps=max_steps,
        max_epochs=-1,
        accumulate_grad_batches=accumulate,
        gradient_clip_val=train.max_norm,
        gradient_clip_algorithm="norm" if train.max_norm else None,
        log_every_n_steps=1,  # metrics.csv: one row per optimizer step (train.log_interval paces the progress bar)
        val_check_interval=evaluation.interval * accumulate,
        check_val_every_n_epoch=None,
        limit_val_batches=evaluation.max_iters,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        enable_progress_bar=True,
        default_root_dir=str(spec.out_dir),
        deterministic=False,
        inference_mode=False,  # no_grad instead: metric states made in validation stay usable in training
    )


def fit(module: L.LightningModule, datamodule: L.LightningDataModule, spec: RunSpec, *, max_steps: int) -> L.Trainer:
    """Train ``module`` on ``datamodule`` as ``spec`` says; returns the finished Trainer."""
    if is_global_zero():
        clean_stale_saves(spec.out_dir)
    from litcpt.runtime.precision import warn_precision

    ckpt_path = spec.resume_checkpoint
    if ckpt_path is not None and getattr(module, "config", None) is not None:
        check_resume_config(ckpt_path, module.config)
    warn_precision(spec.resolved_precision(), getattr(module, "optimizer_spec", None))
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    write_pending_config(spec.out_dir)  # the CLI's config.yaml: every check passed, the run starts
    _hand_lr_stage(datamodule, module, spec.callbacks, max_steps=max_steps, ckpt_path=ckpt_path)
    trainer = build_trainer(spec, max_steps=max_steps)
    started = time.monotonic()
    with _sigterm_is_preemption(trainer):
        if spec.eval.initial_validation and ckpt_path is None:
            trainer.validate(module, datamodule=datamodule, verbose=False)
        # weights_only explicitly (torch's default can be switched off by TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD): Lightning's
        # restore unpickles tensors and plain data only, unless the user trusted the file (LITCPT_TRUST_CHECKPOINTS)
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None,
                    weights_only=not (ckpt_path and is_trusted(ckpt_path)))
        last_val = next((c.step for c in trainer.callbacks if isinstance(c, _LastValidationStep)), None)
        if spec.eval.final_validation and trainer.state.status == "finished" and last_val != trainer.global_step:
            _validate_on_last_step_row(trainer, module, datamodule)
    if trainer.state.status == "finished" and is_global_zero():
        _print_summary(trainer, module, spec, seconds=time.monotonic() - started)
    return trainer


def _print_summary(trainer: L.Trainer, module: L.LightningModule, spec: RunSpec, *, seconds: float) -> None:
    """The lines a finished run ends with (:func:`litcpt.training.summary.summary_lines`), on stdout."""
    from litcpt.training.summary import summary_lines

    final = spec.out_dir / "final"
    logger = trainer.logger
    lines = summary_lines(metrics=trainer.callback_metrics, steps=trainer.global_step,
                          start_step=next(c.start_step for c in trainer.callbacks if isinstance(c, StepCheckpoint)),
                          tokens_per_step=getattr(module, "tokens_per_step", None), seconds=seconds,
                          final_dir=final if final.is_dir() else None,
                          log_dir=getattr(logger, "log_dir", None) if logger is not None else None)
    print("\n".join(f"litcpt: {line}" for line in lines), flush=True)


@contextlib.contextmanager
def _sigterm_is_preemption(trainer: L.Trainer) -> Iterator[None]:
    """A ``SIGTERM`` that Lightning's own handler caught (before the first step, during the initial or the final
    validation: ``StepCheckpoint`` handles it during training) ends the run as a pre-emption, non-zero, instead of
    Lightning's ``SIGTERMException`` (exit status 0)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from litcpt.runtime.preemption import Preempted

    try:
        yield
    except Preempted:
        raise
    except SIGTERMException:
        last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        where = f"the last checkpoint is {last}" if last.exists() else "no checkpoint was saved"
        message = f"pre-empted by SIGTERM at step {trainer.global_step} outside a training step: {where}"
        if is_global_zero():
            print(f"litcpt: {message}; run the same command with --resume auto to continue", file=sys.stderr,
                  flush=True)
        raise Preempted(signal.SIGTERM, message) from None


def _hand_lr_stage(datamodule: Any, module: L.LightningModule, callbacks: list[Callback], *, max_steps: int,
                   ckpt_path: Path | None) -> None:
    """Give a data module whose phases start when the LR falls below a threshold (``Replay`` with ``lr_below``
    phases) the run's LR stage, before ``fit``: the stage the run's LR callback (the first litcpt one) will train
    with, from the facts of the run (``max_steps``, the module's optimizer LR, ``tokens_per_step`` and
    ``seq_length``) and the checkpoint it resumes from: a fresh run starts a new stage at step 0, a resumed one
    continues the checkpoint's, a carried schedule (``carry.schedule``) the carried one, and ``litcpt anneal`` (an LR
    callback of another ``stage_name``) starts a new stage at the checkpoint's global step. No LR callback: ``None``,
    which the data module refuses in one line."""
    from litcpt.callbacks.lr_schedule import LRScheduleCallback
    from litcpt.data.replay import Replay

    if not (isinstance(datamodule, Replay) and datamodule.needs_lr_stage):
        return
    callback = next((c for c in callbacks if isinstance(c, LRScheduleCallback)), None)
    if callback is None:
        datamodule.set_lr_stage(None)
        return
    from litcpt.runtime.optim import optimizer_lr

    datamodule.set_lr_stage(callback.lr_stage(
        max_steps=max_steps, peak_lr=optimizer_lr(getattr(module, "optimizer_spec", None)),
        tokens_per_step=getattr(module, "tokens_per_step", None), seq_length=getattr(module, "seq_length", None),
        ckpt_path=ckpt_path))


def _validate_on_last_step_row(trainer: L.Trainer, module: L.LightningModule, datamodule: Any) -> None:
    """Validate after fit with metrics logged on the row of the last optimizer step, where validation during fit
    logs them too (Lightning would use the next step's row: ``trainer.validate`` logs at ``_batches_that_stepped``)."""
    with logging_step_shifted(trainer, 1 if batches_that_stepped(trainer) > 0 else 0):
        trainer.validate(module, datamodule=datamodule, verbose=False)
