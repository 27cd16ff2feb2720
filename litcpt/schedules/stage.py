"""An LR stage: a resolved schedule placed on a run's axis of global optimizer steps.

A schedule's argument is the progress ``t`` inside its stage (optimizer steps or tokens). A run counts global
optimizer steps, and a stage need not start at the run's step 0 (a resumed run, a carried schedule, ``litcpt anneal``,
which starts a new stage at the source checkpoint's global step). :class:`LRStage` holds the three facts that map one
onto the other, so that code outside the LR callback (the data phases that start when the LR falls below a threshold,
:mod:`litcpt.data.mixing.phases`) can evaluate the LR of any step from a value, without a Trainer or a callback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from litcpt.schedules.formulas import Schedule

__all__ = ["LRStage"]


@dataclass(frozen=True)
class LRStage:
    """Optimizer step ``g`` of the run trains at ``schedule((g - first_step) * t_per_step)``.

    Attributes:
        schedule: the resolved schedule (:mod:`litcpt.schedules.formulas`), in its own unit.
        first_step: the global step of the stage's first optimizer step (``t = 0``); negative for a stage carried
            into a run whose steps restart at 0 (``carry.schedule``).
        t_per_step: schedule units per optimizer step: 1 for a schedule in steps, the global tokens per step for one
            in tokens.
    """

    schedule: Schedule
    first_step: int = 0
    t_per_step: float = 1.0

    def __post_init__(self) -> None:
        if not callable(self.schedule) or not hasattr(self.schedule, "kind"):
            raise ValueError(f"schedule={self.schedule!r} must be a litcpt.schedules.formulas schedule")
        if isinstance(self.first_step, bool) or not isinstance(self.first_step, int):
            raise ValueError(f"first_step={self.first_step!r} must be a whole number of optimizer steps")
        t = self.t_per_step
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ValueError(f"t_per_step={t!r} must be a positive finite number")

    def progress(self, global_step: int) -> float:
        """The schedule's ``t`` at optimizer step ``global_step``."""
        return (global_step - self.first_step) * self.t_per_step

    def lr(self, global_step: int) -> float:
        """The LR optimizer step ``global_step`` trains at (``global_step >= first_step``)."""
        return self.schedule(self.progress(global_step))
