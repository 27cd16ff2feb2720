"""Training precision: the default, and when ``bf16-true`` cannot train.

``bf16-true`` keeps the weights themselves in bfloat16 (8 significant bits). An optimizer step changes a weight
``w`` only if the update is at least half a bf16 ulp of ``w``: ``|Δw| >= 2^(floor(log2|w|) - 8)``; smaller updates
round back to ``w`` and are lost, step after step. AdamW's update of a weight is about ``lr`` (its normalised step
is O(1) times ``lr``), so with weights of typical magnitude ``0.02`` (GPT-NeoX / litgpt init scale) nothing below
``lr = 2^-14 ≈ 6.1e-5`` can change them. ``bf16-mixed`` keeps fp32 master weights (the update is applied in fp32,
compute runs in bf16): it is litcpt's default on GPUs, as in litgpt and TRL.
"""

from __future__ import annotations

import math
from typing import Any

TYPICAL_WEIGHT = 0.02
"""Magnitude of a typical weight of a litgpt model (the init std); the rule below is stated for it."""


def bf16_half_ulp(x: float) -> float:
    """Half the spacing of bfloat16 numbers at ``|x|`` (8 significant bits): ``2^(floor(log2|x|) - 8)``."""
    x = abs(float(x))
    if x == 0.0:
        raise ValueError("bf16_half_ulp: x must be non-zero")
    return 2.0 ** (math.floor(math.log2(x)) - 8)


def bf16_updates_vanish(lr: float, weight: float = TYPICAL_WEIGHT) -> bool:
    """True when an update of size ``lr`` to a bf16 weight of magnitude ``weight`` rounds back to the weight."""
    return float(lr) < bf16_half_ulp(weight)


def default_precision(on_gpu: bool, bf16_supported: bool) -> str:
    """``bf16-mixed`` (fp32 master weights) on GPUs with bf16, under every strategy; ``32-true`` otherwise."""
    return "bf16-mixed" if on_gpu and bf16_supported else "32-true"


def check_precision(precision: str, lr: float | None) -> str | None:
    """A warning message when ``precision`` is ``bf16-true`` and ``lr`` is too small to change typical weights."""
    if str(precision) not in ("bf16-true", "bf16") or lr is None or lr <= 0:
        return None
    if not bf16_updates_vanish(lr):
        return None
    return (f"precision=bf16-true with lr={lr:g}: an update of ~lr to a weight of magnitude {TYPICAL_WEIGHT} is below "
            f"half a bf16 ulp ({bf16_half_ulp(TYPICAL_WEIGHT):.2g}) and rounds away, so most weights will not change. "
            "Use precision=bf16-mixed (fp32 master weights, the default) or a larger lr.")


def warn_precision(precision: str, optimizer: Any) -> None:
    """Issue :func:`check_precision`'s warning on rank 0 for ``precision`` and the peak lr of the ``optimizer`` spec
    (:func:`litcpt.runtime.optim.optimizer_lr`): the one check that a run and its ``--dry_run`` both make."""
    from lightning.fabric.utilities.rank_zero import rank_zero_warn

    from litcpt.runtime.optim import optimizer_lr

    message = check_precision(precision, optimizer_lr(optimizer))
    if message:
        rank_zero_warn(message, category=UserWarning)
