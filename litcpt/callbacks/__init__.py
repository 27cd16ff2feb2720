"""Lightning callbacks: LR schedules (re-warm/re-decay, infinite, WSD) and LitGPT-layout checkpoints."""

from litcpt.callbacks.litgpt_checkpoint import LitGPTCheckpoint  # noqa: F401
from litcpt.callbacks.lr_schedule import (  # noqa: F401
    ConstantLR,
    InfiniteLR,
    LinearDecayLR,
    LRScheduleCallback,
    PowerLR,
    WarmupCosineLR,
    WSDLR,
)
from litcpt.callbacks.ema import EMA, SWA  # noqa: F401
from litcpt.callbacks.skip_step import SkipSpikes  # noqa: F401

__all__ = ["EMA", "SWA", "ConstantLR", "InfiniteLR", "LinearDecayLR", "LitGPTCheckpoint", "LRScheduleCallback",
           "PowerLR", "SkipSpikes", "WarmupCosineLR", "WSDLR"]
