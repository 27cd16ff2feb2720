"""The reward-model losses by ``loss_type`` name: the one list of the names ``litcpt reward`` takes.

Each entry says which pure function scores a batch of pairs (``r_chosen``, ``r_rejected``:
:mod:`litcpt.losses.preference`) and which a listwise batch (``scores [B, K]`` with a ``mask``, column 0 the chosen
completion: :mod:`litcpt.losses.listwise`), and whether it needs the list ranked. The CLI's ``Literal``
(:data:`RewardLossName`) is read off :data:`REWARD_LOSSES`.

Example::

    >>> from litcpt.losses.reward import REWARD_LOSSES
    >>> sorted(name for name, loss in REWARD_LOSSES.items() if loss.ranked)
    ['plackett_luce']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

import torch
from torch import Tensor

from litcpt.losses.listwise import listwise_bradley_terry, plackett_luce
from litcpt.losses.preference import bradley_terry, logistic

__all__ = ["REWARD_LOSSES", "RewardLoss", "RewardLossName"]


def _bradley_terry_pairs(r_chosen: Tensor, r_rejected: Tensor, margin: Tensor | None, center: float) -> Tensor:
    return bradley_terry(r_chosen, r_rejected, margin=margin, center_coefficient=center)


def _logistic_pairs(r_chosen: Tensor, r_rejected: Tensor, margin: Tensor | None, center: float) -> Tensor:
    labels = torch.cat([torch.ones_like(r_chosen), torch.zeros_like(r_rejected)])
    return logistic(torch.cat([r_chosen, r_rejected]), labels)


def _bradley_terry_lists(scores: Tensor, mask: Tensor, center: float) -> Tensor:
    loss = listwise_bradley_terry(scores, mask)
    if center:
        pairs = (scores[:, :1] + scores[:, 1:])[mask[:, 1:]]
        loss = loss + center * pairs.square().mean()
    return loss


def _logistic_lists(scores: Tensor, mask: Tensor, center: float) -> Tensor:
    labels = torch.zeros_like(scores)
    labels[:, 0] = 1.0
    return logistic(scores[mask], labels[mask])


def _plackett_luce_lists(scores: Tensor, mask: Tensor, center: float) -> Tensor:
    return plackett_luce(scores, mask)


@dataclass(frozen=True)
class RewardLoss:
    """One reward-model ``loss_type``: the function for pairs and the one for listwise batches."""

    name: str
    pairs: Callable[[Tensor, Tensor, Tensor | None, float], Tensor]
    """``(r_chosen, r_rejected, margin or None, center_coefficient)`` -> scalar loss."""
    lists: Callable[[Tensor, Tensor, float], Tensor]
    """``(scores [B, K], mask [B, K], center_coefficient)`` -> scalar loss."""
    ranked: bool = False
    """Needs the completions of a list ranked best first (``litcpt.data.Listwise(ranked=True)``)."""


#: The reward-model losses by name (``bradley_terry``: ``-log σ(r_c - r_r - margin)`` (+ centering), on lists its
#: mean over each prompt's rejected; ``logistic``: BCE, chosen 1 / rejected 0, margin and centering unused;
#: ``plackett_luce``: the ranking's negative log-likelihood, Bradley–Terry on pairs).
REWARD_LOSSES: Final[Mapping[str, RewardLoss]] = MappingProxyType({loss.name: loss for loss in (
    RewardLoss("bradley_terry", _bradley_terry_pairs, _bradley_terry_lists),
    RewardLoss("logistic", _logistic_pairs, _logistic_lists),
    RewardLoss("plackett_luce", _bradley_terry_pairs, _plackett_luce_lists, ranked=True),
)})
#: ``loss_type`` of a reward model as the CLI sees it (choices read off :data:`REWARD_LOSSES`).
RewardLossName = Literal[tuple(REWARD_LOSSES)]  # type: ignore[valid-type]
