r"""
Learning-rate schedule callbacks
================================

Lightning callbacks that set the learning rate of every parameter group of every
optimizer before each **optimizer** step, following one of the schedules of
:mod:`litcpt.schedules.formulas`:

* :class:`WarmupCosineLR` -- linear warmup + cosine decay (re-warm / re-decay per stage).
* :class:`InfiniteLR` -- warmup, cooldown, constant, optional anneal; later stages
  continue at the constant LR (``stage_start="constant"``).
* :class:`WSDLR` -- warmup-stable-decay.
* :class:`ConstantLR` -- constant LR with optional warmup.
* :class:`LinearDecayLR` -- linear warmup + linear decay to ``min_lr`` (0 by default: D2Z).
* :class:`PowerLR` -- the Power scheduler (LR a power law of the tokens seen; optional final decay).

They share :class:`LRScheduleCallback`, which handles per-group LR scaling, logging and exact resume through
``state_dict``/``load_state_dict``. What a schedule *is* (units, lengths given as fractions of the stage or as
absolute values, LRs as ratios of the peak, defaults, checks) is its configuration in :mod:`litcpt.schedules.config`:
each callback builds one in ``__init__`` (so bad arguments fail there, once) and resolves it with the pure
:func:`litcpt.schedules.config.resolve`, given what it reads from the Trainer (stage length, tokens per step, the
optimizer's LR). :meth:`LRScheduleCallback.resolve` does the same without a Trainer, and
:meth:`LRScheduleCallback.lr_stage` tells, before ``fit``, which stage a ``fit`` will train with (a checkpoint's, a
carried one, or a new one).

Example::

    >>> from lightning.pytorch import Trainer
    >>> from litcpt.callbacks.lr_schedule import WarmupCosineLR
    >>> trainer = Trainer(max_steps=1000, callbacks=[WarmupCosineLR(warmup=0.01, min_lr_ratio=0.1)])

Timing: the LR used by the ``k``-th optimizer step of a stage (``k = 0, 1, ...``)
is ``schedule(k)`` (unit ``"steps"``) or ``schedule(tokens seen before step k)``
(unit ``"tokens"``). With gradient accumulation the LR is set at the start of
every micro-batch but only changes when ``trainer.global_step`` (which counts
optimizer steps) advances, so accumulation never stretches the schedule.

Why one module of this size: the base class holds the Lightning machinery (hooks, resume, logging) and each
schedule's callback is a thin, explicitly typed constructor over its configuration -- explicit because a callback's
signature is its recipe schema (jsonargparse reads it), so the similar-looking ``__init__`` signatures are the schema,
not duplicated logic. Splitting them into one file each would scatter one small class hierarchy.

Callback order does not matter: in ``setup`` the callback moves itself to the front
of ``trainer.callbacks``, so its ``on_train_batch_start`` sets the LR before any other
callback's (e.g. ``LearningRateMonitor``, which would otherwise log the previous
step's LR when listed first) reads it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks.callback import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from typing_extensions import override

from litcpt._private import logs_reach_loggers
from litcpt.schedules.config import (
    ConstantConfig,
    InfiniteConfig,
    Length,
    LinearDecayConfig,
    PowerConfig,
    ScheduleConfig,
    StageFacts,
    Unit,
    WarmupCosineConfig,
    WSDConfig,
    need_tokens_per_step,
    optional_number,
    resolve,
)
from litcpt.schedules.formulas import AnnealShape, CooldownShape, DecayShape, Schedule, schedule_from_dict
from litcpt.schedules.stage import LRStage

__all__ = ["LRScheduleCallback", "WarmupCosineLR", "InfiniteLR", "WSDLR", "ConstantLR", "LinearDecayLR", "PowerLR"]

_STATE_VERSION = 1


class LRScheduleCallback(Callback):
    r"""Base class: sets every param group's LR from a :mod:`litcpt.schedules.formulas` schedule.

    Each subclass turns its constructor arguments into a :mod:`litcpt.schedules.config` configuration
    (:attr:`config`, validated once, in ``__init__``); the schedule is ``resolve(config, stage facts)``, with the
    stage facts read from the Trainer (:meth:`resolve` without one). The group LR is

    .. code-block:: text

        group["lr"] = schedule(t) * group["initial_lr"] / base_lr

    where ``base_lr`` is the LR configured on the first optimizer
    (``optimizer.defaults["lr"]``) and ``group["initial_lr"]`` is stored on first
    use (the group's configured LR). So a single-LR optimizer follows the schedule
    exactly, groups configured with other LRs follow it proportionally, and a
    ``max_lr`` override rescales all of them.

    Args:
        unit: ``"steps"`` (optimizer steps) or ``"tokens"``; the unit of ``t`` and of the stage length.
        total_steps: stage length in optimizer steps. Default: ``trainer.max_steps`` (or
            ``trainer.estimated_stepping_batches``) minus the global step at which the stage started.
        total_tokens: stage length in tokens (alternative to ``total_steps``).
        tokens_per_step: tokens per optimizer step. ``None``: read ``pl_module.tokens_per_step``
            at every optimizer step (only needed for ``unit="tokens"`` or token/step conversions).
        max_lr: peak LR of the schedule. Default: the first optimizer's configured LR.
        log_lr: log the scheduled LR (``schedule(t)``) with ``pl_module.log(log_name, ...)`` once per
            optimizer step, on the steps the trainer writes to its loggers (``log_every_n_steps``).
        log_name: metric name for ``log_lr``.
        stage_name: name of the stage. When a checkpoint saved by a callback with a
            *different* ``stage_name`` is loaded (``trainer.fit(ckpt_path=...)``), its
            schedule state is ignored and a new stage starts at the restored global step.

    Resume: :meth:`state_dict` holds the resolved schedule, the global step at which
    the stage started and the token counter, so resuming from a ``.ckpt`` replays
    exactly the LR sequence of an uninterrupted run (the resolved schedule of the
    checkpoint wins over the constructor arguments; a warning is shown if they differ).
    :meth:`lr_stage` says, before ``fit``, which stage a ``fit`` will train with.
    """

    config: ScheduleConfig
    """The schedule's configuration, built from the constructor arguments."""

    def __init__(
        self,
        *,
        unit: Unit = "steps",
        total_steps: Optional[int] = None,
        total_tokens: Optional[float] = None,
        tokens_per_step: Optional[float] = None,
        max_lr: Optional[float] = None,
        log_lr: bool = True,
        log_name: str = "lr",
        stage_name: Optional[str] = None,
    ) -> None:
        self._stage_arguments = {"unit": unit, "total_steps": total_steps, "total_tokens": total_tokens,
                                 "tokens_per_step": tokens_per_step, "max_lr": max_lr}
        self.log_lr = bool(log_lr)
        self.log_name = str(log_name)
        self.stage_name = stage_name
        self._reset_progress()

    def _configure(self, kind: type, **arguments: Any) -> None:
        """Build :attr:`config` (which validates every argument) from the base arguments and the subclass's."""
        stage = dict(self._stage_arguments)
        if kind is PowerConfig:
            del stage["unit"]  # always tokens (PowerLR checks its unit argument itself)
        self.config = kind(**stage, **arguments)
        del self._stage_arguments

    @property
    def unit(self) -> str:
        """``"steps"`` or ``"tokens"``: the unit of the schedule's progress."""
        return self.config.unit

    @property
    def total_steps(self) -> Optional[float]:
        return self.config.total_steps

    @property
    def total_tokens(self) -> Optional[float]:
        return self.config.total_tokens

    @property
    def tokens_per_step(self) -> Optional[float]:
        """The ``tokens_per_step`` argument (``None``: the module's)."""
        return self.config.tokens_per_step

    @property
    def max_lr(self) -> Optional[float]:
        """The ``max_lr`` argument (``None``: the optimizer's configured LR)."""
        return self.config.max_lr

    # ------------------------------------------------------------------ #
    # state
    # ------------------------------------------------------------------ #
    def _reset_progress(self) -> None:
        self._schedule: Optional[Schedule] = None
        self._base_lr: Optional[float] = None
        self._stage_start_step: Optional[int] = None
        self._last_step: Optional[int] = None
        self._tokens_seen: float = 0.0
        self._step_tokens: Optional[float] = None
        self._stage_ready: bool = False
        self._last_lr: Optional[float] = None

    @property
    def schedule(self) -> Optional[Schedule]:
        """The resolved schedule (``None`` before ``on_fit_start``)."""
        return self._schedule

    @property
    def last_lr(self) -> Optional[float]:
        """The scheduled LR ``schedule(t)`` set before the latest optimizer step."""
        return self._last_lr

    @property
    def progress(self) -> float:
        """Progress ``t`` in the stage (in ``unit``) for the next optimizer step."""
        if self.unit == "tokens":
            return self._tokens_seen
        if self._last_step is None or self._stage_start_step is None:
            return 0.0
        return float(self._last_step - self._stage_start_step)

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(stage_name=self.stage_name)

    @override
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the stage exactly: resolved schedule, counters, stage."""
        return {
            "version": _STATE_VERSION,
            "stage_name": self.stage_name,
            "unit": self.unit,
            "schedule": None if self._schedule is None else self._schedule.to_dict(),
            "base_lr": self._base_lr,
            "stage_start_step": self._stage_start_step,
            "last_step": self._last_step,
            "tokens_seen": self._tokens_seen,
            "step_tokens": self._step_tokens,
        }

    def _is_own_state(self, state_dict: dict[str, Any]) -> bool:
        """Whether a saved state continues this callback's stage (``False``: another ``stage_name``). Raises for a
        state of a newer litcpt or in another unit."""
        version = state_dict.get("version", 1)
        if not isinstance(version, int) or version > _STATE_VERSION:
            raise ValueError(f"{type(self).__name__}: the checkpoint's LR-schedule state has version {version!r}, "
                             f"this litcpt reads up to {_STATE_VERSION}: resume with the litcpt that wrote it")
        if state_dict.get("stage_name") != self.stage_name:
            return False
        if state_dict.get("unit") != self.unit:
            raise ValueError(f"unit={self.unit!r} differs from the checkpoint's unit={state_dict.get('unit')!r}")
        return True

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the stage's progress; ignored (new stage) if ``stage_name`` differs."""
        if not self._is_own_state(state_dict):
            rank_zero_info(
                f"{type(self).__name__}: checkpoint is from stage {state_dict.get('stage_name')!r}, this is stage "
                f"{self.stage_name!r}: starting a new stage"
            )
            return
        restored = None if state_dict.get("schedule") is None else schedule_from_dict(state_dict["schedule"])
        if restored is not None and self._schedule is not None and restored != self._schedule:
            rank_zero_warn(
                f"{type(self).__name__}: the checkpoint's schedule {restored} differs from the one resolved from the "
                f"current arguments {self._schedule}; continuing with the checkpoint's schedule"
            )
        self._schedule = restored
        self._base_lr = state_dict.get("base_lr")
        self._stage_start_step = state_dict.get("stage_start_step")
        self._last_step = state_dict.get("last_step")
        self._tokens_seen = float(state_dict.get("tokens_seen", 0.0))
        self._step_tokens = state_dict.get("step_tokens")
        self._stage_ready = restored is not None and self._stage_start_step is not None

    # ------------------------------------------------------------------ #
    # resolution
    # ------------------------------------------------------------------ #
    def resolve(self, stage: StageFacts) -> Schedule:
        """This callback's schedule for a stage with these facts, without a Trainer:
        :func:`litcpt.schedules.config.resolve` of :attr:`config`, what the callback runs in ``on_fit_start`` with the
        facts it reads from the Trainer.

        Raises:
            ValueError: one line, prefixed with the class name, for inconsistent lengths, LRs or a missing fact.
        """
        try:
            return resolve(self.config, stage)
        except ValueError as err:
            raise ValueError(f"{type(self).__name__}: {err}") from None

    def _needs_stage_steps(self) -> bool:
        """Whether resolving needs the stage length from the run (no ``total_steps`` / ``total_tokens`` given)."""
        return self.config.needs_length and self.config.total_steps is None and self.config.total_tokens is None

    def _stage_steps(self, total: Any, start: int, *, max_steps: Any) -> tuple[Optional[float], str]:
        """Optimizer steps of a stage that starts at global step ``start`` in a run of ``total`` steps, or ``None``
        and why not."""
        if total is None or not math.isfinite(total) or total <= 0:
            return None, (f"trainer.max_steps={max_steps!r} gives no stage length: set Trainer(max_steps=...) or pass "
                          f"total_steps= / total_tokens= to {type(self).__name__}")
        stage = float(total) - start
        if stage <= 0:
            return None, f"trainer.max_steps={total!r} leaves no steps for a stage starting at global_step={start}"
        return stage, ""

    def _read_tokens_per_step(self, pl_module: pl.LightningModule) -> Optional[float]:
        """The ``tokens_per_step`` argument, else the module's (checked)."""
        if self.tokens_per_step is not None:
            return self.tokens_per_step
        return self._module_tokens_per_step(pl_module)

    @staticmethod
    def _module_tokens_per_step(pl_module: pl.LightningModule, *, check: bool = True) -> Optional[float]:
        """``pl_module.tokens_per_step`` (``check``: a one-line error if it is not a positive number; else ``None``
        then)."""
        tps = getattr(pl_module, "tokens_per_step", None)
        if isinstance(tps, torch.Tensor):
            tps = tps.item()
        try:
            return optional_number("pl_module.tokens_per_step", tps, positive=True)
        except ValueError:
            if check:
                raise
            return None

    def _base_lr_of(self, trainer: pl.Trainer) -> float:
        if not trainer.optimizers:
            raise ValueError(f"{type(self).__name__}: trainer.optimizers is empty: configure_optimizers returned none")
        opt = trainer.optimizers[0]
        lr = opt.defaults.get("lr")
        if isinstance(lr, torch.Tensor):
            lr = lr.item()
        if lr is None or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"{type(self).__name__}: the first optimizer's configured lr={lr!r} must be > 0")
        return float(lr)

    def _resolve_for(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage_start_step: int) -> Schedule:
        """The schedule of a stage starting at ``stage_start_step``, with the facts read from the trainer/module."""
        max_steps = trainer.max_steps
        total = max_steps if max_steps is not None and max_steps > 0 else trainer.estimated_stepping_batches
        steps, why = self._stage_steps(total, stage_start_step, max_steps=max_steps)
        if steps is None and self._needs_stage_steps():
            raise ValueError(why)
        # the stage's tokens per step is the module's (the tokens_per_step argument overrides it in resolve)
        tps = self._module_tokens_per_step(pl_module, check=self.tokens_per_step is None)
        peak_lr = None if self.max_lr is not None else self._base_lr_of(trainer)
        seq = getattr(pl_module, "seq_length", None)  # only PowerLR's default batch size reads it
        seq = seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else None
        return self.resolve(StageFacts(steps=steps, tokens_per_step=tps, peak_lr=peak_lr, seq_length=seq))

    @property
    def stage_start_step(self) -> Optional[int]:
        """The global step the current stage started at (``None`` before training starts)."""
        return self._stage_start_step

    def lr_stage(self, *, max_steps: int, peak_lr: Optional[float] = None, tokens_per_step: Optional[float] = None,
                 seq_length: Optional[int] = None, ckpt_path: str | Path | None = None) -> LRStage:
        """The stage ``Trainer(max_steps=max_steps).fit(..., ckpt_path=ckpt_path)`` will train with, known before
        ``fit`` and without a Trainer: the schedule, the global step it starts at and the tokens per step.

        * No ``ckpt_path``: the stage this callback continues (its state restored with :meth:`load_state_dict`, as
          ``carry.schedule`` does), else a new stage from step 0.
        * ``ckpt_path``: the checkpoint's state of this callback (same ``state_key``, i.e. same class and
          ``stage_name``), else a new stage from the checkpoint's global step (``litcpt anneal``). The file is read
          with ``torch.load(weights_only=True, mmap=True)`` (unless the file is trusted:
          :func:`litcpt.runtime.checkpoint.load_torch_file`): no object is unpickled, no tensor is read.

        A new stage is resolved (:meth:`resolve`) with ``peak_lr`` (the optimizer's configured LR), ``tokens_per_step``
        and ``seq_length`` of the run; those given to the callback win, as in training.

        Raises:
            ValueError: one line, for a missing fact, an unreadable checkpoint or a schedule that does not fit.
        """
        schedule, start = (self._schedule, self._stage_start_step) if self._stage_ready else (None, None)
        new_start = 0
        if ckpt_path is not None:
            from litcpt.runtime.checkpoint import load_lightning_checkpoint

            ckpt = load_lightning_checkpoint(ckpt_path, field="ckpt_path")
            new_start = int(ckpt["global_step"])
            state = (ckpt.get("callbacks") or {}).get(self.state_key)
            if state and self._is_own_state(state):  # what Lightning's restore will load into this callback
                saved = state.get("schedule")
                schedule, start = (None if saved is None else schedule_from_dict(saved)), state.get("stage_start_step")
        if schedule is None or start is None:
            start = new_start
            steps, why = self._stage_steps(max_steps, start, max_steps=max_steps)
            if steps is None and self._needs_stage_steps():
                raise ValueError(why)
            schedule = self.resolve(StageFacts(steps=steps, tokens_per_step=tokens_per_step, seq_length=seq_length,
                                               peak_lr=None if self.max_lr is not None else peak_lr))
        tps = self.tokens_per_step if self.tokens_per_step is not None else tokens_per_step
        t_per_step = 1.0 if self.unit == "steps" else need_tokens_per_step(tps, "the progress (unit='tokens')")
        return LRStage(schedule, first_step=int(start), t_per_step=float(t_per_step))

    # ------------------------------------------------------------------ #
    # hooks
    # ------------------------------------------------------------------ #
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Move this callback to the front of ``trainer.callbacks``: Lightning calls each hook on the callbacks in list
        order, so every other callback's ``on_train_batch_start`` then sees this step's LR. (Safe while Lightning
        iterates the list to call ``setup``: the callbacks before this one shift by one, those after do not move.)"""
        callbacks = trainer.callbacks
        front = sum(1 for cb in callbacks[:callbacks.index(self)] if isinstance(cb, LRScheduleCallback))
        if callbacks.index(self) != front:
            callbacks.remove(self)
            callbacks.insert(front, self)  # after the LR callbacks already moved: their relative order is kept

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Resolve and validate the schedule before any training step (raises ``ValueError``)."""
        if trainer.lr_scheduler_configs:
            rank_zero_warn(
                f"{type(self).__name__} sets the LR itself, but configure_optimizers also returned LR schedulers; "
                "they will fight over param_group['lr']"
            )
        if not self._stage_ready:
            self._schedule = self._resolve_for(trainer, pl_module, trainer.global_step)
            return
        try:  # resumed: the checkpoint's schedule wins, but tell the user if the arguments now say otherwise
            fresh: Optional[Schedule] = self._resolve_for(trainer, pl_module, self._stage_start_step or 0)
        except ValueError:
            fresh = None
        if fresh is not None and fresh != self._schedule:
            rank_zero_warn(
                f"{type(self).__name__}: the checkpoint's schedule {self._schedule} differs from the one resolved from "
                f"the current arguments {fresh}; continuing with the checkpoint's schedule"
            )

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fix the stage start after checkpoint restore (``global_step`` is final here)."""
        if not self._stage_ready:
            start = trainer.global_step
            self._schedule = self._resolve_for(trainer, pl_module, start)
            self._stage_start_step = start
            self._last_step = start
            self._tokens_seen = 0.0
            self._step_tokens = None
            self._stage_ready = True
        if self._base_lr is None:
            self._base_lr = self._base_lr_of(trainer)
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                if "initial_lr" not in group:
                    lr = group["lr"]
                    group["initial_lr"] = lr.item() if isinstance(lr, torch.Tensor) else float(lr)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A later ``fit()`` with this callback starts a new stage unless a checkpoint is loaded."""
        self._stage_ready = False

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Set the LR for the optimizer step this micro-batch contributes to."""
        if not self._stage_ready or self._schedule is None:
            self.on_train_start(trainer, pl_module)
        assert self._schedule is not None and self._base_lr is not None
        step = trainer.global_step
        last = self._last_step if self._last_step is not None else step
        new_step = step != last or self._step_tokens is None
        if new_step:  # first micro-batch of an optimizer step
            if self.unit == "tokens" and step > last:
                self._tokens_seen += (step - last) * (self._step_tokens or 0.0)
            self._last_step = step
            if self.unit == "tokens":
                tokens = self._read_tokens_per_step(pl_module)
                self._step_tokens = need_tokens_per_step(tokens, "progress (unit='tokens')")
            else:
                self._step_tokens = 0.0
            self._last_lr = self._schedule(self.progress)
        lr = self._last_lr
        assert lr is not None
        base = self._base_lr
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                value = lr * (group.get("initial_lr", base) / base)  # == lr exactly for groups at the base LR
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(value)
                else:
                    group["lr"] = value
        if self.log_lr and new_step and logs_reach_loggers(trainer):
            pl_module.log(
                self.log_name,
                torch.tensor(lr, dtype=torch.float64),  # a plain float would be logged as float32
                on_step=True,
                on_epoch=False,
                prog_bar=False,
                logger=bool(trainer.loggers),
                batch_size=1,
            )


# ---------------------------------------------------------------------- #
# Concrete schedules
# ---------------------------------------------------------------------- #
class WarmupCosineLR(LRScheduleCallback):
    r"""Linear warmup then cosine decay to ``min_lr`` over the stage (paper Eq. 1-2).

    A continued-pretraining stage is a fresh callback: it re-warms from 0 and
    re-decays over the new stage's length.

    Args:
        warmup: warmup length as a fraction of the stage (default 0.01, as in the paper).
        warmup_steps: warmup length in optimizer steps (instead of ``warmup``).
        warmup_tokens: warmup length in tokens (instead of ``warmup``).
        min_lr: final LR (absolute). Mutually exclusive with ``min_lr_ratio``.
        min_lr_ratio: final LR as a fraction of ``max_lr`` (default 0.1, as in the paper).
        **kwargs: see :class:`LRScheduleCallback` (``unit``, ``total_steps``, ``max_lr``, ...).

    Example::

        trainer = Trainer(max_steps=10_000, callbacks=[WarmupCosineLR(warmup=0.01, min_lr_ratio=0.1)])
    """

    def __init__(
        self,
        warmup: Optional[float] = None,
        *,
        warmup_steps: Optional[int] = None,
        warmup_tokens: Optional[float] = None,
        min_lr: Optional[float] = None,
        min_lr_ratio: Optional[float] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._configure(WarmupCosineConfig, warmup=Length.of(warmup, warmup_steps, warmup_tokens), min_lr=min_lr,
                        min_lr_ratio=min_lr_ratio)


class InfiniteLR(LRScheduleCallback):
    r"""Infinite schedule (paper Sec. 7): warmup -> cooldown -> constant -> anneal.

    Args:
        warmup, warmup_steps, warmup_tokens: warmup length (fraction of stage / steps / tokens). Default 0.01.
        cooldown, cooldown_steps, cooldown_tokens: cooldown ``max_lr -> const_lr``. Default 0.6 (paper config).
        constant, constant_steps, constant_tokens: length of the constant phase. Default: the rest of
            the stage (``total - warmup - cooldown - anneal``).
        anneal, anneal_steps, anneal_tokens: final anneal ``const_lr -> min_lr``. Default 0 (no anneal:
            the stage ends at ``const_lr``, ready to be continued).
        const_lr / const_lr_ratio: constant LR, absolute or as a fraction of ``max_lr`` (default 0.55,
            the paper's 1.65e-4 / 3e-4).
        min_lr / min_lr_ratio: final LR of the anneal (default ratio 0.1).
        cooldown_shape: ``"cosine"`` or ``"inv_sqrt"`` (with timescale ``alpha``).
        anneal_shape: ``"exponential"``, ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.
        stage_start: ``"warmup"`` (first stage: the full schedule) or ``"constant"`` (a later stage:
            starts at ``const_lr`` with no warmup and no cooldown; passing a non-zero warmup or
            cooldown is an error).
        **kwargs: see :class:`LRScheduleCallback`.

    Example (pretrain, then continue at the constant LR and anneal at the end)::

        stage1 = InfiniteLR(warmup=0.01, cooldown=0.6, const_lr_ratio=0.55, cooldown_shape="inv_sqrt")
        stage2 = InfiniteLR(stage_start="constant", anneal=0.15, const_lr_ratio=0.55)
    """

    def __init__(
        self,
        warmup: Optional[float] = None,
        cooldown: Optional[float] = None,
        constant: Optional[float] = None,
        anneal: Optional[float] = None,
        *,
        warmup_steps: Optional[int] = None,
        warmup_tokens: Optional[float] = None,
        cooldown_steps: Optional[int] = None,
        cooldown_tokens: Optional[float] = None,
        constant_steps: Optional[int] = None,
        constant_tokens: Optional[float] = None,
        anneal_steps: Optional[int] = None,
        anneal_tokens: Optional[float] = None,
        const_lr: Optional[float] = None,
        const_lr_ratio: Optional[float] = None,
        min_lr: Optional[float] = None,
        min_lr_ratio: Optional[float] = None,
        cooldown_shape: CooldownShape = "cosine",
        alpha: float = 10.0,
        anneal_shape: AnnealShape = "exponential",
        stage_start: Literal["warmup", "constant"] = "warmup",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._configure(InfiniteConfig, warmup=Length.of(warmup, warmup_steps, warmup_tokens),
                        cooldown=Length.of(cooldown, cooldown_steps, cooldown_tokens),
                        constant=Length.of(constant, constant_steps, constant_tokens),
                        anneal=Length.of(anneal, anneal_steps, anneal_tokens), const_lr=const_lr,
                        const_lr_ratio=const_lr_ratio, min_lr=min_lr, min_lr_ratio=min_lr_ratio,
                        cooldown_shape=cooldown_shape, alpha=alpha, anneal_shape=anneal_shape, stage_start=stage_start)


class WSDLR(LRScheduleCallback):
    r"""Warmup-stable-decay: warmup, constant ``max_lr``, decay over the last ``decay`` of the stage.

    Args:
        warmup, warmup_steps, warmup_tokens: warmup length. Default 0.01 of the stage.
        decay, decay_steps, decay_tokens: decay length at the end of the stage. Default 0.2.
        min_lr / min_lr_ratio: final LR (default ratio 0.1).
        decay_shape: ``"1-sqrt"`` (default), ``"linear"``, ``"cosine"`` or ``"exponential"``
            (``max_lr (min_lr/max_lr)^p``, see :class:`litcpt.schedules.formulas.WSD`).
        **kwargs: see :class:`LRScheduleCallback`.

    Example::

        trainer = Trainer(max_steps=10_000, callbacks=[WSDLR(warmup=0.01, decay=0.2, decay_shape="1-sqrt")])
    """

    def __init__(
        self,
        warmup: Optional[float] = None,
        decay: Optional[float] = None,
        *,
        warmup_steps: Optional[int] = None,
        warmup_tokens: Optional[float] = None,
        decay_steps: Optional[int] = None,
        decay_tokens: Optional[float] = None,
        min_lr: Optional[float] = None,
        min_lr_ratio: Optional[float] = None,
        decay_shape: DecayShape = "1-sqrt",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._configure(WSDConfig, warmup=Length.of(warmup, warmup_steps, warmup_tokens),
                        decay=Length.of(decay, decay_steps, decay_tokens), min_lr=min_lr, min_lr_ratio=min_lr_ratio,
                        decay_shape=decay_shape)


class ConstantLR(LRScheduleCallback):
    r"""Constant ``max_lr`` (default: the optimizer's LR) after an optional linear warmup.

    Args:
        warmup, warmup_steps, warmup_tokens: warmup length. Default 0 (no warmup).
        **kwargs: see :class:`LRScheduleCallback`.

    Example::

        trainer = Trainer(max_steps=1000, callbacks=[ConstantLR(warmup_steps=100)])
    """

    def __init__(
        self,
        warmup: Optional[float] = None,
        *,
        warmup_steps: Optional[int] = None,
        warmup_tokens: Optional[float] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._configure(ConstantConfig, warmup=Length.of(warmup, warmup_steps, warmup_tokens))


class LinearDecayLR(LRScheduleCallback):
    r"""Linear warmup, then linear decay to ``min_lr`` at the end of the stage; ``min_lr=0`` (the default) is D2Z
    ("Straight to Zero", Bergsma et al. 2025, arXiv:2502.15938).

    Args:
        warmup, warmup_steps, warmup_tokens: warmup length. Default 0.01 of the stage.
        min_lr / min_lr_ratio: final LR, absolute or as a fraction of ``max_lr`` (default 0: decay to zero).
        **kwargs: see :class:`LRScheduleCallback`.

    Example::

        trainer = Trainer(max_steps=10_000, callbacks=[LinearDecayLR(warmup=0.01)])   # D2Z
    """

    def __init__(
        self,
        warmup: Optional[float] = None,
        *,
        warmup_steps: Optional[int] = None,
        warmup_tokens: Optional[float] = None,
        min_lr: Optional[float] = None,
        min_lr_ratio: Optional[float] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._configure(LinearDecayConfig, warmup=Length.of(warmup, warmup_steps, warmup_tokens), min_lr=min_lr,
                        min_lr_ratio=min_lr_ratio)


class PowerLR(LRScheduleCallback):
    r"""The Power scheduler (Shen et al. 2024, arXiv:2408.13359): ``min(max_lr, batch_size * a * n^b)`` after ``n``
    tokens, after a linear warmup, with an optional decay over the end of the stage.

    The progress unit is always tokens. Without a decay the schedule does not depend on the stage's length, which is
    the point of the scheduler: a run can be stopped or continued at any time, then decayed (e.g. by ``litcpt
    anneal``) like WSD.

    Args:
        warmup, warmup_steps, warmup_tokens: warmup length (linear from 0 to the power-law LR at its end). Default 0.
        decay, decay_steps, decay_tokens: decay length at the end of the stage. Default 0 (no decay).
        a, b: the power law's coefficient and exponent (paper: ``a=4``, ``b=-0.51``, with muP).
        batch_size: ``beta`` of the paper, in sequences per optimizer step. Default: ``pl_module.tokens_per_step /
            pl_module.seq_length`` (the global batch size of ``litcpt pretrain``).
        min_lr / min_lr_ratio: LR at the end of the decay (default 0).
        decay_shape: ``"linear"`` (default), ``"1-sqrt"``, ``"cosine"`` or ``"exponential"`` (``min_lr > 0``).
        **kwargs: see :class:`LRScheduleCallback` (``unit`` must be ``"tokens"``). ``max_lr`` caps the LR (default:
            the optimizer's ``lr``).

    Example::

        trainer = Trainer(max_steps=10_000, callbacks=[PowerLR(warmup_tokens=1e8, a=4.0, b=-0.51)])
    """

    def __init__(
        self,
        warmup: Optional[float] = None,
        decay: Optional[float] = None,
        *,
        warmup_steps: Optional[int] = None,
        warmup_tokens: Optional[float] = None,
        decay_steps: Optional[int] = None,
        decay_tokens: Optional[float] = None,
        a: float = 4.0,
        b: float = -0.51,
        batch_size: Optional[float] = None,
        min_lr: Optional[float] = None,
        min_lr_ratio: Optional[float] = None,
        decay_shape: DecayShape = "linear",
        unit: Literal["tokens"] = "tokens",
        **kwargs: Any,
    ) -> None:
        if unit != "tokens":
            raise ValueError(f"unit={unit!r}: PowerLR is defined in tokens (unit='tokens')")
        super().__init__(unit=unit, **kwargs)
        self._configure(PowerConfig, warmup=Length.of(warmup, warmup_steps, warmup_tokens),
                        decay=Length.of(decay, decay_steps, decay_tokens), a=a, b=b, batch_size=batch_size,
                        min_lr=min_lr, min_lr_ratio=min_lr_ratio, decay_shape=decay_shape)
