"""Data phases: a replay share that changes at given token counts, exact at every prefix.

A phase schedule is a list of ``(start sample, fraction)``: from global sample ``start`` on, the share of replay
samples is ``fraction`` (the first phase starts at 0). The *target* number of replay samples after ``p`` samples is

    T(p) = sum_j fraction_j * |[start_j, start_{j+1}) ∩ [0, p)|

(piecewise linear, slope in [0, 1)), and sample ``p`` is a replay sample iff ``ceil(T(p+1) - 1/2) > ceil(T(p) - 1/2)``.
So the replay count after any prefix is ``ceil(T(p) - 1/2)``: within 1/2 of the target, for every prefix and across
phase boundaries, in closed form (O(log phases) per position, any position, no replay of the stream). With one phase
this is exactly :class:`~litcpt.data.mixing.blend.Mixer`'s level-1 rule. The replay samples are split between replay
sources by the same static greedy blend as :class:`~litcpt.data.mixing.blend.Mixer`.

A phase starts at a token count (``{tokens: N, fraction: f}``) or when the learning rate falls below a threshold
(``{lr_below: x, fraction: f}``, Parmar et al. 2024, "Reuse, Don't Retrain": switch to the final blend once the LR
has decayed). The LR phase is *not* triggered by watching the LR during training: the LR schedules are pure functions
of the stage's progress (:mod:`litcpt.schedules.formulas`), so given the run's :class:`~litcpt.schedules.LRStage` (the
resolved schedule, the global step the stage starts at, the schedule units per step; handed to the data module by the
Trainer harness, :meth:`litcpt.data.Replay.set_lr_stage`), the first optimizer step from which the LR stays below the
threshold is known before the first batch (:func:`lr_crossing_step`), and the phase becomes an ordinary start sample
(the first sample of that step). The stream then stays a pure function of the sample position: the same on every rank
and dataloader worker (no LR to broadcast, no race between the optimizer step that lowers the LR and batches already
prefetched), exact at every prefix, and the same after a resume (the stage is the checkpoint's, the stream position
the data module's), and the same stream as a ``tokens`` phase at that token count.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from litcpt.data.mixing.blend import GreedyBlend, _as_fraction
from litcpt.schedules.stage import LRStage

__all__ = ["PhasedMixer", "check_phases", "lr_crossing_step", "lr_phase_starts", "parse_phases"]


def _check_number(i: int, key: str, value: Any, *, positive: bool = False) -> float:
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    if bad or value < 0 or (positive and value == 0):
        raise ValueError(f"Replay: phases[{i}].{key} must be a number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def check_phases(phases: Sequence[dict]) -> list[tuple[str, float, Fraction]]:
    """Validate ``[{"tokens": N | "lr_below": x, "fraction": f}, ...]`` -> ``[(key, value, fraction), ...]``.

    Token phases must come in increasing token order, LR phases in decreasing threshold order (a lower LR is reached
    later); where an LR phase falls among token phases is only known once the schedule is (:func:`parse_phases`).
    Errors name the phase and field.
    """
    out: list[tuple[str, float, Fraction]] = []
    for i, phase in enumerate(phases):
        keys = set(phase) if isinstance(phase, dict) else set()
        if keys not in ({"tokens", "fraction"}, {"lr_below", "fraction"}):
            raise ValueError(f"Replay: phases[{i}] must be a mapping with keys 'tokens' (or 'lr_below') and "
                             f"'fraction', got {phase!r}")
        key = "tokens" if "tokens" in keys else "lr_below"
        value = _check_number(i, key, phase[key], positive=key == "lr_below")
        previous = [(j, v) for j, (k, v, _) in enumerate(out) if k == key]
        if previous and key == "tokens" and value <= previous[-1][1]:
            raise ValueError(f"Replay: phases[{i}].tokens={phase[key]!r} must be larger than the previous phase's "
                             f"({previous[-1][1]!r})")
        if previous and key == "lr_below" and value >= previous[-1][1]:
            raise ValueError(f"Replay: phases[{i}].lr_below={phase[key]!r} must be smaller than phases"
                             f"[{previous[-1][0]}].lr_below={previous[-1][1]!r} (a lower LR comes later)")
        try:
            f = _as_fraction(phase["fraction"], f"Replay: phases[{i}].fraction")
        except ValueError:
            raise ValueError(f"Replay: phases[{i}].fraction must be a number in [0, 1), got "
                             f"{phase['fraction']!r}") from None
        if f >= 1:
            raise ValueError(f"Replay: phases[{i}].fraction must be in [0, 1), got {phase['fraction']!r}")
        out.append((key, value, f))
    return out


def parse_phases(phases: Sequence[dict], *, samples_per_token: Fraction, default_fraction: float,
                 lr_start: Callable[[int, float], int] | None = None) -> list[tuple[int, Fraction]]:
    """``[{"tokens": N | "lr_below": x, "fraction": f}, ...]`` -> ``[(start sample, fraction), ...]`` from sample 0.

    ``tokens`` is where a phase starts, in training tokens (rounded down to whole samples); ``lr_below`` phases start
    at ``lr_start(i, threshold)`` (a sample, e.g. from :func:`lr_phase_starts`). The run starts with
    ``default_fraction`` unless a phase starts at sample 0. Errors name the phase and field.
    """
    out: list[tuple[int, Fraction]] = [(0, _as_fraction(default_fraction, "Replay: fraction"))]
    for i, (key, value, f) in enumerate(check_phases(phases)):
        if key == "tokens":
            start = int(Fraction(repr(value)) * samples_per_token)
        elif lr_start is None:
            raise ValueError(f"Replay: phases[{i}].lr_below needs the run's LR schedule, under a Lightning Trainer: "
                             f"`litcpt pretrain` hands it over; with your own Trainer call data.set_lr_stage("
                             f"lr_callback.lr_stage(max_steps=...)) before fit (docs/data.md), or give the token count "
                             f"as phases[{i}].tokens")
        else:
            start = int(lr_start(i, value))
        if start < out[-1][0]:
            where = f"tokens={value:g}" if key == "tokens" else f"lr_below={value:g}, reached at sample {start}"
            raise ValueError(f"Replay: phases[{i}] ({where}) starts before the previous phase (sample "
                             f"{out[-1][0]}): order the phases by when they start")
        if start == out[-1][0]:
            out[-1] = (start, f)  # a phase at token 0 (or within the same sample) replaces the one before
        else:
            out.append((start, f))
    return out


def lr_crossing_step(schedule: Callable[[float], float], threshold: float, *, steps: int,
                     t_per_step: float = 1.0, chunk: int = 4096) -> int | None:
    """The first optimizer step ``k`` (0-based in the stage) from which the LR stays below ``threshold`` up to the
    stage's last step ``steps - 1``, where step ``k`` runs at ``schedule(k * t_per_step)`` (``t_per_step``: 1 for a
    schedule in steps, the tokens per step for one in tokens); ``None`` if the LR of the last step is not below it.

    "Stays below" rather than "is below": a warmup starts under the threshold too. The scan goes backwards from the
    last step, so it costs the length of the final phase, and assumes nothing about the schedule's shape.
    """
    if steps < 1:
        return None
    end = steps
    while end > 0:
        begin = max(0, end - chunk)
        ks = np.arange(begin, end, dtype=np.float64)
        lrs = np.fromiter((schedule(float(k) * t_per_step) for k in ks), dtype=np.float64, count=ks.size)
        above = np.flatnonzero(lrs >= threshold)
        if above.size:
            k = begin + int(above[-1]) + 1
            return k if k < steps else None
        end = begin
    return 0


def lr_phase_starts(stage: LRStage, *, global_step: int, max_steps: int, position: int,
                    samples_per_step: int) -> Callable[[int, float], int]:
    """``lr_start(i, threshold) -> start sample`` for :func:`parse_phases`: the first sample of the first optimizer
    step from which the LR of ``stage`` stays below ``threshold`` up to the run's last step ``max_steps - 1``.

    ``position`` is the stream position (global samples) at the run's current ``global_step`` and ``samples_per_step``
    the global samples per optimizer step, so step ``g`` starts at sample ``position + (g - global_step) *
    samples_per_step``. ``stage`` gives the schedule and the global step it starts at (on resume the checkpoint's,
    so a resumed run finds the same sample).
    """
    if max_steps <= stage.first_step:
        raise ValueError(f"Replay: phases with lr_below need the run's length: set max_steps (got {max_steps}, stage "
                         f"starting at step {stage.first_step})")
    steps = max_steps - stage.first_step

    def lr_start(i: int, threshold: float) -> int:
        k = lr_crossing_step(stage.schedule, threshold, steps=steps, t_per_step=stage.t_per_step)
        if k is None:
            last = stage.schedule((steps - 1) * stage.t_per_step)
            raise ValueError(f"Replay: phases[{i}].lr_below={threshold:g}: the LR schedule never falls below it in "
                             f"this run's {steps} steps (last step's LR {last:g}; {stage.schedule})")
        start = position + (stage.first_step + k - global_step) * samples_per_step
        if start < 0:
            raise ValueError(f"Replay: phases[{i}].lr_below={threshold:g} is reached at step {stage.first_step + k}, "
                             f"before the data stream's start (sample {start})")
        return start

    return lr_start


class PhasedMixer:
    """New source (id 0) + ``K`` replay sources whose replay share follows a phase schedule; duck-types
    :class:`~litcpt.data.mixing.blend.Mixer` (``num_sources``, ``counts_at``, ``locate``)."""

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
