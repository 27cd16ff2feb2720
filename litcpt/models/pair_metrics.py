"""Preference-pair training metrics of the reward and DPO modules: named means in one ``MetricCollection``.

Both modules log per-pair quantities averaged over a step (training) or over the validation pairs, synced across
ranks, with pairs repeated only to even out ranks weighted 0. :class:`MeanMetrics` is that one wrapper: a
``torchmetrics.MetricCollection`` of ``MeanMetric`` keyed by the logged name, fed a dict of per-pair tensors.
:class:`RewardPairMetrics` (reward: accuracy with ties as half, margin, reward mean and std) and
:class:`DPOMetrics` (TRL's DPO names) only choose the names and how per-pair values are derived.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection

__all__ = ["DPOMetrics", "MeanMetrics", "RewardPairMetrics", "dpo_pair_values"]


class MeanMetrics(MetricCollection):
    """A (weighted) ``MeanMetric`` per name; :meth:`update` takes ``{name: per-pair tensor}``.

    ``compute_groups`` is off: two means that happen to see equal values on their first update must not be merged.
    """

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__({name: MeanMetric() for name in names}, compute_groups=False)
        self.names = tuple(names)

    def update(self, values: Mapping[str, Tensor], weight: Tensor | None = None) -> None:  # type: ignore[override]
        """``values``: a tensor for every name (shapes may differ per name); ``weight``: per element of every
        value, 0 for elements not to count (None: all count)."""
        for name in self.names:
            value = values[name].detach().float()
            self[name].update(value, 1.0 if weight is None else weight.to(value))

    def compute(self) -> dict[str, Tensor]:
        """``{name: mean}`` in the order of the names (``MetricCollection`` itself sorts them)."""
        return {name: self[name].compute() for name in self.names}

    @property
    def count(self) -> int:
        """Updates since the last reset (0: nothing to log)."""
        return int(self[self.names[0]].update_count)


class RewardPairMetrics(MeanMetrics):
    """Pairwise accuracy (ties count half), mean margin, reward mean and std of a reward model."""

    def __init__(self) -> None:
        super().__init__(("accuracy", "margin", "reward", "reward_sq"))

    def update(self, r_chosen: Tensor, r_rejected: Tensor) -> None:  # type: ignore[override]
        r_chosen, r_rejected = r_chosen.detach().float(), r_rejected.detach().float()
        both = torch.cat([r_chosen, r_rejected])
        super().update({"accuracy": (r_chosen > r_rejected).float() + 0.5 * (r_chosen == r_rejected).float(),
                        "margin": r_chosen - r_rejected, "reward": both, "reward_sq": both.square()})

    def compute(self) -> dict[str, Tensor]:
        values = super().compute()
        mean = values["reward"]
        var = (values["reward_sq"] - mean.square()).clamp_min(0)
        return {"accuracy": values["accuracy"], "margin": values["margin"], "reward_mean": mean,
                "reward_std": var.sqrt()}


class DPOMetrics(MeanMetrics):
    """TRL's DPO metrics (:data:`NAMES`, plus ``extra`` names such as ``loss/<type>``) as weighted means."""

    NAMES = ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
             "logps/rejected")

    def __init__(self, extra: Sequence[str] = ()) -> None:
        super().__init__(tuple(self.NAMES) + tuple(extra))


def dpo_pair_values(losses_: Tensor, r_chosen: Tensor, r_rejected: Tensor, pc: Tensor,
                    pr: Tensor) -> dict[str, Tensor]:
    """Per-pair values of :class:`DPOMetrics` from the outputs of :func:`litcpt.losses.preference.dpo` and the policy
    logps."""
    return {
        "loss": losses_,
        "rewards/chosen": r_chosen,
        "rewards/rejected": r_rejected,
        "rewards/accuracies": (r_chosen > r_rejected).float(),
        "rewards/margins": r_chosen - r_rejected,
        "logps/chosen": pc,
        "logps/rejected": pr,
    }
