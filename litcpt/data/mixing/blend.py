"""The greedy blend rule: which source gives sample ``p`` of a weighted mixture (:class:`GreedyBlend`,
:func:`greedy_blend`, :class:`Mixer`).

One cohesive piece over 400 lines: the rule, its exact fractions, and the jump/step machinery that computes the counts
at any position in O(sources) per position without replaying the stream all depend on each other's invariants.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["GreedyBlend", "Mixer", "greedy_blend"]

def _as_fraction(value: Any, what: str) -> Fraction:
    """Exact rational for a weight: floats are read through their shortest repr (0.05 -> 1/20)."""
    if isinstance(value, Fraction):
        result = value
    elif isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    elif isinstance(value, (int, np.integer)):
        result = Fraction(int(value))
    else:
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be a number, got {value!r}") from None
        if not math.isfinite(as_float):
            raise ValueError(f"{what} must be finite, got {value!r}")
        result = Fraction(repr(as_float))
    if result < 0:
        raise ValueError(f"{what} must be >= 0, got {value!r}")
    return result


_JUMP_CHUNK = 1 << 18  # positions per vectorised jump of the n >= 3 rule
_STEP_MAX = 256  # gaps up to this many positions are stepped, longer ones jumped
_STATES_MAX = 128  # (position, counts) states a blend remembers
_I64_SAFE = 1 << 62


class GreedyBlend:
    """Deterministic blend of ``K`` sources with exact shares (lazy form of :func:`greedy_blend`).

    ``w`` are the normalised weights, ``count_k`` how often source ``k`` was chosen before sample
    ``i``, and ``n`` the number of sources with ``w_k > 0`` (the others are never chosen). All
    arithmetic is exact (rationals), so the order never depends on rounding. After any prefix of
    length ``i``, ``|count_k - w_k * i| <= bound < 1`` with ``bound = 1 - 1/(2n - 2)`` (1/2 for two
    sources, 3/4 for three, ... see :attr:`bound`). Two rules (:attr:`rule`):

    * ``n <= 2``, ``"largest-deficit"``: sample ``i`` comes from the source maximising
      ``w_k * (i + 1) - count_k`` (ties: lowest ``k``). Closed form ``count(i) = ceil(w * i - 1/2)``
      for the second source, so any position is O(1).
    * ``n >= 3``, ``"tijdeman"`` (Tijdeman 1980, the chairman assignment problem): with
      ``delta = 1/(2n - 2)`` and time ``t = i + 1``, among the sources with
      ``w_k * t - count_k >= delta`` pick the one with the earliest deadline
      ``(count_k + 1 - delta) / w_k`` (ties: lowest ``k``). For ``n = 2`` this is the same order as
      the largest-deficit rule; for ``n >= 3`` the largest-deficit rule can fall more than one
      sample behind (random weights: over 1 with 6 sources, up to ~1.25 with 10).

    The ``n >= 3`` order has no closed form. It is periodic with period :attr:`denominator` (where
    the counts are exactly ``w * denominator``), and :meth:`counts_at` computes the counts at
    ``position mod denominator`` by vectorised jumps (:meth:`_jump`, ``O(2**18)`` numpy work per
    ``2**18`` positions: about 10-40 million positions per second) from the nearest of a bounded
    cache of remembered ``(position, counts)`` states; gaps of up to 256 positions are stepped
    (a few microseconds per position). So a first query at position ``p`` costs ``O(p mod
    denominator)`` (resume at 1e7: well under a second), nearby later queries are cheap.
    """

    _jump_chunk = _JUMP_CHUNK
    _step_max = _STEP_MAX

    def __init__(self, weights: Sequence[float | int | Fraction]) -> None:
        if len(weights) == 0:
            raise ValueError("greedy blend: weights must not be empty")
        fractions = [_as_fraction(w, f"greedy blend: weights[{k}]") for k, w in enumerate(weights)]
        total = sum(fractions)
        if total <= 0:
            raise ValueError(f"greedy blend: weights must have a positive sum, got {list(weights)}")
        self.weights: tuple[Fraction, ...] = tuple(f / total for f in fractions)
        self.denominator = math.lcm(*(w.denominator for w in self.weights))
        self.numerators: tuple[int, ...] = tuple(
            w.numerator * (self.denominator // w.denominator) for w in self.weights
        )
        self._active: tuple[int, ...] = tuple(k for k, a in enumerate(self.numerators) if a > 0)
        self._m = 2 * len(self._active) - 2  # Tijdeman's delta = 1 / m
        self._states: OrderedDict[int, tuple[int, ...]] = OrderedDict()

    @property
    def num_sources(self) -> int:
        return len(self.weights)

    @property
    def rule(self) -> str:
        """``"largest-deficit"`` (at most two sources with positive weight) or ``"tijdeman"``."""
        return "tijdeman" if len(self._active) >= 3 else "largest-deficit"

    @property
    def bound(self) -> Fraction:
        """Proven ``max |count_k - w_k * i|`` over all sources and prefixes: ``1 - 1/(2n - 2)``."""
        n = len(self._active)
        return Fraction(0) if n <= 1 else 1 - Fraction(1, 2 * n - 2)

    # -- one step

    def _step(self, position: int, counts: list[int]) -> int:
        """Source chosen at ``position`` given ``counts`` before it (counts are not modified)."""
        if self._m >= 4:
            return self._tijdeman_step(position + 1, counts)
        nxt, den = position + 1, self.denominator
        best, best_score = 0, None
        for k, a in enumerate(self.numerators):
            score = a * nxt - den * counts[k]
            if best_score is None or score > best_score:
                best, best_score = k, score
        return best

    def _tijdeman_step(self, t: int, counts: list[int]) -> int:
        """Source chosen at time ``t`` (sample ``t - 1``): eligible = ``m * (w_k t - c_k) >= 1``,
        deadline ``(c_k + 1 - 1/m) / w_k``, compared as ``(m c_k + m - 1) / a_k``."""
        den, m = self.denominator, self._m
        best, best_num, best_a = -1, 0, 1
        for k in self._active:
            a, c = self.numerators[k], counts[k]
            if m * (a * t - den * c) >= den:
                num = m * c + m - 1
                if best < 0 or num * best_a < best_num * a:
                    best, best_num, best_a = k, num, a
        return best

    # -- counts at a position

    def counts_at(self, position: int) -> list[int]:
        """How many of the first ``position`` samples each source got."""
        if position < 0:
            raise ValueError(f"greedy blend: position must be >= 0, got {position}")
        position = int(position)
        counts = [0] * self.num_sources
        if len(self._active) == 1:
            counts[self._active[0]] = position
            return counts
        if len(self._active) == 2:
            k0, k1 = self._active
            a1, den = self.numerators[k1], self.denominator
            c1 = max(-((den - 2 * a1 * position) // (2 * den)), 0)  # ceil(w1 * p - 1/2)
            counts[k0], counts[k1] = position - c1, c1
            return counts
        q, r = divmod(position, self.denominator)  # the order is periodic
        counts = self._tijdeman_counts(r)
        if q:
            counts = [c + q * a for c, a in zip(counts, self.numerators)]
        return counts

    def _remember(self, position: int, counts: Sequence[int]) -> None:
        q, r = divmod(position, self.denominator)
        if r == 0:
            return
        self._states[r] = tuple(c - q * a for c, a in zip(counts, self.numerators))
        self._states.move_to_end(r)
        while len(self._states) > _STATES_MAX:
            self._states.popitem(last=False)

    def _tijdeman_counts(self, position: int) -> list[int]:
        """Counts at ``0 <= position < denominator`` from the nearest remembered state before it."""
        start, counts = 0, [0] * self.num_sources
        for pos, state in self._states.items():
            if start < pos <= position:
                start, counts = pos, list(state)
        if position - start <= self._step_max:
            for t in range(start + 1, position + 1):
                counts[self._tijdeman_step(t, counts)] += 1
        else:
            chunk = self._jump_chunk
            t = start
            while t < position:
                t1 = min(position, (t // chunk + 1) * chunk)
                counts = self._jump(t, counts, t1)
                t = t1
                if t % chunk == 0:
                    self._remember(t, counts)
        self._remember(position, counts)
        return counts

    def _releases(self, a: int, j0: int, j1: int) -> np.ndarray:
        """First slot (time) at which picks ``j0 .. j1 - 1`` of a source with numerator ``a`` are
        eligible: ``ceil((j + delta) / w) = ceil(D (m j + 1) / (m a))``, exact, as int64."""
        den, m = self.denominator, self._m
        big_m = m * a
        q0, r0 = divmod(den * (m * j0 + 1) + big_m - 1, big_m)
        q, rem = divmod(m * den, big_m)
        n = j1 - j0
        # release_i = q0 + q * i + floor((r0 + rem * i) / big_m), with 0 <= r0, rem < big_m
        if big_m * (n + 1) < _I64_SAFE:
            i = np.arange(n, dtype=np.int64)
            return q0 + q * i + (r0 + rem * i) // big_m
        if big_m < _I64_SAFE // 2:  # float estimate of the floor, corrected exactly (mod 2**64)
            i = np.arange(n, dtype=np.int64)
            g = np.floor(r0 / big_m + i * (rem / big_m)).astype(np.int64)  # off by at most one
            iu, gu = i.astype(np.uint64), g.astype(np.uint64)
            residue = (np.uint64(r0) + np.uint64(rem) * iu - gu * np.uint64(big_m)).view(np.int64)
            g += (residue >= big_m).astype(np.int64) - (residue < 0).astype(np.int64)
            return q0 + q * i + g
        i = np.arange(n, dtype=object)  # huge denominators: Python integers
        return np.asarray(q0 + q * i + (r0 + rem * i) // big_m, dtype=np.int64)

    def _jump(self, t0: int, c0: Sequence[int], t1: int) -> list[int]:
        """Counts after ``t1`` samples from the counts ``c0`` after ``t0 < t1`` (rule ``"tijdeman"``).

        Pick ``j = 0, 1, ...`` of source ``k`` is a unit job, eligible from time
        ``(j + delta) / w_k`` on, with deadline ``(j + 1 - delta) / w_k``; the rule is
        earliest-deadline-first on these jobs, and every job with deadline ``< t`` is done by time
        ``t`` (that is the lower half of the bound). So at ``t1`` source ``k`` has ``L_k`` (its jobs
        with deadline ``< t1``) or ``L_k + 1`` picks, the latter only if job ``L_k`` is eligible by
        ``t1`` ("open"), and ``t1 - sum(L_k)`` open jobs are done. Which: with unit jobs, EDF
        equals placing the jobs in deadline order, each in the earliest free slot at or after its
        release, so open job ``J`` is done iff the jobs placed before it (deadline ``< t1``, plus
        the open jobs earlier in deadline order) that are not done at ``t0`` leave a slot free in
        ``[release_J, t1]``. Free slots of a set of jobs are the record lows of
        ``cumsum(arrivals - 1)`` (a Lindley queue): one numpy pass over ``t1 - t0`` slots.
        """
        den, m = self.denominator, self._m
        width = t1 - t0
        counts = list(c0)
        fixed = 0
        arrivals: list[np.ndarray] = []
        opens: list[tuple[Fraction, int, int]] = []  # (deadline order, source, first slot index)
        for k in self._active:
            a, c = self.numerators[k], c0[k]
            forced = max(0, -(-(m * a * t1 + den) // (m * den)) - 1)  # jobs with deadline < t1
            if c > forced:  # its open job was already done before t0
                fixed += c
                continue
            if forced > c:
                arrivals.append(np.maximum(self._releases(a, c, forced) - (t0 + 1), 0))
            counts[k] = forced
            fixed += forced
            if den * (m * forced + 1) <= m * a * t1:  # job `forced` eligible by t1: open
                first = -(-(den * (m * forced + 1)) // (m * a))
                opens.append((Fraction(m * forced + m - 1, a), k, max(first - t0 - 1, 0)))
        extra = t1 - fixed  # open jobs done in (t0, t1]
        if not 0 <= extra <= len(opens):
            raise RuntimeError(f"greedy blend: inconsistent jump {t0} -> {t1} ({extra} of {len(opens)} open jobs)")
        if extra == 0:
            return counts
        if extra == len(opens):
            for _, k, _ in opens:
                counts[k] += 1
            return counts
        hist = np.bincount(np.concatenate(arrivals), minlength=width) if arrivals else np.zeros(width, np.int64)
        if hist.size != width:
            raise RuntimeError(f"greedy blend: job released after {t1} in jump {t0} -> {t1}")
        level = np.cumsum(hist) - np.arange(1, width + 1)  # arrivals - served, slot by slot
        opens.sort()
        lo = min(first for _, _, first in opens)
        floor = min(0, int(level[:lo].min())) if lo else 0
        tail = level[lo:].copy()
        done = 0
        for i, (_, k, first) in enumerate(opens):
            need = extra - done
            if need == 0:
                break
            if need == len(opens) - i:
                for _, k2, _ in opens[i:]:
                    counts[k2] += 1
                done = extra
                break
            s = first - lo
            low_before = np.empty_like(tail)  # min(0, level before this slot)
            low_before[0] = floor
            np.minimum(np.minimum.accumulate(tail[:-1]), floor, out=low_before[1:])
            if np.any(tail[s:] < low_before[s:]):  # a free slot in [release, t1]
                counts[k] += 1
                done += 1
            tail[s:] += 1  # J itself joins the jobs placed before the next open one
        if done != extra:
            raise RuntimeError(f"greedy blend: inconsistent jump {t0} -> {t1} ({done} != {extra})")
        return counts

    # -- orders

    def take(self, start: int, n: int) -> np.ndarray:
        """Sources of samples ``start .. start + n - 1`` (int64 array)."""
        counts = self.counts_at(start)
        out = np.empty(n, dtype=np.int64)
        step = self._step
        for i in range(n):
            k = step(start + i, counts)
            counts[k] += 1
            out[i] = k
        if self._m >= 4 and n:
            self._remember(start + n, counts)
        return out

    def locate(self, positions: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each position: ``(source, source-local index)``; close positions are cheapest for
        ``n >= 3`` (gaps of up to 256 are stepped, longer ones jumped)."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        sources = np.empty(len(positions), dtype=np.int64)
        local = np.empty(len(positions), dtype=np.int64)
        if positions.size and int(positions.min()) < 0:
            raise ValueError(f"greedy blend: position must be >= 0, got {int(positions.min())}")
        if len(self._active) == 1:
            sources[:] = self._active[0]
            local[:] = positions
            return sources, local
        if len(self._active) == 2:
            k0, k1 = self._active
            a1, den = self.numerators[k1], self.denominator
            if positions.size == 0:
                return sources, local
            if 2 * a1 * (int(positions.max()) + 1) + den < 2**62:  # int64-safe vectorised closed form
                c_here = np.maximum(-((den - 2 * a1 * positions) // (2 * den)), 0)
                c_next = np.maximum(-((den - 2 * a1 * (positions + 1)) // (2 * den)), 0)
                is_one = c_next > c_here
                sources[:] = np.where(is_one, k1, k0)
                local[:] = np.where(is_one, c_here, positions - c_here)
                return sources, local
            for i, p in enumerate(positions.tolist()):
                counts = self.counts_at(p)
                k = self._step(p, counts)
                sources[i], local[i] = k, counts[k]
            return sources, local
        pos, counts = -1, [0] * self.num_sources
        for i in np.argsort(positions, kind="stable").tolist():
            p = int(positions[i])
            if pos < 0 or p - pos > self._step_max:
                pos, counts = p, self.counts_at(p)
            while pos < p:
                counts[self._tijdeman_step(pos + 1, counts)] += 1
                pos += 1
            k = self._tijdeman_step(p + 1, counts)
            sources[i], local[i] = k, counts[k]
        if pos >= 0:
            self._remember(pos, counts)
        return sources, local


def greedy_blend(weights: Sequence[float], n: int) -> np.ndarray:
    """Deterministic blend order of length ``n`` (int64 source ids) with exact shares.

    Weights are normalised; for every prefix of length ``i``, source ``k`` has been picked
    ``w_k * i`` times up to less than one: ``|count_k - w_k * i| <= 1 - 1/(2m - 2)`` with ``m``
    the number of sources with positive weight (1/2 for two). Up to two sources: sample ``i``
    goes to the source whose count is furthest below its target share, ``w_k * (i + 1) -
    count_k`` (ties: lowest index); three or more: Tijdeman's earliest-deadline rule (see
    :class:`GreedyBlend`). Use :class:`GreedyBlend` for positions beyond what fits in memory.
    """
    if n < 0:
        raise ValueError(f"greedy_blend: n must be >= 0, got {n}")
    return GreedyBlend(weights).take(0, n)


class Mixer:
    """Two-level greedy blend of one *new* source (id 0) and ``K`` replay sources (ids 1..K).

    Level 1 decides new vs. replay with weights ``(1 - fraction, fraction)``, so after any prefix
    of ``N`` samples the number of replay samples is within one of ``fraction * N``. Level 2
    splits the replay samples between replay sources with ``replay_weights``.
    """

    def __init__(self, fraction: float | Fraction = 0.0, replay_weights: Sequence[float] | None = None) -> None:
        f = _as_fraction(fraction, "fraction")
        if f >= 1:
            raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
        self.fraction = f
        self.num_replay = len(replay_weights) if replay_weights else 0
        if f > 0 and self.num_replay == 0:
            raise ValueError("fraction > 0 needs at least one replay source")
        self.top = GreedyBlend([1 - f, f]) if f > 0 else None
        self.replay = GreedyBlend(replay_weights) if self.num_replay and f > 0 else None

    @property
    def num_sources(self) -> int:
        return 1 + self.num_replay

    def counts_at(self, position: int) -> list[int]:
        """Samples given by each source (new first) in the first ``position`` samples."""
        if self.top is None:
            return [position] + [0] * self.num_replay
        new, replay = self.top.counts_at(position)
        assert self.replay is not None
        return [new] + self.replay.counts_at(replay)

    def locate(self, positions: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(source id, source-local index)`` of each global position."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        if self.top is None:
            return np.zeros_like(positions), positions.copy()
        top_src, top_local = self.top.locate(positions)
        sources, local = np.zeros_like(positions), top_local.copy()
        is_replay = top_src == 1
        if is_replay.any():
            assert self.replay is not None
            rep_src, rep_local = self.replay.locate(top_local[is_replay])
            sources[is_replay] = rep_src + 1
            local[is_replay] = rep_local
        return sources, local
