"""Schedule configurations and the one pure :func:`resolve` that turns a configuration and a stage into a schedule.

A *configuration* is what a user asks for, before the stage is known: phase lengths as a fraction of the stage, in
optimizer steps or in tokens (:class:`Length`), LRs absolute or as a ratio of the peak, shapes, the Power scheduler's
batch size. One small frozen dataclass per schedule kind, validated once at construction with one-line
``ValueError`` s naming the field (e.g. ``give at most one of warmup=0.1, warmup_steps=10 (length of the warmup
phase)``). :class:`StageFacts` are what a run knows about the stage: its length (optimizer steps or tokens), the
tokens per optimizer step, the peak LR (the optimizer's configured LR), the sequence length.
``resolve(config, facts)`` is the resolved :mod:`~litcpt.schedules.formulas` schedule, with every length in the
config's ``unit``::

    >>> from litcpt.schedules.config import Length, StageFacts, WarmupCosineConfig, resolve
    >>> resolve(WarmupCosineConfig(warmup=Length(steps=10), min_lr=1e-4), StageFacts(steps=1000, peak_lr=1e-3))
    WarmupCosine(warmup=10.0, total=1000.0, max_lr=0.001, min_lr=0.0001)

The LR-schedule callbacks (:mod:`litcpt.callbacks.lr_schedule`) build their configuration from their constructor
arguments and resolve it with what they read from the Trainer; ``litcpt plot-schedule``, ``litcpt anneal`` and the
Trainer harness resolve the same configuration without a Trainer. No Lightning, no torch.

One module on purpose: the configurations share their base fields, length and LR rules, and each one's
``_build`` is the last step of :func:`resolve`; the size is the number of schedule kinds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, Optional, Union

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
)

__all__ = ["UNITS", "ConstantConfig", "InfiniteConfig", "Length", "LinearDecayConfig", "PowerConfig",
           "ScheduleConfig", "StageFacts", "Unit", "WSDConfig", "WarmupCosineConfig", "need_tokens_per_step",
           "optional_number", "resolve"]

Unit = Literal["steps", "tokens"]
UNITS = ("steps", "tokens")


# --------------------------------------------------------------------------- #
# Checks (one-line messages naming the field)
# --------------------------------------------------------------------------- #
def optional_number(name: str, value: Any, *, positive: bool = False) -> Optional[float]:
    """``None``, or ``value`` as a float after checking it is a finite number ``>= 0`` (``> 0`` if ``positive``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name}={value!r} must be {'> 0' if positive else '>= 0'}")
    return float(value)


def _ratio(name: str, value: Any) -> Optional[float]:
    v = optional_number(name, value)
    if v is not None and v > 1:
        raise ValueError(f"{name}={value!r} must be in [0, 1]")
    return v


def _at_most_one(**given: Any) -> None:
    named = [(k, v) for k, v in given.items() if v is not None]
    if len(named) > 1:
        raise ValueError("give at most one of " + ", ".join(f"{k}={v!r}" for k, v in named))


def need_tokens_per_step(tokens_per_step: Optional[float], why: str) -> float:
    """``tokens_per_step``, or a one-line error saying that ``why`` needs it."""
    if tokens_per_step is None:
        raise ValueError(f"tokens_per_step is needed to convert {why} between steps and tokens: pass tokens_per_step= "
                         "or set `pl_module.tokens_per_step` (under a Trainer)")
    return tokens_per_step


# --------------------------------------------------------------------------- #
# Lengths
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Length:
    """The length of a schedule phase: a ``fraction`` of the stage, optimizer ``steps`` or ``tokens`` (one of them;
    the configuration that holds it checks that, naming the phase)."""

    fraction: Optional[float] = None
    steps: Optional[float] = None
    tokens: Optional[float] = None

    @classmethod
    def of(cls, fraction: Optional[float] = None, steps: Optional[float] = None,
           tokens: Optional[float] = None) -> Optional[Length]:
        """The length given by a callback's ``<phase>``, ``<phase>_steps``, ``<phase>_tokens`` arguments; ``None`` if
        none is given (the schedule's default)."""
        if fraction is None and steps is None and tokens is None:
            return None
        return cls(fraction=fraction, steps=steps, tokens=tokens)

    @property
    def nonzero(self) -> bool:
        """Whether any of its values is non-zero."""
        return bool(self.fraction or self.steps or self.tokens)

    def check(self, name: str) -> None:
        """One-line errors naming the phase: more than one value, a fraction outside [0, 1], a negative count."""
        given = [(k, v) for k, v in ((name, self.fraction), (f"{name}_steps", self.steps),
                                     (f"{name}_tokens", self.tokens)) if v is not None]
        if len(given) > 1:
            raise ValueError("give at most one of " + ", ".join(f"{k}={v!r}" for k, v in given)
                             + f" (length of the {name} phase)")
        _ratio(name, self.fraction)
        optional_number(f"{name}_steps", self.steps)
        optional_number(f"{name}_tokens", self.tokens)

    def in_unit(self, name: str, *, total: float, unit: str, tokens_per_step: Optional[float]) -> Optional[float]:
        """The length in ``unit`` for a stage of ``total`` (in ``unit``); ``None`` if no value is set."""
        if self.steps is not None:
            if unit == "steps":
                return float(self.steps)
            return float(self.steps) * need_tokens_per_step(tokens_per_step, f"{name}_steps")
        if self.tokens is not None:
            if unit == "tokens":
                return float(self.tokens)
            return float(self.tokens) / need_tokens_per_step(tokens_per_step, f"{name}_tokens")
        if self.fraction is None:
            return None
        return 0.0 if self.fraction == 0 else float(self.fraction) * total  # 0 of an open-ended stage is 0


def _lr(absolute: Optional[float], ratio: Optional[float], peak: float) -> float:
    return float(absolute) if absolute is not None else float(ratio) * peak  # type: ignore[arg-type]


def _check_lr_pair(name: str, absolute: Any, ratio: Any) -> None:
    _at_most_one(**{name: absolute, f"{name}_ratio": ratio})
    optional_number(name, absolute)
    _ratio(f"{name}_ratio", ratio)


# --------------------------------------------------------------------------- #
# Stage facts
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, kw_only=True)
class StageFacts:
    """What a run knows about the stage a schedule is resolved for (every field optional: a schedule that does not
    need a fact does not ask for it).

    Attributes:
        steps: length of the stage in optimizer steps (under a Trainer: ``max_steps`` minus the stage's first step).
        tokens: length of the stage in tokens, instead of ``steps``.
        tokens_per_step: global tokens per optimizer step (``global_batch_size x seq_length``).
        peak_lr: the peak LR, i.e. the optimizer's configured ``lr`` (a configuration's ``max_lr`` wins over it).
        seq_length: tokens per sequence (the Power scheduler's batch size is ``tokens_per_step / seq_length``).
    """

    steps: Optional[float] = None
    tokens: Optional[float] = None
    tokens_per_step: Optional[float] = None
    peak_lr: Optional[float] = None
    seq_length: Optional[int] = None

    def __post_init__(self) -> None:
        _at_most_one(steps=self.steps, tokens=self.tokens)
        for name in ("steps", "tokens", "tokens_per_step", "peak_lr", "seq_length"):
            optional_number(name, getattr(self, name), positive=True)


# --------------------------------------------------------------------------- #
# Configurations
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, kw_only=True)
class _Config:
    """Fields every schedule kind has (the callbacks' ``total_steps``, ``total_tokens``, ``tokens_per_step``,
    ``max_lr``), its phases and the default fraction of each."""

    total_steps: Optional[float] = None
    """Stage length in optimizer steps (instead of the stage's)."""
    total_tokens: Optional[float] = None
    """Stage length in tokens (instead of the stage's)."""
    tokens_per_step: Optional[float] = None
    """Tokens per optimizer step (instead of the stage's)."""
    max_lr: Optional[float] = None
    """Peak LR (instead of the stage's ``peak_lr``)."""

    unit: ClassVar[str]
    phases: ClassVar[tuple[str, ...]] = ()
    """The :class:`Length` fields, in order."""

    def __post_init__(self) -> None:
        if "unit" in {f.name for f in fields(self)}:
            check_shape("unit", self.unit, UNITS)
        _at_most_one(total_steps=self.total_steps, total_tokens=self.total_tokens)
        optional_number("total_steps", self.total_steps, positive=True)
        optional_number("total_tokens", self.total_tokens, positive=True)
        optional_number("tokens_per_step", self.tokens_per_step, positive=True)
        optional_number("max_lr", self.max_lr, positive=True)

    def default_fraction(self, phase: str) -> Optional[float]:
        """The fraction of the stage a phase lasts when no length is given (``None``: the phase has no default)."""
        raise NotImplementedError  # pragma: no cover - every kind defines it

    def length(self, phase: str) -> Optional[Length]:
        """The phase's length: the given one, else the default fraction (``None``: neither)."""
        given = getattr(self, phase)
        if given is not None:
            return given
        default = self.default_fraction(phase)
        return None if default is None else Length(fraction=default)

    def _check_lengths(self) -> None:
        for phase in self.phases:
            value = getattr(self, phase)
            if value is not None and not isinstance(value, Length):
                raise ValueError(f"{phase}={value!r} must be a Length (fraction, steps or tokens) or None")
            if value is not None:
                value.check(phase)

    def _check_fractions(self) -> None:
        """The phases given (or defaulting) as fractions must fit in the stage."""
        given = {p: self.length(p) for p in self.phases}
        fractions_to_lengths(1.0, **{p: n.fraction for p, n in given.items() if n is not None and n.fraction})

    @property
    def needs_length(self) -> bool:
        """Whether resolving needs the stage length (all kinds but ``Constant`` and ``Power`` always do)."""
        return True

    def _build(self, lengths: dict[str, Optional[float]], total: float, max_lr: float,
               batch_size: Optional[float]) -> Schedule:  # pragma: no cover - every kind defines it
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class _StepsOrTokens(_Config):
    unit: Unit = "steps"
    """Unit of the schedule's progress and lengths: optimizer ``steps`` or ``tokens``."""


@dataclass(frozen=True, kw_only=True)
class WarmupCosineConfig(_StepsOrTokens):
    """Linear warmup, then cosine decay to ``min_lr`` over the stage (paper Eq. 1-2): ``warmup`` default 0.01 of the
    stage, ``min_lr`` / ``min_lr_ratio`` default ratio 0.1."""

    warmup: Optional[Length] = None
    min_lr: Optional[float] = None
    min_lr_ratio: Optional[float] = None
    phases: ClassVar[tuple[str, ...]] = ("warmup",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_lengths()
        _check_lr_pair("min_lr", self.min_lr, self.min_lr_ratio)
        self._check_fractions()

    def default_fraction(self, phase: str) -> Optional[float]:
        return 0.01

    def _build(self, lengths, total, max_lr, batch_size):
        ratio = 0.1 if self.min_lr is None and self.min_lr_ratio is None else self.min_lr_ratio
        return WarmupCosine(warmup=lengths["warmup"] or 0.0, total=total, max_lr=max_lr,
                            min_lr=_lr(self.min_lr, ratio, max_lr))


@dataclass(frozen=True, kw_only=True)
class InfiniteConfig(_StepsOrTokens):
    """Warmup, cooldown to ``const_lr``, constant, anneal to ``min_lr`` (paper Sec. 7). Defaults: ``warmup`` 0.01,
    ``cooldown`` 0.6, ``constant`` the rest of the stage, ``anneal`` 0; ``const_lr_ratio`` 0.55, ``min_lr_ratio``
    0.1. ``stage_start="constant"`` (a later stage) has no warmup and no cooldown."""

    warmup: Optional[Length] = None
    cooldown: Optional[Length] = None
    constant: Optional[Length] = None
    anneal: Optional[Length] = None
    const_lr: Optional[float] = None
    const_lr_ratio: Optional[float] = None
    min_lr: Optional[float] = None
    min_lr_ratio: Optional[float] = None
    cooldown_shape: CooldownShape = "cosine"
    alpha: float = 10.0
    anneal_shape: AnnealShape = "exponential"
    stage_start: Literal["warmup", "constant"] = "warmup"
    phases: ClassVar[tuple[str, ...]] = ("warmup", "cooldown", "constant", "anneal")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_shape("stage_start", self.stage_start, ("warmup", "constant"))
        check_shape("cooldown_shape", self.cooldown_shape, COOLDOWN_SHAPES)
        check_shape("anneal_shape", self.anneal_shape, ANNEAL_SHAPES)
        self._check_lengths()
        if self.stage_start == "constant":
            for phase in ("warmup", "cooldown"):
                given = getattr(self, phase) or Length()
                for v in (given.fraction, given.steps, given.tokens):
                    if v:
                        raise ValueError(f"{phase}={v!r} must be 0 with stage_start='constant' (a later stage)")
        _check_lr_pair("const_lr", self.const_lr, self.const_lr_ratio)
        _check_lr_pair("min_lr", self.min_lr, self.min_lr_ratio)
        self._check_fractions()

    def default_fraction(self, phase: str) -> Optional[float]:
        later = self.stage_start == "constant"
        return {"warmup": 0.0 if later else 0.01, "cooldown": 0.0 if later else 0.6, "constant": None,
                "anneal": 0.0}[phase]

    def _build(self, lengths, total, max_lr, batch_size):
        warmup, cooldown, anneal = lengths["warmup"] or 0.0, lengths["cooldown"] or 0.0, lengths["anneal"] or 0.0
        constant = lengths["constant"]
        parts = {"warmup": warmup, "cooldown": cooldown, "anneal": anneal}
        if constant is None:
            check_fits(parts, total)
            constant = max(0.0, total - warmup - cooldown - anneal)
        else:
            check_fits({**parts, "constant": constant}, total)
        const_ratio = 0.55 if self.const_lr is None and self.const_lr_ratio is None else self.const_lr_ratio
        min_ratio = 0.1 if self.min_lr is None and self.min_lr_ratio is None else self.min_lr_ratio
        return Infinite(warmup=warmup, cooldown=cooldown, constant=constant, anneal=anneal, max_lr=max_lr,
                        const_lr=_lr(self.const_lr, const_ratio, max_lr), min_lr=_lr(self.min_lr, min_ratio, max_lr),
                        cooldown_shape=self.cooldown_shape, alpha=self.alpha, anneal_shape=self.anneal_shape)


@dataclass(frozen=True, kw_only=True)
class WSDConfig(_StepsOrTokens):
    """Warmup, ``max_lr``, decay over the end of the stage: ``warmup`` default 0.01, ``decay`` default 0.2,
    ``min_lr_ratio`` default 0.1, ``decay_shape`` default ``1-sqrt``."""

    warmup: Optional[Length] = None
    decay: Optional[Length] = None
    min_lr: Optional[float] = None
    min_lr_ratio: Optional[float] = None
    decay_shape: DecayShape = "1-sqrt"
    phases: ClassVar[tuple[str, ...]] = ("warmup", "decay")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_shape("decay_shape", self.decay_shape, DECAY_SHAPES)
        self._check_lengths()
        _check_lr_pair("min_lr", self.min_lr, self.min_lr_ratio)
        self._check_fractions()

    def default_fraction(self, phase: str) -> Optional[float]:
        return {"warmup": 0.01, "decay": 0.2}[phase]

    def _build(self, lengths, total, max_lr, batch_size):
        ratio = 0.1 if self.min_lr is None and self.min_lr_ratio is None else self.min_lr_ratio
        return WSD(warmup=lengths["warmup"] or 0.0, total=total, decay=lengths["decay"] or 0.0, max_lr=max_lr,
                   min_lr=_lr(self.min_lr, ratio, max_lr), decay_shape=self.decay_shape)


@dataclass(frozen=True, kw_only=True)
class ConstantConfig(_StepsOrTokens):
    """Constant peak LR after an optional linear ``warmup`` (default none); needs the stage length only for a warmup
    given as a fraction."""

    warmup: Optional[Length] = None
    phases: ClassVar[tuple[str, ...]] = ("warmup",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_lengths()

    def default_fraction(self, phase: str) -> Optional[float]:
        return 0.0

    @property
    def needs_length(self) -> bool:
        return self.warmup is not None and self.warmup.fraction is not None

    def _build(self, lengths, total, max_lr, batch_size):
        check_fits({"warmup": lengths["warmup"] or 0.0}, total)
        return Constant(lr=max_lr, warmup=lengths["warmup"] or 0.0)


@dataclass(frozen=True, kw_only=True)
class LinearDecayConfig(_StepsOrTokens):
    """Linear warmup (default 0.01), then linear decay to ``min_lr`` (default 0: D2Z)."""

    warmup: Optional[Length] = None
    min_lr: Optional[float] = None
    min_lr_ratio: Optional[float] = None
    phases: ClassVar[tuple[str, ...]] = ("warmup",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_lengths()
        _check_lr_pair("min_lr", self.min_lr, self.min_lr_ratio)
        self._check_fractions()

    def default_fraction(self, phase: str) -> Optional[float]:
        return 0.01

    def _build(self, lengths, total, max_lr, batch_size):
        absolute = 0.0 if self.min_lr is None and self.min_lr_ratio is None else self.min_lr
        return LinearDecay(warmup=lengths["warmup"] or 0.0, total=total, max_lr=max_lr,
                           min_lr=_lr(absolute, self.min_lr_ratio, max_lr))


@dataclass(frozen=True, kw_only=True)
class PowerConfig(_Config):
    """The Power scheduler, always in tokens: ``warmup`` and ``decay`` default 0; ``a``, ``b`` the power law;
    ``batch_size`` (sequences per optimizer step) default ``tokens_per_step / seq_length`` of the stage facts;
    ``min_lr`` default 0; ``decay_shape`` default ``linear``. Needs the stage length only for a decay or a fractional
    warmup."""

    warmup: Optional[Length] = None
    decay: Optional[Length] = None
    a: float = 4.0
    b: float = -0.51
    batch_size: Optional[float] = None
    min_lr: Optional[float] = None
    min_lr_ratio: Optional[float] = None
    decay_shape: DecayShape = "linear"
    unit: ClassVar[str] = "tokens"
    phases: ClassVar[tuple[str, ...]] = ("warmup", "decay")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_shape("decay_shape", self.decay_shape, DECAY_SHAPES)
        self._check_lengths()
        _check_lr_pair("min_lr", self.min_lr, self.min_lr_ratio)
        optional_number("batch_size", self.batch_size, positive=True)
        self._check_fractions()
        Power(warmup=0.0, total=math.inf, decay=0.0, max_lr=1.0, a=float(self.a), b=float(self.b))  # checks a, b

    def default_fraction(self, phase: str) -> Optional[float]:
        return 0.0

    @property
    def needs_length(self) -> bool:
        return bool(self.decay and self.decay.nonzero) or (self.warmup is not None and self.warmup.fraction is not None)

    def _build(self, lengths, total, max_lr, batch_size):
        absolute = 0.0 if self.min_lr is None and self.min_lr_ratio is None else self.min_lr
        return Power(warmup=lengths["warmup"] or 0.0, total=total, decay=lengths["decay"] or 0.0, max_lr=max_lr,
                     a=float(self.a), b=float(self.b), batch_size=float(batch_size or 1.0),
                     min_lr=_lr(absolute, self.min_lr_ratio, max_lr), decay_shape=self.decay_shape)


ScheduleConfig = Union[WarmupCosineConfig, InfiniteConfig, WSDConfig, ConstantConfig, LinearDecayConfig, PowerConfig]


# --------------------------------------------------------------------------- #
# Resolution
# --------------------------------------------------------------------------- #
def _stage_total(config: ScheduleConfig, stage: StageFacts, tokens_per_step: Optional[float]) -> float:
    """The stage length in the config's unit: its ``total_*``, else the stage's."""
    unit = config.unit
    if config.total_tokens is not None:
        if unit == "tokens":
            return float(config.total_tokens)
        return float(config.total_tokens) / need_tokens_per_step(tokens_per_step, "total_tokens")
    if config.total_steps is None and stage.steps is None and stage.tokens is not None:
        if unit == "tokens":
            return float(stage.tokens)
        return float(stage.tokens) / need_tokens_per_step(tokens_per_step, "the stage length (given in tokens)")
    steps = config.total_steps if config.total_steps is not None else stage.steps
    if steps is None:
        raise ValueError("the stage length is unknown: give the stage's steps (a Trainer's max_steps) or tokens, or "
                         "total_steps= / total_tokens=")
    if unit == "steps":
        return float(steps)
    return float(steps) * need_tokens_per_step(tokens_per_step, "the stage length (unit='tokens')")


def _power_batch_size(config: ScheduleConfig, stage: StageFacts) -> Optional[float]:
    """The Power scheduler's batch size: the config's, else the stage's ``tokens_per_step / seq_length`` (the
    stage's, not the config's ``tokens_per_step``, which only converts lengths)."""
    if not isinstance(config, PowerConfig):
        return None
    if config.batch_size is not None:
        return float(config.batch_size)
    tokens_per_step = stage.tokens_per_step
    if not tokens_per_step or not stage.seq_length:
        raise ValueError("batch_size is needed (sequences per optimizer step): pass batch_size= or give the stage's "
                         "tokens_per_step and seq_length (pl_module.tokens_per_step and pl_module.seq_length under a "
                         "Trainer)")
    return float(tokens_per_step) / float(stage.seq_length)


def resolve(config: ScheduleConfig, stage: StageFacts) -> Schedule:
    """The schedule ``config`` asks for on ``stage``, every length in ``config.unit``.

    The stage length is the config's ``total_steps`` / ``total_tokens``, else the stage's ``steps`` / ``tokens``
    (``inf`` when unknown and the schedule does not need it: :attr:`needs_length`); lengths in the other unit are
    converted with the config's ``tokens_per_step``, else the stage's; the peak LR is the config's ``max_lr``, else the
    stage's ``peak_lr``.

    Raises:
        ValueError: one line, for a missing fact or phases that do not fit (e.g. ``warmup=50 is longer than the stage
            (total=10)``).
    """
    tokens_per_step = config.tokens_per_step if config.tokens_per_step is not None else stage.tokens_per_step
    batch_size = _power_batch_size(config, stage)
    try:
        total = _stage_total(config, stage, tokens_per_step)
    except ValueError:
        if config.needs_length:
            raise
        total = math.inf
    lengths = {}
    for phase in config.phases:
        length = config.length(phase)
        lengths[phase] = None if length is None else length.in_unit(phase, total=total, unit=config.unit,
                                                                    tokens_per_step=tokens_per_step)
    max_lr = config.max_lr if config.max_lr is not None else stage.peak_lr
    if max_lr is None:
        raise ValueError("the peak LR is unknown: give max_lr= or the stage's peak_lr (the optimizer's lr)")
    return config._build(lengths, total, float(max_lr), batch_size)
