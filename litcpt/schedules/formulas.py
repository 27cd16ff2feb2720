"""Learning-rate schedules for (continual) pretraining, as small pure dataclasses.

Every schedule maps the progress ``t`` inside one *stage* (optimizer steps or
tokens; all lengths are in the same unit as ``t``) to a learning rate. No
Lightning or torch imports: the callbacks in :mod:`litcpt.callbacks.lr_schedule`
and the plots in :mod:`litcpt.report.plotting` share these functions.

Schedules (notation of Ibrahim et al. 2024, arXiv:2403.08763):

* :class:`WarmupCosine` -- linear warmup then cosine decay to ``min_lr`` (Eq. 1-2).
* :class:`Infinite` -- warmup, cooldown to a constant ``const_lr``, constant
  phase, optional anneal to ``min_lr`` (Sec. 7, "infinite" schedules).
* :class:`WSD` -- warmup-stable-decay: constant ``max_lr``, then decay in the
  last ``decay`` units of the stage.
* :class:`Constant` -- constant LR with optional linear warmup.
* :class:`LinearDecay` -- linear warmup then linear decay to ``min_lr`` (0 by default: "D2Z",
  Bergsma et al. 2025, arXiv:2502.15938).
* :class:`Power` -- the Power scheduler (Shen et al. 2024, arXiv:2408.13359): warmup, then
  ``min(max_lr, batch_size * a * n^b)`` in tokens ``n``, optional decay at the end.

Each schedule is a frozen dataclass that validates its arguments once, at construction (a one-line
:class:`ValueError` naming the offending field), and is then a cheap callable ``schedule(t) -> lr``.

One module on purpose: each schedule is a formula, its validation and its frozen dataclass, all built on the same
few helpers (warmup, shapes, checks) and all read together by :func:`schedule_from_dict` for resume; the size is
the number of schedules, not a mix of jobs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Union

import numpy as np

__all__ = [
    "CooldownShape",
    "AnnealShape",
    "DecayShape",
    "COOLDOWN_SHAPES",
    "ANNEAL_SHAPES",
    "DECAY_SHAPES",
    "power_lr",
    "WarmupCosine",
    "Infinite",
    "WSD",
    "Constant",
    "LinearDecay",
    "Power",
    "Schedule",
    "schedule_from_dict",
    "fractions_to_lengths",
    "check_length",
    "check_fits",
    "check_lr_range",
    "check_shape",
]

CooldownShape = Literal["cosine", "inv_sqrt"]
AnnealShape = Literal["exponential", "linear", "cosine", "1-sqrt"]
DecayShape = Literal["linear", "1-sqrt", "cosine", "exponential"]

COOLDOWN_SHAPES: tuple[str, ...] = ("cosine", "inv_sqrt")
ANNEAL_SHAPES: tuple[str, ...] = ("exponential", "linear", "cosine", "1-sqrt")
DECAY_SHAPES: tuple[str, ...] = ("linear", "1-sqrt", "cosine", "exponential")

# Relative slack when checking that phase lengths fit in a stage (fractions
# such as 0.1 + 0.2 are not exact in binary floating point).
_FIT_RTOL = 1e-9


# --------------------------------------------------------------------------- #
# Validation helpers
# --------------------------------------------------------------------------- #
def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def check_length(name: str, value: float, *, allow_inf: bool = False) -> float:
    """Check that a phase length is a non-negative number and return it as float.

    Raises:
        ValueError: ``"<name>=<value> must be a non-negative finite number"``.
    """
    if not _is_number(value) or math.isnan(value) or value < 0 or (math.isinf(value) and not allow_inf):
        kind = "number (inf allowed)" if allow_inf else "finite number"
        raise ValueError(f"{name}={value!r} must be a non-negative {kind}")
    return float(value)


def check_fits(parts: Mapping[str, float], total: float, *, total_name: str = "total") -> None:
    """Check that phases ``parts`` (name -> length) fit into a stage of length ``total``.

    Raises:
        ValueError: e.g. ``"warmup=120 + decay=900 = 1020 is longer than the stage (total=1000)"``.
    """
    s = float(sum(parts.values()))
    if s > total * (1 + _FIT_RTOL) + 1e-12:
        lhs = " + ".join(f"{k}={v:g}" for k, v in parts.items())
        what = lhs if len(parts) == 1 else f"{lhs} = {s:g}"
        raise ValueError(f"{what} is longer than the stage ({total_name}={total:g})")


def check_lr_range(max_lr: float, min_lr: float, const_lr: float | None = None) -> None:
    """Check ``0 <= min_lr <= [const_lr <=] max_lr`` and ``max_lr > 0``.

    Raises:
        ValueError: naming the offending field(s), e.g. ``"min_lr=0.1 must be <= max_lr=0.01"``.
    """
    for name, v in (("max_lr", max_lr), ("min_lr", min_lr), ("const_lr", const_lr)):
        if v is None:
            continue
        if not _is_number(v) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name}={v!r} must be a non-negative finite number")
    if max_lr <= 0:
        raise ValueError(f"max_lr={max_lr!r} must be > 0")
    if min_lr > max_lr:
        raise ValueError(f"min_lr={min_lr!r} must be <= max_lr={max_lr!r}")
    if const_lr is not None and not (min_lr <= const_lr <= max_lr):
        raise ValueError(f"const_lr={const_lr!r} must lie in [min_lr, max_lr] = [{min_lr!r}, {max_lr!r}]")


def check_shape(name: str, value: str, allowed: Iterable[str]) -> None:
    """Check that ``value`` is one of ``allowed``.

    Raises:
        ValueError: ``"<name>='foo' must be one of 'a', 'b'"``.
    """
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} must be one of {', '.join(map(repr, allowed))}")


def _check_t(t: float) -> float:
    if not _is_number(t) or math.isnan(t) or t < 0:
        raise ValueError(f"t={t!r} must be a non-negative number")
    return float(t)


def fractions_to_lengths(total: float, /, **fractions: float | None) -> dict[str, float]:
    """Turn fractions of a stage into lengths: ``{name: fraction * total}``.

    ``None`` entries are passed through as ``None`` (unset). Every fraction must lie
    in ``[0, 1]`` and together they must not exceed 1.

    Example:
        >>> fractions_to_lengths(1000, warmup=0.01, anneal=0.15)
        {'warmup': 10.0, 'anneal': 150.0}

    Raises:
        ValueError: for a negative ``total``, a fraction outside ``[0, 1]`` or
            fractions whose sum exceeds 1.
    """
    total = check_length("total", total)
    out: dict[str, float] = {}
    given: dict[str, float] = {}
    for name, f in fractions.items():
        if f is None:
            out[name] = None  # type: ignore[assignment]
            continue
        if not _is_number(f) or math.isnan(f) or not (0.0 <= f <= 1.0):
            raise ValueError(f"{name}={f!r} must be a fraction of the stage in [0, 1]")
        given[name] = float(f)
        out[name] = float(f) * total
    if sum(given.values()) > 1.0 + _FIT_RTOL:
        lhs = " + ".join(f"{k}={v:g}" for k, v in given.items())
        raise ValueError(f"fractions {lhs} = {sum(given.values()):g} exceed 1 (the whole stage)")
    return out


# --------------------------------------------------------------------------- #
# Shape primitives (pure, unchecked): p in [0, 1] -> value
# --------------------------------------------------------------------------- #
def _decay(p: float, start: float, end: float, shape: str) -> float:
    """Interpolate from ``start`` (p=0) to ``end`` (p=1) with a named shape."""
    if shape == "linear":
        return end + (start - end) * (1.0 - p)
    if shape == "1-sqrt":
        return end + (start - end) * (1.0 - math.sqrt(p))
    if shape == "cosine":
        return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * p))
    if shape == "exponential":
        # geometric interpolation start * (end/start)^p; requires end > 0 (checked by callers)
        if p >= 1.0:
            return end
        return start * (end / start) ** p
    raise AssertionError(shape)  # pragma: no cover - validated before


def _inv_sqrt_cooldown(x: float, start: float, end: float, alpha: float) -> float:
    """``start + (end - start) * h(x) / h(1)`` with ``h(x) = 1/sqrt(1 + alpha x) - 1``."""
    if x >= 1.0:
        return end

    def h(u: float) -> float:
        return 1.0 / math.sqrt(1.0 + alpha * u) - 1.0

    return start + (end - start) * h(x) / h(1.0)


def _warmup(t: float, warmup: float, max_lr: float) -> float:
    return max_lr * (t / warmup)


# --------------------------------------------------------------------------- #
# Unchecked cores
# --------------------------------------------------------------------------- #
def _warmup_cosine(t: float, warmup: float, total: float, max_lr: float, min_lr: float) -> float:
    if t <= warmup and warmup > 0:
        return _warmup(t, warmup, max_lr)
    if t >= total:
        return min_lr
    p = (t - warmup) / (total - warmup)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * p))


def _infinite(
    t: float,
    warmup: float,
    cooldown: float,
    constant: float,
    anneal: float,
    max_lr: float,
    const_lr: float,
    min_lr: float,
    cooldown_shape: str,
    alpha: float,
    anneal_shape: str,
) -> float:
    if t <= warmup and warmup > 0:
        return _warmup(t, warmup, max_lr)
    t -= warmup
    if t < cooldown:
        x = t / cooldown
        if cooldown_shape == "cosine":
            return const_lr + 0.5 * (max_lr - const_lr) * (1.0 + math.cos(math.pi * x))
        return _inv_sqrt_cooldown(x, max_lr, const_lr, alpha)
    t -= cooldown
    if t <= constant:
        return const_lr
    t -= constant
    if t < anneal:
        return _decay(t / anneal, const_lr, min_lr, anneal_shape)
    return min_lr


def _wsd(t: float, warmup: float, total: float, decay: float, max_lr: float, min_lr: float, decay_shape: str) -> float:
    if t <= warmup and warmup > 0:
        return _warmup(t, warmup, max_lr)
    if t >= total:
        return min_lr
    start = total - decay
    if t <= start:
        return max_lr
    return _decay((t - start) / decay, max_lr, min_lr, decay_shape)


def _constant(t: float, lr: float, warmup: float) -> float:
    if t < warmup:
        return _warmup(t, warmup, lr)
    return lr


# --------------------------------------------------------------------------- #
# Schedule objects
# --------------------------------------------------------------------------- #
class _ScheduleBase:
    """Mixin for the frozen schedule dataclasses."""

    kind: ClassVar[str]

    def __call__(self, t: float) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def length(self) -> float:  # pragma: no cover - overridden
        """Length of the stage the schedule is defined on (``inf`` if open-ended)."""
        raise NotImplementedError

    def sample(self, ts: Iterable[float]) -> np.ndarray:
        """Evaluate the schedule at every point of ``ts``; returns a float64 array."""
        ts = np.asarray(list(ts) if not isinstance(ts, np.ndarray) else ts, dtype=np.float64)
        return np.fromiter((self(float(t)) for t in ts.ravel()), dtype=np.float64, count=ts.size).reshape(ts.shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict; inverse of :func:`schedule_from_dict`."""
        return {"kind": self.kind, **dataclasses.asdict(self)}  # type: ignore[call-overload]


@dataclass(frozen=True)
class WarmupCosine(_ScheduleBase):
    r"""Linear warmup to ``max_lr`` then cosine decay to ``min_lr`` at ``total`` (paper Eq. 1-2).

    .. math::
        \eta_t = \eta_{max}\,t/T_{warmup} \quad (t \le T_{warmup})

        \eta_t = \eta_{min} + \tfrac12(\eta_{max}-\eta_{min})
                 \bigl(1+\cos(\pi\,\tfrac{t-T_{warmup}}{T_{total}-T_{warmup}})\bigr)
                 \quad (T_{warmup} < t \le T_{total})

    and ``min_lr`` for ``t > total``. Paper defaults: ``warmup = 0.01 * total``, ``min_lr = 0.1 * max_lr``.
    """

    warmup: float
    total: float
    max_lr: float
    min_lr: float
    kind: ClassVar[str] = "warmup_cosine"

    def __post_init__(self) -> None:
        check_length("warmup", self.warmup)
        check_length("total", self.total)
        check_fits({"warmup": self.warmup}, self.total)
        check_lr_range(self.max_lr, self.min_lr)

    def __call__(self, t: float) -> float:
        return _warmup_cosine(_check_t(t), self.warmup, self.total, self.max_lr, self.min_lr)

    @property
    def length(self) -> float:
        return float(self.total)


@dataclass(frozen=True)
class Infinite(_ScheduleBase):
    """Infinite schedule: warmup -> cooldown -> constant -> anneal (paper Sec. 7).

    Phases, in order (each length may be 0; ``constant`` may be ``inf``: never anneal):

    1. warmup: ``max_lr * t / warmup``.
    2. cooldown from ``max_lr`` to ``const_lr``; ``x`` = progress through the cooldown:
       ``cosine``: ``const_lr + 1/2 (max_lr - const_lr)(1 + cos(pi x))``;
       ``inv_sqrt``: ``max_lr + (const_lr - max_lr) h(x)/h(1)``, ``h(x) = 1/sqrt(1 + alpha x) - 1``.
    3. constant ``const_lr`` for ``constant`` units.
    4. anneal from ``const_lr`` to ``min_lr``; ``s`` = progress through the anneal:
       ``exponential``: ``const_lr (min_lr/const_lr)^s``; ``linear``: ``const_lr + (min_lr - const_lr) s``;
       ``cosine``: ``min_lr + 1/2 (const_lr - min_lr)(1 + cos(pi s))``;
       ``1-sqrt``: ``min_lr + (const_lr - min_lr)(1 - sqrt(s))``.
    5. ``min_lr`` afterwards.

    A later stage that continues at the constant LR is ``warmup=0, cooldown=0``.
    """

    warmup: float
    cooldown: float
    constant: float
    anneal: float
    max_lr: float
    const_lr: float
    min_lr: float
    cooldown_shape: str = "cosine"
    alpha: float = 10.0
    anneal_shape: str = "exponential"
    kind: ClassVar[str] = "infinite"

    def __post_init__(self) -> None:
        check_length("warmup", self.warmup)
        check_length("cooldown", self.cooldown)
        check_length("constant", self.constant, allow_inf=True)
        check_length("anneal", self.anneal)
        check_lr_range(self.max_lr, self.min_lr, self.const_lr)
        check_shape("cooldown_shape", self.cooldown_shape, COOLDOWN_SHAPES)
        check_shape("anneal_shape", self.anneal_shape, ANNEAL_SHAPES)
        if self.cooldown_shape == "inv_sqrt" and (
            not _is_number(self.alpha) or not math.isfinite(self.alpha) or self.alpha <= 0
        ):
            raise ValueError(f"alpha={self.alpha!r} must be a positive finite number for cooldown_shape='inv_sqrt'")
        if self.anneal_shape == "exponential" and self.anneal > 0 and self.min_lr <= 0:
            raise ValueError(
                f"min_lr={self.min_lr!r} must be > 0 for anneal_shape='exponential' (const_lr*(min_lr/const_lr)^s)"
            )

    def __call__(self, t: float) -> float:
        return _infinite(
            _check_t(t),
            self.warmup,
            self.cooldown,
            self.constant,
            self.anneal,
            self.max_lr,
            self.const_lr,
            self.min_lr,
            self.cooldown_shape,
            self.alpha,
            self.anneal_shape,
        )

    @property
    def length(self) -> float:
        return float(self.warmup + self.cooldown + self.constant + self.anneal)


@dataclass(frozen=True)
class WSD(_ScheduleBase):
    """Warmup-stable-decay: warmup, ``max_lr`` plateau, decay in the last ``decay`` units.

    Linear warmup ``max_lr * t / warmup``, then ``max_lr`` until ``total - decay``, then, with
    ``p = (t - (total - decay)) / decay``:

    * ``linear``: ``min_lr + (max_lr - min_lr)(1 - p)``
    * ``1-sqrt``: ``min_lr + (max_lr - min_lr)(1 - sqrt(p))``
    * ``cosine``: ``min_lr + 1/2 (max_lr - min_lr)(1 + cos(pi p))``
    * ``exponential``: ``max_lr (min_lr/max_lr)^p = max_lr 2^{-(t - t_d)/tau}`` -- the LR halves every
      ``tau = decay * ln 2 / ln(max_lr/min_lr)`` units (half-life form), reaching exactly ``min_lr`` at ``total``;
      requires ``min_lr > 0``.

    ``min_lr`` for ``t >= total``. The first three shapes coincide with ``transformers.get_wsd_schedule``
    (``decay_type``) with ``min_lr_ratio = min_lr/max_lr`` after the warmup.
    """

    warmup: float
    total: float
    decay: float
    max_lr: float
    min_lr: float
    decay_shape: str = "1-sqrt"
    kind: ClassVar[str] = "wsd"

    def __post_init__(self) -> None:
        check_length("warmup", self.warmup)
        check_length("total", self.total)
        check_length("decay", self.decay)
        check_fits({"warmup": self.warmup, "decay": self.decay}, self.total)
        check_lr_range(self.max_lr, self.min_lr)
        check_shape("decay_shape", self.decay_shape, DECAY_SHAPES)
        if self.decay_shape == "exponential" and self.decay > 0 and self.min_lr <= 0:
            raise ValueError(
                f"min_lr={self.min_lr!r} must be > 0 for decay_shape='exponential' (max_lr*(min_lr/max_lr)^p)"
            )

    def __call__(self, t: float) -> float:
        return _wsd(_check_t(t), self.warmup, self.total, self.decay, self.max_lr, self.min_lr, self.decay_shape)

    @property
    def length(self) -> float:
        return float(self.total)


@dataclass(frozen=True)
class Constant(_ScheduleBase):
    """Constant ``lr`` after an optional linear warmup from 0 over ``warmup`` units."""

    lr: float
    warmup: float = 0.0
    kind: ClassVar[str] = "constant"

    def __post_init__(self) -> None:
        check_length("warmup", self.warmup)
        if not _is_number(self.lr) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr={self.lr!r} must be a positive finite number")

    def __call__(self, t: float) -> float:
        return _constant(_check_t(t), self.lr, self.warmup)

    @property
    def length(self) -> float:
        return math.inf

    @property
    def max_lr(self) -> float:
        """Peak learning rate (``lr``), for symmetry with the other schedules."""
        return self.lr


@dataclass(frozen=True)
class LinearDecay(_ScheduleBase):
    """Linear warmup to ``max_lr``, then linear decay to ``min_lr`` at ``total`` (``min_lr=0``: D2Z, Bergsma et al.
    2025, arXiv:2502.15938): ``max_lr t / warmup`` up to ``warmup``, then
    ``min_lr + (max_lr - min_lr)(1 - (t - warmup)/(total - warmup))``, and ``min_lr`` for ``t > total``.
    """

    warmup: float
    total: float
    max_lr: float
    min_lr: float = 0.0
    kind: ClassVar[str] = "linear_decay"

    def __post_init__(self) -> None:
        check_length("warmup", self.warmup)
        check_length("total", self.total)
        check_fits({"warmup": self.warmup}, self.total)
        check_lr_range(self.max_lr, self.min_lr)

    def __call__(self, t: float) -> float:
        t = _check_t(t)
        if t <= self.warmup and self.warmup > 0:
            return _warmup(t, self.warmup, self.max_lr)
        if t >= self.total:
            return self.min_lr
        return _decay((t - self.warmup) / (self.total - self.warmup), self.max_lr, self.min_lr, "linear")

    @property
    def length(self) -> float:
        return float(self.total)


def power_lr(n: float, *, a: float, b: float, batch_size: float, max_lr: float) -> float:
    """The Power scheduler's LR after ``n`` tokens: ``min(max_lr, batch_size * a * n^b)`` (``max_lr`` at ``n=0``)."""
    if n <= 0:
        return float(max_lr)
    return min(float(max_lr), batch_size * a * n ** b)


@dataclass(frozen=True)
class Power(_ScheduleBase):
    r"""The Power scheduler (Shen et al. 2024, arXiv:2408.13359), ``t`` = tokens trained.

    With :math:`\eta_{pow}(n) = \min(\eta_{max}, \beta a n^b)` (``beta = batch_size`` in sequences, paper defaults
    ``a = 4``, ``b = -0.51``):

    * warmup (``t < warmup``): :math:`\eta_{pow}(T_{warmup})\,t/T_{warmup}`;
    * then :math:`\eta_{pow}(t)` -- no dependence on the run's length;
    * decay (last ``decay`` tokens of a finite ``total``): from :math:`\eta_{pow}(T_{total}-T_{decay})` to ``min_lr``
      with ``decay_shape`` (as :class:`WSD`); ``min_lr`` for ``t >= total``.

    ``total`` may be ``inf`` (no decay: the schedule does not need to know the run's length).
    """

    warmup: float
    total: float
    decay: float
    max_lr: float
    a: float = 4.0
    b: float = -0.51
    batch_size: float = 1.0
    min_lr: float = 0.0
    decay_shape: str = "linear"
    kind: ClassVar[str] = "power"

    def __post_init__(self) -> None:
        check_length("warmup", self.warmup)
        check_length("total", self.total, allow_inf=True)
        check_length("decay", self.decay)
        if math.isinf(self.total) and self.decay > 0:
            raise ValueError(f"decay={self.decay!r} needs a finite total (the decay ends the stage)")
        check_fits({"warmup": self.warmup, "decay": self.decay}, self.total)
        check_lr_range(self.max_lr, self.min_lr)
        check_shape("decay_shape", self.decay_shape, DECAY_SHAPES)
        for name in ("a", "batch_size"):
            v = getattr(self, name)
            if not _is_number(v) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name}={v!r} must be a positive finite number")
        if not _is_number(self.b) or not math.isfinite(self.b) or self.b >= 0:
            raise ValueError(f"b={self.b!r} must be a negative number (the LR decays as n^b)")
        if self.decay_shape == "exponential" and self.decay > 0 and self.min_lr <= 0:
            raise ValueError(f"min_lr={self.min_lr!r} must be > 0 for decay_shape='exponential'")

    def _power(self, n: float) -> float:
        return power_lr(n, a=self.a, b=self.b, batch_size=self.batch_size, max_lr=self.max_lr)

    def __call__(self, t: float) -> float:
        t = _check_t(t)
        if t < self.warmup:
            return self._power(self.warmup) * t / self.warmup
        start = self.total - self.decay
        if self.decay <= 0 or t <= start:
            return self._power(t)
        if t >= self.total:
            return self.min_lr
        return _decay((t - start) / self.decay, self._power(start), self.min_lr, self.decay_shape)

    @property
    def length(self) -> float:
        return float(self.total)


Schedule = Union[WarmupCosine, Infinite, WSD, Constant, LinearDecay, Power]
_KINDS: dict[str, type] = {c.kind: c for c in (WarmupCosine, Infinite, WSD, Constant, LinearDecay, Power)}


def schedule_from_dict(d: Mapping[str, Any]) -> Schedule:
    """Rebuild a schedule object from :meth:`to_dict` output (validates again)."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"kind={kind!r} must be one of {', '.join(map(repr, _KINDS))}")
    return _KINDS[kind](**d)
