"""Learning-rate schedules, pure (no Lightning, no torch): the formulas of the paper's schedules and the ones that came
after (:mod:`~litcpt.schedules.formulas`), their configurations and the one :func:`resolve` that turns a configuration
and the facts of a stage into a schedule (:mod:`~litcpt.schedules.config`), and a schedule placed on a run's global
optimizer steps (:class:`LRStage`). The Lightning callbacks that apply them are :mod:`litcpt.callbacks.lr_schedule`."""

from litcpt.schedules.config import (
    ConstantConfig,
    InfiniteConfig,
    Length,
    LinearDecayConfig,
    PowerConfig,
    ScheduleConfig,
    StageFacts,
    WarmupCosineConfig,
    WSDConfig,
    resolve,
)
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
from litcpt.schedules.stage import LRStage

__all__ = ["WSD", "Constant", "ConstantConfig", "Infinite", "InfiniteConfig", "LRStage", "Length", "LinearDecay",
           "LinearDecayConfig", "Power", "PowerConfig", "Schedule", "ScheduleConfig", "StageFacts", "WSDConfig",
           "WarmupCosine", "WarmupCosineConfig", "fractions_to_lengths", "resolve", "schedule_from_dict"]
