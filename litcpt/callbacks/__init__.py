"""Lightning callbacks: LR schedules (re-warm/re-decay, infinite, WSD) and LitGPT-layout checkpoints."""

from litcpt.callbacks.ema import EMA, SWA
from litcpt.callbacks.litgpt_checkpoint import LitGPTCheckpoint
from litcpt.callbacks.lr_schedule import (
    WSDLR,
    ConstantLR,
    InfiniteLR,
    LinearDecayLR,
    LRScheduleCallback,
    PowerLR,
    WarmupCosineLR,
)
from litcpt.callbacks.skip_step import SkipSpikes

__all__ = ["EMA", "SWA", "ConstantLR", "InfiniteLR", "LinearDecayLR", "LitGPTCheckpoint", "LRScheduleCallback",
           "PowerLR", "SkipSpikes", "WarmupCosineLR", "WSDLR"]
