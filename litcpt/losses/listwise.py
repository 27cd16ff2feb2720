"""Listwise reward-model losses and metrics: one chosen completion against several rejected ones (pure tensor math).

Scores of a batch of ``B`` prompts with ``N_i`` completions each (chosen first) arrive flat, ``[R]`` with
``R = Σ N_i``; :func:`to_matrix` lays them out as ``scores [B, K]`` with a ``mask`` (``K = max N_i``; padded slots
are False), column 0 the chosen completion.

* :func:`listwise_bradley_terry`: ``mean_b mean_{j valid} -log σ(r_{b,0} - r_{b,j})``: the Bradley–Terry loss of the
  chosen against each rejected, averaged over a prompt's rejected completions, then over prompts (every prompt weighs
  the same whatever its N). With one rejected it is :func:`litcpt.losses.preference.bradley_terry`.
* :func:`plackett_luce`: when the completions are a full ranking (best first), the negative log-likelihood of that
  order under Plackett–Luce, ``mean_b Σ_{i < N_b - 1} [logsumexp_{j >= i} r_{b,j} - r_{b,i}]``. With two
  completions it is Bradley–Terry.
* :func:`listwise_outcomes`: per prompt, whether the chosen beats every rejected (strictly), and per pair the
  Bradley–Terry outcome (1 win, ½ tie, 0 loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ListwiseMetrics", "listwise_bradley_terry", "listwise_outcomes", "plackett_luce", "to_matrix"]


def to_matrix(scores: Tensor, sizes: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Flat ``scores [R]`` of groups of ``sizes`` rows -> ``(matrix [B, K], mask [B, K])`` (differentiable)."""
    sizes = [int(n) for n in sizes]
    if scores.dim() != 1 or sum(sizes) != scores.shape[0] or min(sizes, default=0) < 2:
        raise ValueError(f"scores and sizes: expected [sum(sizes)] scores and groups of at least 2 rows, got "
                         f"{tuple(scores.shape)} and {sizes}")
    width = max(sizes)
    group = torch.repeat_interleave(torch.arange(len(sizes), device=scores.device),
                                    torch.tensor(sizes, device=scores.device))
    starts = torch.tensor([0] + sizes[:-1], device=scores.device).cumsum(0)
    col = torch.arange(scores.shape[0], device=scores.device) - starts[group]
    matrix = scores.new_zeros((len(sizes), width)).index_put((group, col), scores)
    mask = torch.zeros((len(sizes), width), dtype=torch.bool, device=scores.device)
    mask[group, col] = True
    return matrix, mask


def listwise_bradley_terry(scores: Tensor, mask: Tensor) -> Tensor:
    """Mean over prompts of the mean over rejected (columns ``1..``, where ``mask``) of ``-log σ(r_0 - r_j)``."""
    rejected = mask[:, 1:]
    losses = -F.logsigmoid(scores[:, :1] - scores[:, 1:])
    per_prompt = torch.where(rejected, losses, torch.zeros_like(losses)).sum(1) / rejected.sum(1).clamp_min(1)
    return per_prompt.mean()


def plackett_luce(scores: Tensor, mask: Tensor) -> Tensor:
    """Plackett–Luce negative log-likelihood of the order of each row (best first), averaged over rows."""
    neg_inf = torch.finfo(scores.dtype).min
    masked = torch.where(mask, scores, torch.full_like(scores, neg_inf))
    # logsumexp over the items from position i on: reverse cumulative logsumexp
    tail = torch.logcumsumexp(masked.flip(1), dim=1).flip(1)
    last = mask.sum(1, keepdim=True) - 1
    steps = mask & (torch.arange(scores.shape[1], device=scores.device).unsqueeze(0) < last)
    terms = torch.where(steps, tail - scores, torch.zeros_like(scores))
    return terms.sum(1).mean()


def listwise_outcomes(scores: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(beats_all [B], pair_outcomes [P], margins [P])``: whether the chosen strictly beats every rejected, and
    for each valid (chosen, rejected) pair its outcome (1, ½ on a tie, 0) and ``r_0 - r_j``."""
    rejected = mask[:, 1:]
    diff = (scores[:, :1] - scores[:, 1:]).detach().float()
    beats_all = torch.where(rejected, diff > 0, torch.ones_like(rejected)).all(1).float()
    wins = (diff > 0).float() + 0.5 * (diff == 0).float()
    return beats_all, wins[rejected], diff[rejected]


class ListwiseMetrics(torch.nn.Module):
    """``accuracy`` (the chosen beats every rejected), ``pair_accuracy`` (per (chosen, rejected) pair, ties half),
    ``margin`` (mean ``r_chosen - r_rejected`` over pairs), ``reward_mean`` / ``reward_std`` over all completions;
    synced across ranks (torchmetrics)."""

    def __init__(self) -> None:
        super().__init__()
        from torchmetrics import MeanMetric

        self.accuracy, self.pair_accuracy, self.margin = MeanMetric(), MeanMetric(), MeanMetric()
        self.reward, self.reward_sq = MeanMetric(), MeanMetric()

    def update(self, scores: Tensor, mask: Tensor) -> None:
        beats_all, wins, margins = listwise_outcomes(scores, mask)
        self.accuracy.update(beats_all)
        self.pair_accuracy.update(wins)
        self.margin.update(margins)
        values = scores.detach().float()[mask]
        self.reward.update(values)
        self.reward_sq.update(values.square())

    def compute(self) -> dict[str, Tensor]:
        mean = self.reward.compute()
        std = (self.reward_sq.compute() - mean.square()).clamp_min(0).sqrt()
        return {"accuracy": self.accuracy.compute(), "pair_accuracy": self.pair_accuracy.compute(),
                "margin": self.margin.compute(), "reward_mean": mean, "reward_std": std}

    def reset(self) -> None:
        for metric in (self.accuracy, self.pair_accuracy, self.margin, self.reward, self.reward_sq):
            metric.reset()
