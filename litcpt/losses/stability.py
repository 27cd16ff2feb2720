"""Training-stability math, as pure functions: the z-loss and the spike test of skip-step.

* :func:`z_loss` -- PaLM's auxiliary loss ``mean(logsumexp(logits)^2)`` (Chowdhery et al. 2022), which keeps the
  softmax normalizer near 1; OLMo-core's ``cross_entropy_loss(compute_z_loss=True)`` computes the same (mean over
  the positions whose label is not ``ignore_index``), and the trainer adds ``multiplier * z_loss`` to the loss.
* :func:`spike_zscore` / :func:`is_spike` -- the skip-step rule of OLMo-core's ``SkipStepOptimizer``: a value is a
  spike when it lies more than ``sigma`` sample standard deviations above the mean of the previous ``window``
  values, once at least ``min_history`` of them are known.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["default_min_history", "is_spike", "spike_zscore", "z_loss"]


def z_loss(logits: torch.Tensor, targets: torch.Tensor | None = None, *, ignore_index: int = -100) -> torch.Tensor:
    """``mean(logsumexp(logits, -1)^2)`` over the positions whose target is not ``ignore_index`` (float32 math).

    Args:
        logits: ``[..., vocab]`` unnormalized logits.
        targets: ``[...]`` labels (only used for the mask); ``None``: every position counts.
    """
    lse_sq = logits.float().logsumexp(dim=-1).pow(2)
    if targets is None:
        return lse_sq.mean()
    mask = (targets != ignore_index).to(lse_sq.dtype)
    return (lse_sq * mask).sum() / mask.sum().clamp_min(1.0)


def default_min_history(window: int) -> int:
    """Values needed before the spike test applies: ``max(20, window // 2)``, as OLMo-core (at most ``window``)."""
    return min(window, max(20, window // 2))


def spike_zscore(history: Sequence[float], value: float) -> float:
    """``(value - mean(history)) / std(history)`` with the sample (n-1) standard deviation; ``inf`` when the history
    is constant and ``value`` is above it, ``0`` when equal or below, ``nan`` for a non-finite ``value``."""
    n = len(history)
    if n < 2:
        raise ValueError(f"spike_zscore needs at least 2 values of history, got {n}")
    if not math.isfinite(value):
        return math.nan
    mean = math.fsum(history) / n
    var = math.fsum((x - mean) ** 2 for x in history) / (n - 1)
    std = math.sqrt(var)
    if std == 0.0:
        return math.inf if value > mean else 0.0
    return (value - mean) / std


def is_spike(history: Sequence[float], value: float, *, sigma: float, min_history: int) -> bool:
    """Whether ``value`` is more than ``sigma`` standard deviations above ``history`` (a NaN/inf value always is,
    once the history is long enough; before that nothing is a spike)."""
    if len(history) < max(2, min_history):
        return False
    z = spike_zscore(history, value)
    return math.isnan(z) or z > sigma
