"""Data phases: a replay share that changes at given token counts, exact at every prefix.

A phase schedule is a list of ``(start sample, fraction)``: from global sample ``start`` on, the share of replay
samples is ``fraction`` (the first phase starts at 0). The *target* number of replay samples after ``p`` samples is

    T(p) = sum_j fraction_j * |[start_j, start_{j+1}) ∩ [0, p)|

(piecewise linear, slope in [0, 1)), and sample ``p`` is a replay sample iff ``ceil(T(p+1) - 1/2) > ceil(T(p) - 1/2)``.
So the replay count after any prefix is ``ceil(T(p) - 1/2)``: within 1/2 of the target, for every prefix and across
phase boundaries, in closed form (O(log phases) per position, any position, no replay of the stream). With one phase
this is exactly :class:`~litcpt.data.sampling.Mixer`'s level-1 rule. The replay samples are split between replay
sources by the same static greedy blend as :class:`~litcpt.data.sampling.Mixer`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from litcpt.data.sampling import GreedyBlend, _as_fraction

__all__ = ["PhasedMixer", "parse_phases"]


def parse_phases(phases: Sequence[dict], *, samples_per_token: Fraction,
                 default_fraction: float) -> list[tuple[int, Fraction]]:
    """``[{"tokens": N, "fraction": f}, ...]`` -> ``[(start sample, fraction), ...]`` starting at sample 0.

    ``tokens`` is where a phase starts, in training tokens (rounded down to whole samples); the run starts with
    ``default_fraction`` unless a phase starts at 0 tokens. Errors name the phase and field.
    """
    out: list[tuple[int, Fraction]] = [(0, _as_fraction(default_fraction, "Replay: fraction"))]
    last_tokens = -1.0
    for i, phase in enumerate(phases):
        if not isinstance(phase, dict) or set(phase) != {"tokens", "fraction"}:
            raise ValueError(f"Replay: phases[{i}] must be a mapping with keys 'tokens' and 'fraction', got {phase!r}")
        tokens, fraction = phase["tokens"], phase["fraction"]
        if isinstance(tokens, bool) or not isinstance(tokens, (int, float)) or not tokens >= 0:
            raise ValueError(f"Replay: phases[{i}].tokens must be a number >= 0, got {tokens!r}")
        if tokens <= last_tokens:
            raise ValueError(f"Replay: phases[{i}].tokens={tokens!r} must be larger than the previous phase's "
                             f"({last_tokens!r})")
        last_tokens = float(tokens)
        try:
            f = _as_fraction(fraction, f"Replay: phases[{i}].fraction")
        except ValueError:
            raise ValueError(f"Replay: phases[{i}].fraction must be a number in [0, 1), got {fraction!r}") from None
        if f >= 1:
            raise ValueError(f"Replay: phases[{i}].fraction must be in [0, 1), got {fraction!r}")
        start = int(Fraction(repr(float(tokens))) * samples_per_token)
        if start == out[-1][0]:
            out[-1] = (start, f)  # a phase at token 0 (or within the same sample) replaces the one before
        else:
            out.append((start, f))
    return out


class PhasedMixer:
    """New source (id 0) + ``K`` replay sources whose replay share follows a phase schedule; duck-types
    :class:`~litcpt.data.sampling.Mixer` (``num_sources``, ``counts_at``, ``locate``)."""

    def __init__(self, phases: Sequence[tuple[int, Fraction | float]], replay_weights: Sequence[float] | None) -> None:
        if not phases or phases[0][0] != 0:
            raise ValueError("PhasedMixer: the first phase must start at sample 0")
        starts = [int(s) for s, _ in phases]
        if any(b <= a for a, b in zip(starts, starts[1:])):
            raise ValueError(f"PhasedMixer: phase starts must increase, got {starts}")
        self.starts = starts
        self.fractions = [_as_fraction(f, "PhasedMixer: fraction") for _, f in phases]
        if any(f >= 1 for f in self.fractions):
            raise ValueError(f"PhasedMixer: fractions must be in [0, 1), got {[float(f) for f in self.fractions]}")
        self.num_replay = len(replay_weights) if replay_weights else 0
        if any(f > 0 for f in self.fractions) and self.num_replay == 0:
            raise ValueError("PhasedMixer: a phase with fraction > 0 needs at least one replay source")
        # target replay count at each phase start (exact rationals)
        self._base = [Fraction(0)]
        for j in range(1, len(starts)):
            self._base.append(self._base[-1] + self.fractions[j - 1] * (starts[j] - starts[j - 1]))
        self.replay = GreedyBlend(replay_weights) if self.num_replay else None

    @property
    def num_sources(self) -> int:
        return 1 + self.num_replay

    def target(self, position: int) -> Fraction:
        """``T(position)``: the exact replay share of the first ``position`` samples."""
        j = bisect.bisect_right(self.starts, position) - 1
        return self._base[j] + self.fractions[j] * (position - self.starts[j])

    def replay_count(self, position: int) -> int:
        """Replay samples among the first ``position``: ``ceil(T(position) - 1/2)`` (0 at 0)."""
        t = self.target(position) - Fraction(1, 2)
        return max(0, -((-t.numerator) // t.denominator))

    def counts_at(self, position: int) -> list[int]:
        if position < 0:
            raise ValueError(f"PhasedMixer: position must be >= 0, got {position}")
        replay = self.replay_count(int(position))
        counts = [int(position) - replay]
        if self.replay is not None:
            counts += self.replay.counts_at(replay)
        return counts

    def locate(self, positions: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        sources, local = np.zeros_like(positions), np.zeros_like(positions)
        replay_local = []
        for i, p in enumerate(positions.tolist()):
            here, nxt = self.replay_count(p), self.replay_count(p + 1)
            if nxt > here:
                sources[i] = 1
                replay_local.append((i, here))
            else:
                local[i] = p - here
        if replay_local:
            assert self.replay is not None
            idx = np.array([i for i, _ in replay_local], dtype=np.int64)
            rep_src, rep_loc = self.replay.locate(np.array([c for _, c in replay_local], dtype=np.int64))
            sources[idx] = rep_src + 1
            local[idx] = rep_loc
        return sources, local
