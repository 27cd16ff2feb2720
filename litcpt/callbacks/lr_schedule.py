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

They share :class:`LRScheduleCallback`, which handles units (optimizer steps or
tokens), lengths given as fractions of the stage or as absolute values, per-group
LR scaling, logging and exact resume through ``state_dict``/``load_state_dict``.

Example::

    >>> from lightning.pytorch import Trainer
    >>> from litcpt.callbacks.lr_schedule import WarmupCosineLR
    >>> trainer = Trainer(max_steps=1000, callbacks=[WarmupCosineLR(warmup=0.01, min_lr_ratio=0.1)])

Timing: the LR used by the ``k``-th optimizer step of a stage (``k = 0, 1, ...``)
is ``schedule(k)`` (unit ``"steps"``) or ``schedule(tokens seen before step k)``
(unit ``"tokens"``). With gradient accumulation the LR is set at the start of
every micro-batch but only changes when ``trainer.global_step`` (which counts
optimizer steps) advances, so accumulation never stretches the schedule.

Why one module of this size: the base class holds all the machinery (units, lengths, resume, logging) and each
schedule's callback is a thin, explicitly typed constructor over it -- explicit because a callback's signature is
its recipe schema (jsonargparse reads it), so the similar-looking ``__init__`` signatures are the schema, not
duplicated logic. Splitting them into one file each would scatter one small class hierarchy.

Callback order does not matter: in ``setup`` the callback moves itself to the front
of ``trainer.callbacks``, so its ``on_train_batch_start`` sets the LR before any other
callback's (e.g. ``LearningRateMonitor``, which would otherwise log the previous
step's LR when listed first) reads it.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks.callback import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from typing_extensions import override

from litcpt.schedules.formulas import (
    ANNEAL_SHAPES,
    COOLDOWN_SHAPES,
    DECAY_SHAPES,
    WSD,
    AnnealShape,
    Constant,
    CooldownShape,
    DecayShape,
    Infinite,
    LinearDecay,
    Power,
    Schedule,
    WarmupCosine,
    check_fits,
    check_shape,
    fractions_to_lengths,
    schedule_from_dict,
)

__all__ = ["LRScheduleCallback", "WarmupCosineLR", "InfiniteLR", "WSDLR", "ConstantLR", "LinearDecayLR", "PowerLR"]

Unit = Literal["steps", "tokens"]
_UNITS = ("steps", "tokens")
_STATE_VERSION = 1


def _opt_number(name: str, value: Any, *, positive: bool = False) -> Optional[float]:
    """Validate an optional non-negative (or positive) finite number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name}={value!r} must be {'> 0' if positive else '>= 0'}")
    return float(value)


def _ratio(name: str, value: Any) -> Optional[float]:
    v = _opt_number(name, value)
    if v is not None and v > 1:
        raise ValueError(f"{name}={value!r} must be in [0, 1]")
    return v


class _LengthSpec:
    """A phase length given as a fraction of the stage, in steps or in tokens (at most one)."""

    __slots__ = ("name", "fraction", "steps", "tokens", "default")

    def __init__(
        self,
        name: str,
        fraction: Optional[float],
        steps: Optional[float],
        tokens: Optional[float],
        default: Optional[float],
    ) -> None:
        candidates = ((name, fraction), (f"{name}_steps", steps), (f"{name}_tokens", tokens))
        given = [(k, v) for k, v in candidates if v is not None]
        if len(given) > 1:
            raise ValueError(
                "give at most one of " + ", ".join(f"{k}={v!r}" for k, v in given) + f" (length of the {name} phase)"
            )
        _ratio(name, fraction)
        _opt_number(f"{name}_steps", steps)
        _opt_number(f"{name}_tokens", tokens)
        self.name, self.fraction, self.steps, self.tokens, self.default = name, fraction, steps, tokens, default

    @property
    def is_set(self) -> bool:
        return self.fraction is not None or self.steps is not None or self.tokens is not None

    def resolve(self, *, total: float, unit: str, tokens_per_step: Optional[float]) -> Optional[float]:
        """Length in ``unit`` (``None`` if unset and without default)."""
        if self.steps is not None:
            if unit == "steps":
                return float(self.steps)
            return float(self.steps) * _need_tps(tokens_per_step, f"{self.name}_steps")
        if self.tokens is not None:
            if unit == "tokens":
                return float(self.tokens)
            return float(self.tokens) / _need_tps(tokens_per_step, f"{self.name}_tokens")
        fraction = self.fraction if self.fraction is not None else self.default
        return None if fraction is None else float(fraction) * total

    def as_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "steps": self.steps, "tokens": self.tokens}


def _need_tps(tps: Optional[float], why: str) -> float:
    if tps is None:
        raise ValueError(
            f"tokens_per_step is needed to convert {why} between steps and tokens: pass tokens_per_step= "
            "or set `pl_module.tokens_per_step`"
        )
    return tps


class LRScheduleCallback(Callback):
    r"""Base class: sets every param group's LR from a :mod:`litcpt.schedules.formulas` schedule.

    Subclasses implement :meth:`_build_schedule`. The group LR is

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
    """

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
        check_shape("unit", unit, _UNITS)
        if total_steps is not None and total_tokens is not None:
            raise ValueError(f"give at most one of total_steps={total_steps!r}, total_tokens={total_tokens!r}")
        self.unit: str = unit
        self.total_steps = _opt_number("total_steps", total_steps, positive=True)
        self.total_tokens = _opt_number("total_tokens", total_tokens, positive=True)
        self.tokens_per_step = _opt_number("tokens_per_step", tokens_per_step, positive=True)
        self.max_lr = _opt_number("max_lr", max_lr, positive=True)
        self.log_lr = bool(log_lr)
        self.log_name = str(log_name)
        self.stage_name = stage_name
        self._lengths: dict[str, _LengthSpec] = {}
        self._reset_progress()

    # ------------------------------------------------------------------ #
    # to be implemented by subclasses
    # ------------------------------------------------------------------ #
    def _build_schedule(self, lengths: dict[str, Optional[float]], total: float, max_lr: float) -> Schedule:
        """Build the schedule from resolved phase lengths (in ``unit``), stage ``total`` and peak LR."""
        raise NotImplementedError

    def _add_length(
        self,
        name: str,
        fraction: Optional[float],
        steps: Optional[float],
        tokens: Optional[float],
        default: Optional[float],
    ) -> None:
        self._lengths[name] = _LengthSpec(name, fraction, steps, tokens, default)

    def _check_fractions(self) -> None:
        """Fail early (in ``__init__``) if the phases given as fractions exceed the stage."""
        fractions = {n: s.fraction if s.is_set else s.default for n, s in self._lengths.items()}
        fractions_to_lengths(1.0, **{n: f for n, f in fractions.items() if f})

    def _needs_total(self) -> bool:
        """Whether the schedule needs the stage length (``ConstantLR`` only does for a fractional warmup)."""
        return True

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

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the stage's progress; ignored (new stage) if ``stage_name`` differs."""
        version = state_dict.get("version", 1)
        if not isinstance(version, int) or version > _STATE_VERSION:
            raise ValueError(f"{type(self).__name__}: the checkpoint's LR-schedule state has version {version!r}, "
                             f"this litcpt reads up to {_STATE_VERSION}: resume with the litcpt that wrote it")
        if state_dict.get("stage_name") != self.stage_name:
            rank_zero_info(
                f"{type(self).__name__}: checkpoint is from stage {state_dict.get('stage_name')!r}, this is stage "
                f"{self.stage_name!r}: starting a new stage"
            )
            return
        if state_dict.get("unit") != self.unit:
            raise ValueError(f"unit={self.unit!r} differs from the checkpoint's unit={state_dict.get('unit')!r}")
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
    def _read_tokens_per_step(self, pl_module: pl.LightningModule) -> Optional[float]:
        if self.tokens_per_step is not None:
            return self.tokens_per_step
        tps = getattr(pl_module, "tokens_per_step", None)
        if tps is None:
            return None
        if isinstance(tps, torch.Tensor):
            tps = tps.item()
        return _opt_number("pl_module.tokens_per_step", tps, positive=True)

    def _stage_steps(self, trainer: pl.Trainer, stage_start_step: int) -> float:
        max_steps = trainer.max_steps
        if max_steps is not None and max_steps > 0:
            total = max_steps
        else:
            total = trainer.estimated_stepping_batches
            if not math.isfinite(total) or total <= 0:
                raise ValueError(
                    f"trainer.max_steps={max_steps!r} gives no stage length: set Trainer(max_steps=...) or pass "
                    f"total_steps= / total_tokens= to {type(self).__name__}"
                )
        stage = float(total) - stage_start_step
        if stage <= 0:
            raise ValueError(
                f"trainer.max_steps={total!r} leaves no steps for a stage starting at global_step={stage_start_step}"
            )
        return stage

    def _stage_total(self, trainer: pl.Trainer, stage_start_step: int, tps: Optional[float]) -> float:
        """Stage length in ``unit``."""
        if self.unit == "steps":
            if self.total_steps is not None:
                return self.total_steps
            if self.total_tokens is not None:
                return self.total_tokens / _need_tps(tps, "total_tokens")
            return self._stage_steps(trainer, stage_start_step)
        if self.total_tokens is not None:
            return self.total_tokens
        steps = self.total_steps if self.total_steps is not None else self._stage_steps(trainer, stage_start_step)
        return steps * _need_tps(tps, "the stage length (unit='tokens')")

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

    def resolve(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage_start_step: int = 0
    ) -> Schedule:
        """Resolve lengths and LRs against the trainer/module and build the schedule.

        Raises:
            ValueError: for inconsistent lengths, LRs or a missing stage length.
        """
        tps = self._read_tokens_per_step(pl_module)
        try:
            total = self._stage_total(trainer, stage_start_step, tps)
        except ValueError:
            if self._needs_total():
                raise
            total = math.inf
        lengths = {
            n: spec.resolve(total=total, unit=self.unit, tokens_per_step=tps) for n, spec in self._lengths.items()
        }
        max_lr = self.max_lr if self.max_lr is not None else self._base_lr_of(trainer)
        try:
            return self._build_schedule(lengths, total, max_lr)
        except ValueError as err:
            raise ValueError(f"{type(self).__name__}: {err}") from None

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
            self._schedule = self.resolve(trainer, pl_module, stage_start_step=trainer.global_step)
            return
        try:  # resumed: the checkpoint's schedule wins, but tell the user if the arguments now say otherwise
            fresh: Optional[Schedule] = self.resolve(trainer, pl_module, stage_start_step=self._stage_start_step or 0)
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
            self._schedule = self.resolve(trainer, pl_module, stage_start_step=start)
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
                self._step_tokens = _need_tps(self._read_tokens_per_step(pl_module), "progress (unit='tokens')")
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
        if self.log_lr and new_step and _should_log(trainer):
            pl_module.log(
                self.log_name,
                torch.tensor(lr, dtype=torch.float64),  # a plain float would be logged as float32
                on_step=True,
                on_epoch=False,
                prog_bar=False,
                logger=bool(trainer.loggers),
                batch_size=1,
            )


def _should_log(trainer: pl.Trainer) -> bool:
    """Whether step metrics logged now reach the loggers (every ``log_every_n_steps``).

    ``self.log`` costs ~1 ms in Lightning, so the LR is only logged when it will be
    written; this is the same check :class:`~lightning.pytorch.callbacks.LearningRateMonitor` uses.
    """
    connector = getattr(trainer, "_logger_connector", None)
    if connector is None:
        return True
    try:
        return bool(connector.should_update_logs)
    except Exception:  # pragma: no cover - private API changed: log every step
        return True


# ---------------------------------------------------------------------- #
# Concrete schedules
# ---------------------------------------------------------------------- #
def _min_lr(min_lr: Optional[float], min_lr_ratio: Optional[float], max_lr: float) -> float:
    return float(min_lr) if min_lr is not None else float(min_lr_ratio) * max_lr  # type: ignore[arg-type]


def _check_min(min_lr: Optional[float], min_lr_ratio: Optional[float]) -> tuple[Optional[float], Optional[float]]:
    if min_lr is not None and min_lr_ratio is not None:
        raise ValueError(f"give at most one of min_lr={min_lr!r}, min_lr_ratio={min_lr_ratio!r}")
    return _opt_number("min_lr", min_lr), _ratio("min_lr_ratio", min_lr_ratio)


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
        self._add_length("warmup", warmup, warmup_steps, warmup_tokens, default=0.01)
        self.min_lr, self.min_lr_ratio = _check_min(min_lr, min_lr_ratio)
        if self.min_lr is None and self.min_lr_ratio is None:
            self.min_lr_ratio = 0.1
        self._check_fractions()

    @override
    def _build_schedule(self, lengths: dict[str, Optional[float]], total: float, max_lr: float) -> Schedule:
        return WarmupCosine(
            warmup=lengths["warmup"] or 0.0,
            total=total,
            max_lr=max_lr,
            min_lr=_min_lr(self.min_lr, self.min_lr_ratio, max_lr),
        )


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
        check_shape("stage_start", stage_start, ("warmup", "constant"))
        check_shape("cooldown_shape", cooldown_shape, COOLDOWN_SHAPES)
        check_shape("anneal_shape", anneal_shape, ANNEAL_SHAPES)
        self.stage_start = stage_start
        later = stage_start == "constant"
        self._add_length("warmup", warmup, warmup_steps, warmup_tokens, default=0.0 if later else 0.01)
        self._add_length("cooldown", cooldown, cooldown_steps, cooldown_tokens, default=0.0 if later else 0.6)
        self._add_length("constant", constant, constant_steps, constant_tokens, default=None)
        self._add_length("anneal", anneal, anneal_steps, anneal_tokens, default=0.0)
        if later:
            for name in ("warmup", "cooldown"):
                spec = self._lengths[name]
                for v in (spec.fraction, spec.steps, spec.tokens):
                    if v:
                        raise ValueError(f"{name}={v!r} must be 0 with stage_start='constant' (a later stage)")
        if const_lr is not None and const_lr_ratio is not None:
            raise ValueError(f"give at most one of const_lr={const_lr!r}, const_lr_ratio={const_lr_ratio!r}")
        self.const_lr = _opt_number("const_lr", const_lr)
        self.const_lr_ratio = _ratio("const_lr_ratio", const_lr_ratio)
        if self.const_lr is None and self.const_lr_ratio is None:
            self.const_lr_ratio = 0.55
        self.min_lr, self.min_lr_ratio = _check_min(min_lr, min_lr_ratio)
        if self.min_lr is None and self.min_lr_ratio is None:
            self.min_lr_ratio = 0.1
        self.cooldown_shape = cooldown_shape
        self.alpha = alpha
        self.anneal_shape = anneal_shape
        self._check_fractions()

    @override
    def _build_schedule(self, lengths: dict[str, Optional[float]], total: float, max_lr: float) -> Schedule:
        warmup = lengths["warmup"] or 0.0
        cooldown = lengths["cooldown"] or 0.0
        anneal = lengths["anneal"] or 0.0
        constant = lengths["constant"]
        parts = {"warmup": warmup, "cooldown": cooldown, "anneal": anneal}
        if constant is None:
            check_fits(parts, total)
            constant = max(0.0, total - warmup - cooldown - anneal)
        else:
            check_fits({**parts, "constant": constant}, total)
        if self.const_lr is not None:
            const_lr = self.const_lr
        else:
            const_lr = float(self.const_lr_ratio) * max_lr  # type: ignore[arg-type]
        return Infinite(
            warmup=warmup,
            cooldown=cooldown,
            constant=constant,
            anneal=anneal,
            max_lr=max_lr,
            const_lr=const_lr,
            min_lr=_min_lr(self.min_lr, self.min_lr_ratio, max_lr),
            cooldown_shape=self.cooldown_shape,
            alpha=self.alpha,
            anneal_shape=self.anneal_shape,
        )


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
        check_shape("decay_shape", decay_shape, DECAY_SHAPES)
        self._add_length("warmup", warmup, warmup_steps, warmup_tokens, default=0.01)
        self._add_length("decay", decay, decay_steps, decay_tokens, default=0.2)
        self.min_lr, self.min_lr_ratio = _check_min(min_lr, min_lr_ratio)
        if self.min_lr is None and self.min_lr_ratio is None:
            self.min_lr_ratio = 0.1
        self.decay_shape = decay_shape
        self._check_fractions()

    @override
    def _build_schedule(self, lengths: dict[str, Optional[float]], total: float, max_lr: float) -> Schedule:
        return WSD(
            warmup=lengths["warmup"] or 0.0,
            total=total,
            decay=lengths["decay"] or 0.0,
            max_lr=max_lr,
            min_lr=_min_lr(self.min_lr, self.min_lr_ratio, max_lr),
            decay_shape=self.decay_shape,
        )


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
        self._add_length("warmup", warmup, warmup_steps, warmup_tokens, default=0.0)

    @override
    def _needs_total(self) -> bool:
        return self._lengths["warmup"].fraction is not None

    @override
    def _build_schedule(self, lengths: dict[str, Optional[float]], total: float, max_lr: float) -> Schedule:
        check_fits({"warmup": lengths["warmup"] or 0.0}, total)
        return Constant(lr=max_lr, warmup=lengths["warmup"] or 0.0)


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
        self._add_length("warmup", warmup, warmup_steps, warmup_tokens, default=0.01)
        self.min_lr, self.min_lr_ratio = _check_min(min_lr, min_lr_ratio)
        if self.min_lr is None and self.min_lr_ratio is None:
            self.min_lr = 0.0
        self._check_fractions()

    @override
    def _build_schedule(self, lengths: dict[str, Optional[float]], total: float, max_lr: float) -> Schedule:
        return LinearDecay(warmup=lengths["warmup"] or 0.0, total=total, max_lr=max_lr,
                           min_lr=_min_lr(self.min_lr, self.min_lr_ratio, max_lr))


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
        check_shape("decay_shape", decay_shape, DECAY_SHAPES)
        self._add_length("warmup", warmup, warmup_steps, warmup_tokens, default=0.0)
        self._add_length("decay", decay, decay_steps, decay_tokens, default=0.0)
        self.min_lr, self.min_lr_ratio = _check_min(min_lr, min_lr_ratio)
        if self.min_lr is None and self.min_lr_ratio is None:
            self.min_lr = 0.0
        self.a, self.b = float(a), float(b)
        self.batch_size = _opt_number("batch_size", batch_size, positive=True)
        self.decay_shape = decay_shape
        self._resolved_batch_size: Optional[float] = None
        self._check_fractions()
        Power(warmup=0.0, total=math.inf, decay=0.0, max_lr=1.0, a=self.a, b=self.b)  # validates a and b now

    @override
    def _needs_total(self) -> bool:
        decay = self._lengths["decay"]
        return bool(decay.fraction or decay.steps or decay.tokens) or self._lengths["warmup"].fraction is not None

    @override
    def resolve(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage_start_step: int = 0) -> Schedule:
        batch_size = self.batch_size
        if batch_size is None:
            tps, seq = getattr(pl_module, "tokens_per_step", None), getattr(pl_module, "seq_length", None)
            if not tps or not seq:
                raise ValueError("PowerLR: batch_size is needed (sequences per optimizer step): pass batch_size= or "
                                 "set pl_module.tokens_per_step and pl_module.seq_length")
            batch_size = float(tps) / float(seq)
        self._resolved_batch_size = batch_size
        return super().resolve(trainer, pl_module, stage_start_step)

    @override
    def _build_schedule(self, lengths: dict[str, Optional[float]], total: float, max_lr: float) -> Schedule:
        decay = lengths["decay"] or 0.0
        return Power(warmup=lengths["warmup"] or 0.0, total=total, decay=decay, max_lr=max_lr, a=self.a, b=self.b,
                     batch_size=float(self._resolved_batch_size or 1.0),
                     min_lr=_min_lr(self.min_lr, self.min_lr_ratio, max_lr), decay_shape=self.decay_shape)
