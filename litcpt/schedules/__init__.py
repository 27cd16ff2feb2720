"""Learning-rate schedules as small pure dataclasses (no Lightning, no torch): the formulas of the paper's schedules and
the ones that came after. The Lightning callbacks that apply them are :mod:`litcpt.callbacks.lr_schedule`."""

from litcpt.schedules.formulas import (
    WSD,
    Constant,
    Infinite,
    LinearDecay,
    Power,
    Schedule,
    WarmupCosine,
    fractions_to_lengths,
    schedule_from_dict,
)

__all__ = ["WSD", "Constant", "Infinite", "LinearDecay", "Power", "Schedule", "WarmupCosine", "fractions_to_lengths",
           "schedule_from_dict"]
