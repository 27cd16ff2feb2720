"""Preference and reward-model losses as pure functions of tensors.

Nothing here knows about Lightning, models or tokenizers: every function takes
already-computed scores / sequence log-probabilities and returns tensors, so the
math can be tested against closed forms.

Definitions follow the reference implementations in Hugging Face TRL:

* :func:`bradley_terry` — ``RewardTrainer.compute_loss`` (TRL v0.28.0, also
  unchanged at the 2026 ``main``): ``-logsigmoid(r_c - r_r - margin).mean()``
  plus ``center_rewards_coefficient * mean((r_c + r_r) ** 2)``.
* :func:`dpo` — ``DPOTrainer.dpo_loss`` of TRL v0.28.0 (commit cc4ab5c8) for
  ``"sigmoid"`` (with the conservative-DPO label smoothing), ``"ipo"`` and
  ``"hinge"``. TRL >= 0.29 refactored the trainer: its ``"sigmoid"`` no longer
  takes label smoothing and its ``"ipo"`` divides the log-ratios by the number
  of completion tokens inside the trainer. Here IPO is applied to whatever
  log-probabilities the caller passes; pass per-token *average* log-probs to
  get the length-normalised variant. The rest of the family (``robust``,
  ``exo_pair``, ``bco_pair``, ``sppo_hard``, ``nca_pair``, ``aot``,
  ``aot_unpaired``, ``apo_zero``, ``apo_down``, ``discopop``, ``sigmoid_norm``,
  ``sft``, lists with weights, WPO weights, LD-DPO and the f-divergences)
  follows ``DPOTrainer._compute_loss`` of TRL 1.16.0; ``bco_pair``'s running
  mean δ and ``exo_pair``'s default ε follow TRL 0.28.0 (TRL 1.x dropped both);
  ``simpo`` follows ``CPOTrainer.cpo_loss`` (TRL 1.16.0). Fixture values:
  ``tests/losses/test_dpo_losses_trl.py``, made by ``tests/fixtures/make_dpo_trl_fixtures.py``.

The DPO family is declared once: :data:`DPO_LOSSES` maps each ``loss_type`` name to its per-pair function and the
facts about it (reads ``label_smoothing``, allows an f-divergence, reference-free, needs lengths, sorts the batch...);
:data:`F_DIVERGENCES` maps each ``f_divergence_type`` to its ``f'``. :class:`DPOLoss` is a configured loss (types,
weights, β and the options), validated once when it is built; :func:`dpo_terms` computes it on a batch and checks
only the tensors. The CLI's ``Literal`` types (:data:`DPOLossName`, :data:`FDivergenceName`) are read off the
registries.

One module on purpose: one job (pairwise preference losses as pure tensor functions), one registry over the whole
DPO family; the size is the number of published variants.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Final, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_BETA",
    "DPO_LOSSES",
    "F_DIVERGENCES",
    "DPOLoss",
    "DPOLossName",
    "DPOTerm",
    "FDivergenceName",
    "PairLogps",
    "bradley_terry",
    "dpo",
    "dpo_terms",
    "f_divergence_scores",
    "implicit_reward",
    "ld_logps",
    "logistic",
    "running_mean_update",
    "sft_nll",
    "weighted_sum",
    "wpo_weights",
]

DEFAULT_BETA: Final[float] = 0.1
"""β of the DPO family when none is given: the one default of the losses, ``litcpt dpo`` and ``litcpt rewardbench``."""


# --------------------------------------------------------------------------- #
# input checks (one-line ValueErrors instead of deep torch tracebacks)
# --------------------------------------------------------------------------- #
def _check_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {value.dtype}")
    if value.numel() == 0:
        raise ValueError(f"{name}: expected at least one element, got an empty tensor")
    return value


def _check_same_shape(names: tuple[str, str], a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]}: expected the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _check_beta(beta: float) -> float:
    beta = float(beta)
    if not beta > 0.0 or beta == float("inf"):
        raise ValueError(f"beta: expected a finite number > 0, got {beta}")
    return beta


# --------------------------------------------------------------------------- #
# reward-model losses
# --------------------------------------------------------------------------- #
def bradley_terry(
    r_chosen: Tensor,
    r_rejected: Tensor,
    *,
    margin: Tensor | float | None = None,
    center_coefficient: float = 0.0,
) -> Tensor:
    """Bradley–Terry pairwise loss for a reward model.

    ``mean(-log σ(r_c - r_r - margin)) + center_coefficient · mean((r_c + r_r)²)``

    The second term is the reward-centering auxiliary loss of Eisenstein et al.
    (2023, "Helping or Herding?"), written as in TRL's ``RewardTrainer``: the
    *sum* of the two rewards of each pair is squared, then averaged over pairs.

    Args:
        r_chosen: rewards of the preferred responses, any shape (usually ``(B,)``).
        r_rejected: rewards of the dispreferred responses, same shape.
        margin: optional required margin, a float or a tensor broadcastable to
            ``r_chosen`` (e.g. per-pair margins from rating differences).
        center_coefficient: weight ``η >= 0`` of the centering term; ``0`` disables it.

    Returns:
        A scalar tensor (differentiable w.r.t. both reward tensors).
    """
    r_chosen = _check_tensor("r_chosen", r_chosen)
    r_rejected = _check_tensor("r_rejected", r_rejected)
    _check_same_shape(("r_chosen", "r_rejected"), r_chosen, r_rejected)
    center_coefficient = float(center_coefficient)
    if not center_coefficient >= 0.0:
        raise ValueError(f"center_coefficient: expected a number >= 0, got {center_coefficient}")

    diff = r_chosen - r_rejected
    if margin is not None:
        if isinstance(margin, Tensor):
            try:
                torch.broadcast_shapes(margin.shape, diff.shape)
            except RuntimeError:
                raise ValueError(
                    f"margin: expected a float or a tensor broadcastable to {tuple(diff.shape)}, "
                    f"got shape {tuple(margin.shape)}"
                ) from None
            margin = margin.to(dtype=diff.dtype, device=diff.device)
        diff = diff - margin
    loss = -F.logsigmoid(diff).mean()
    if center_coefficient:
        loss = loss + center_coefficient * torch.mean((r_chosen + r_rejected) ** 2)
    return loss


def logistic(scores: Tensor, labels: Tensor) -> Tensor:
    """Pointwise logistic loss: mean binary cross-entropy of ``σ(score)`` against 0/1 labels.

    ``mean(-y·log σ(s) - (1 - y)·log(1 - σ(s)))``, computed from the logits
    (``binary_cross_entropy_with_logits``) so it is finite for any score.

    Args:
        scores: raw scores (logits), any shape.
        labels: same shape, every value 0 or 1 (bool, int or float tensor).

    Returns:
        A scalar tensor.
    """
    scores = _check_tensor("scores", scores)
    if not isinstance(labels, Tensor):
        raise ValueError(f"labels: expected a torch.Tensor, got {type(labels).__name__}")
    _check_same_shape(("scores", "labels"), scores, labels)
    bad = (labels != 0) & (labels != 1)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0].tolist())
        raise ValueError(f"labels: expected only 0 or 1, got {labels[index].item()} at index {index}")
    return F.binary_cross_entropy_with_logits(scores, labels.to(dtype=scores.dtype))


# --------------------------------------------------------------------------- #
# DPO family
# --------------------------------------------------------------------------- #
def implicit_reward(policy_logps: Tensor, ref_logps: Tensor | None = None, *, beta: float) -> Tensor:
    """DPO implicit reward ``β · (log π(y|x) − log π_ref(y|x))``, detached.

    With ``ref_logps=None`` (reference-free) the reference term is 0, i.e. the
    reward is ``β · log π(y|x)``.
    """
    policy_logps = _check_tensor("policy_logps", policy_logps)
    beta = _check_beta(beta)
    if ref_logps is None:
        return (beta * policy_logps).detach()
    ref_logps = _check_tensor("ref_logps", ref_logps)
    _check_same_shape(("policy_logps", "ref_logps"), policy_logps, ref_logps)
    return (beta * (policy_logps - ref_logps)).detach()


# exp() arguments are clamped below this per dtype in the α-divergence (as TRL does; float64 added here).
_EXP_CLAMP = {torch.float16: 11.0, torch.bfloat16: 80.0, torch.float32: 80.0, torch.float64: 700.0}


def _reverse_kl(u: Tensor, alpha: float) -> Tensor:
    return u


def _forward_kl(u: Tensor, alpha: float) -> Tensor:
    return 1.0 - torch.exp(-u)


def _js_divergence(u: Tensor, alpha: float) -> Tensor:
    return math.log(2.0) + F.logsigmoid(u)


def _alpha_divergence(u: Tensor, alpha: float) -> Tensor:
    if abs(alpha - 1.0) < 1e-6:
        return u
    t = ((alpha - 1.0) * u).clamp(max=_EXP_CLAMP.get(u.dtype, 80.0))
    return torch.expm1(t) / (alpha - 1.0)


#: The f-divergences of f-DPO (Wang et al., 2023, arXiv 2309.16240) by ``f_divergence_type``: ``f'(e^u)`` of the
#: log-ratio ``u`` and α (``f_alpha_divergence_coef``). The one list of their names.
F_DIVERGENCES: Final[Mapping[str, Callable[[Tensor, float], Tensor]]] = MappingProxyType({
    "reverse_kl": _reverse_kl, "forward_kl": _forward_kl, "js_divergence": _js_divergence,
    "alpha_divergence": _alpha_divergence})
#: ``f_divergence_type`` as the CLI sees it (choices read off :data:`F_DIVERGENCES`).
FDivergenceName = Literal[tuple(F_DIVERGENCES)]  # type: ignore[valid-type]


def f_divergence_scores(logratios: Tensor, f_divergence_type: str = "reverse_kl", alpha: float = 0.5) -> Tensor:
    """``f'(π/π_ref)`` of f-DPO (Wang et al., 2023, "Beyond Reverse KL", arXiv 2309.16240) from ``log(π/π_ref)``.

    ``reverse_kl``: ``u`` (standard DPO) · ``forward_kl``: ``1 − e^{−u}`` · ``js_divergence``: ``log 2 + log σ(u)``
    · ``alpha_divergence``: ``(e^{(α−1)u} − 1)/(α−1)`` (``u`` when ``|α − 1| < 1e-6``; the exponent is clamped
    above, at 80 in float32/bf16, 11 in float16, 700 in float64, as TRL does).
    """
    if f_divergence_type not in F_DIVERGENCES:
        raise ValueError(f"f_divergence_type: expected one of {', '.join(map(repr, F_DIVERGENCES))}, "
                         f"got {f_divergence_type!r}")
    return F_DIVERGENCES[f_divergence_type](logratios, float(alpha))


@dataclass(frozen=True)
class PairLogps:
    """What the terms of a batch read (``(B,)`` tensors): the policy and reference log-probs, the log-ratios
    ``u = log π − log π_ref`` (``log π`` when reference-free), their f-divergence scores ``s`` and difference
    ``delta = s_c − s_r``, the implicit rewards ``β·u`` (not detached), and the per-batch inputs some terms need."""

    policy_chosen: Tensor
    policy_rejected: Tensor
    ref_chosen: Tensor | None
    ref_rejected: Tensor | None
    chosen_logratios: Tensor
    rejected_logratios: Tensor
    chosen_scores: Tensor
    rejected_scores: Tensor
    delta: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor
    chosen_lengths: Tensor | None = None
    rejected_lengths: Tensor | None = None
    sft_nll: Tensor | None = None
    bco_delta: Tensor | float = 0.0


#: ε of EXO when ``label_smoothing`` is 0 (the EXO paper's recommendation).
EXO_DEFAULT_EPSILON: Final[float] = 1e-3


def _logistic(x: Tensor, eps: float) -> Tensor:
    """``−(1−ε)·log σ(x) − ε·log σ(−x)`` (ε = 0: plain ``−log σ(x)``)."""
    out = -F.logsigmoid(x) * (1.0 - eps)
    return out - F.logsigmoid(-x) * eps if eps else out


def _check_lengths(name: str, lengths: Tensor | None, like: Tensor) -> Tensor:
    if lengths is None:
        raise ValueError(f"{name}: required by loss_type 'sigmoid_norm' (number of response tokens per pair)")
    if not isinstance(lengths, Tensor) or lengths.shape != like.shape:
        raise ValueError(f"{name}: expected a tensor of shape {tuple(like.shape)}, got "
                         f"{tuple(lengths.shape) if isinstance(lengths, Tensor) else type(lengths).__name__}")
    return lengths.to(dtype=like.dtype, device=like.device).clamp(min=1.0)


# The per-pair losses: see :func:`dpo` for the formulas and the papers.
def _sigmoid(x: PairLogps, loss: DPOLoss) -> Tensor:
    return _logistic(loss.beta * x.delta, loss.label_smoothing)


def _ipo(x: PairLogps, loss: DPOLoss) -> Tensor:
    return (x.delta - 1.0 / (2.0 * loss.beta)) ** 2


def _hinge(x: PairLogps, loss: DPOLoss) -> Tensor:
    return torch.relu(1.0 - loss.beta * x.delta)


def _robust(x: PairLogps, loss: DPOLoss) -> Tensor:
    beta, eps = loss.beta, loss.label_smoothing
    return (-(1.0 - eps) * F.logsigmoid(beta * x.delta) + eps * F.logsigmoid(-beta * x.delta)) / (1.0 - 2.0 * eps)


def _exo_pair(x: PairLogps, loss: DPOLoss) -> Tensor:
    e = loss.label_smoothing or EXO_DEFAULT_EPSILON
    z = loss.beta * x.delta
    return (torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-e))
            + torch.sigmoid(-z) * (F.logsigmoid(-z) - math.log(e)))


def _bco_pair(x: PairLogps, loss: DPOLoss) -> Tensor:
    d = x.bco_delta.to(x.policy_chosen).detach() if isinstance(x.bco_delta, Tensor) else float(x.bco_delta)
    return -F.logsigmoid(x.chosen_rewards - d) - F.logsigmoid(-(x.rejected_rewards - d))


def _sppo_hard(x: PairLogps, loss: DPOLoss) -> Tensor:
    return (x.chosen_logratios - 0.5 / loss.beta) ** 2 + (x.rejected_logratios + 0.5 / loss.beta) ** 2


def _nca_pair(x: PairLogps, loss: DPOLoss) -> Tensor:
    c, r = x.chosen_rewards, x.rejected_rewards
    return -F.logsigmoid(c) - 0.5 * F.logsigmoid(-c) - 0.5 * F.logsigmoid(-r)


def _aot(x: PairLogps, loss: DPOLoss) -> Tensor:
    pc, pr = x.policy_chosen, x.policy_rejected
    ref_margin = (x.ref_chosen - x.ref_rejected) if x.ref_chosen is not None else torch.zeros_like(pc)
    z = torch.sort(pc - pr, dim=0).values - torch.sort(ref_margin, dim=0).values
    return _logistic(loss.beta * z, loss.label_smoothing)


def _aot_unpaired(x: PairLogps, loss: DPOLoss) -> Tensor:
    z = torch.sort(x.chosen_logratios, dim=0).values - torch.sort(x.rejected_logratios, dim=0).values
    return _logistic(loss.beta * z, loss.label_smoothing)


def _apo_zero(x: PairLogps, loss: DPOLoss) -> Tensor:
    return 1.0 - torch.sigmoid(x.chosen_rewards) + torch.sigmoid(x.rejected_rewards)


def _apo_down(x: PairLogps, loss: DPOLoss) -> Tensor:
    return (torch.sigmoid(x.chosen_rewards) + 1.0
            - torch.sigmoid(loss.beta * (x.chosen_logratios - x.rejected_logratios)))


def _discopop(x: PairLogps, loss: DPOLoss) -> Tensor:
    z, tau = loss.beta * x.delta, loss.discopop_tau
    modulation = torch.sigmoid(z / tau)
    # exp(-z)·σ(z/τ) written as exp(-z + log σ(z/τ)): finite where exp(-z) alone overflows
    return -F.logsigmoid(z) * (1.0 - modulation) + torch.exp(-z + F.logsigmoid(z / tau))


def _sigmoid_norm(x: PairLogps, loss: DPOLoss) -> Tensor:
    lc = _check_lengths("chosen_lengths", x.chosen_lengths, x.policy_chosen)
    lr = _check_lengths("rejected_lengths", x.rejected_lengths, x.policy_rejected)
    return -F.logsigmoid(loss.beta * (x.chosen_scores / lc - x.rejected_scores / lr))


def _simpo(x: PairLogps, loss: DPOLoss) -> Tensor:
    margin = x.policy_chosen - x.policy_rejected - loss.simpo_gamma / loss.beta
    return _logistic(loss.beta * margin, loss.label_smoothing)


def _sft(x: PairLogps, loss: DPOLoss) -> Tensor:
    if x.sft_nll is None:
        raise ValueError("sft_nll: required by loss_type 'sft' (mean NLL of the chosen response tokens)")
    pc = x.policy_chosen
    return x.sft_nll.to(pc).expand(pc.shape) if x.sft_nll.dim() == 0 else x.sft_nll.to(pc)


def _check_robust(loss: DPOLoss) -> None:
    if loss.label_smoothing >= 0.5:
        raise ValueError(f"label_smoothing: 'robust' divides by 1 - 2ε and needs ε in [0, 0.5), "
                         f"got {loss.label_smoothing}")


def _check_discopop(loss: DPOLoss) -> None:
    if not loss.discopop_tau > 0.0:
        raise ValueError(f"discopop_tau: expected a number > 0, got {loss.discopop_tau}")


@dataclass(frozen=True)
class DPOTerm:
    """One ``loss_type`` of the DPO family: its per-pair function and what the spec and the model need to know."""

    name: str
    per_pair: Callable[[PairLogps, DPOLoss], Tensor]
    """The per-pair loss ``(B,)`` of a batch (not weighted)."""
    label_smoothing: bool = False
    """Reads ``label_smoothing`` (for the other types a non-zero ε is an error)."""
    f_divergence: bool = False
    """Built on the score difference ``s_c − s_r``: has an f-divergence generalisation (``f_divergence_type``)."""
    reads_reference: bool = True
    """Reads the reference log-probs (a loss whose terms all do not is reference-free: no reference model)."""
    refuses_reference: bool = False
    """Defined without a reference (SimPO): takes no reference log-probs and combines only with terms that read none."""
    length_averaged: bool = False
    """Scores length-averaged log-probs (``average_logps`` is forced on)."""
    needs_lengths: bool = False
    """Reads the response lengths (``chosen_lengths``/``rejected_lengths``): divides by them itself."""
    needs_sft_nll: bool = False
    """Reads ``sft_nll``, the NLL of the chosen response tokens (per-token log-probs)."""
    running_mean: bool = False
    """Reads ``bco_delta``, the running mean of the implicit rewards the caller keeps over training steps."""
    sorts_batch: bool = False
    """Sorts over the pairs of the batch: a pair's loss depends on the other pairs."""
    check: Callable[[DPOLoss], None] | None = None
    """Checks of the spec this type alone needs (one-line ``ValueError``)."""


def _registry(*terms: DPOTerm) -> Mapping[str, DPOTerm]:
    return MappingProxyType({term.name: term for term in terms})


#: The DPO family by ``loss_type`` name: the one list of the names, in the order the errors and the CLI show them.
DPO_LOSSES: Final[Mapping[str, DPOTerm]] = _registry(
    DPOTerm("sigmoid", _sigmoid, label_smoothing=True, f_divergence=True),
    # not f-DPO: TRL applies f to the summed log-ratio and then divides by the length, which `ipo` on the log-probs
    # given (summed or length-averaged) does not reproduce (f is not linear)
    DPOTerm("ipo", _ipo),
    DPOTerm("hinge", _hinge, f_divergence=True),
    DPOTerm("robust", _robust, label_smoothing=True, f_divergence=True, check=_check_robust),
    DPOTerm("exo_pair", _exo_pair, label_smoothing=True, f_divergence=True),
    DPOTerm("bco_pair", _bco_pair, running_mean=True),
    DPOTerm("sppo_hard", _sppo_hard),
    DPOTerm("nca_pair", _nca_pair),
    DPOTerm("aot", _aot, label_smoothing=True, sorts_batch=True),
    DPOTerm("aot_unpaired", _aot_unpaired, label_smoothing=True, sorts_batch=True),
    DPOTerm("apo_zero", _apo_zero),
    DPOTerm("apo_down", _apo_down),
    DPOTerm("discopop", _discopop, f_divergence=True, check=_check_discopop),
    DPOTerm("sigmoid_norm", _sigmoid_norm, f_divergence=True, needs_lengths=True),
    DPOTerm("simpo", _simpo, label_smoothing=True, reads_reference=False, refuses_reference=True,
            length_averaged=True),
    DPOTerm("sft", _sft, f_divergence=True, reads_reference=False, needs_sft_nll=True),
)
#: ``loss_type`` as the CLI sees it (choices read off :data:`DPO_LOSSES`).
DPOLossName = Literal[tuple(DPO_LOSSES)]  # type: ignore[valid-type]


def _names(terms: Sequence[DPOTerm]) -> str:
    return ", ".join(repr(term.name) for term in terms)


def _parse_terms(loss_type: str | Sequence[str]) -> tuple[DPOTerm, ...]:
    names = (loss_type,) if isinstance(loss_type, str) else tuple(loss_type)
    if not names:
        raise ValueError("loss_type: expected a loss name or a non-empty list of them, got an empty list")
    for name in names:
        if name not in DPO_LOSSES:
            raise ValueError(f"loss_type: expected one of {_names(tuple(DPO_LOSSES.values()))}, got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"loss_type: each loss may appear once, got {list(names)}")
    terms = tuple(DPO_LOSSES[name] for name in names)
    for term in terms:
        if term.refuses_reference and any(other.reads_reference for other in terms):
            free = [other for other in DPO_LOSSES.values() if not other.reads_reference and other is not term]
            raise ValueError(f"loss_type: {term.name!r} is reference-free and combines only with {_names(free)}, "
                             f"got {list(names)}")
    return terms


def _parse_weights(loss_weights: Sequence[float] | None, names: tuple[str, ...]) -> tuple[float, ...]:
    if loss_weights is None:
        return (1.0,) * len(names)
    weights = tuple(float(w) for w in loss_weights)
    if len(weights) != len(names):
        raise ValueError(f"loss_weights: expected one weight per loss_type ({len(names)}: {list(names)}), "
                         f"got {len(weights)}")
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"loss_weights: expected finite numbers, got {list(weights)}")
    return weights


def _check_label_smoothing(eps: float, terms: tuple[DPOTerm, ...], shown: str) -> None:
    if not 0.0 <= eps <= 0.5:
        raise ValueError(f"label_smoothing: expected a number in [0, 0.5], got {eps}")
    if eps and not any(term.label_smoothing for term in terms):
        readers = [term for term in DPO_LOSSES.values() if term.label_smoothing]
        raise ValueError(f"label_smoothing: only used by loss_type={_names(readers)}, got {eps} with "
                         f"loss_type={shown}")


def _check_f_divergence(f_divergence_type: str, terms: tuple[DPOTerm, ...]) -> None:
    if f_divergence_type not in F_DIVERGENCES:
        raise ValueError(f"f_divergence_type: expected one of {', '.join(map(repr, F_DIVERGENCES))}, "
                         f"got {f_divergence_type!r}")
    if f_divergence_type != "reverse_kl" and not all(term.f_divergence for term in terms):
        allowed = sorted(term.name for term in DPO_LOSSES.values() if term.f_divergence)
        raise ValueError(f"f_divergence_type={f_divergence_type!r}: only for loss_type in {allowed}, "
                         f"got {[term.name for term in terms]}")


def _check_ld_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"ld_alpha: expected a number in [0, 1], got {alpha}")
    return alpha


def _check_sequence_options(loss: DPOLoss) -> None:
    """WPO, LD-DPO and ``average_logps`` against the types (they shape the log-probs the terms read)."""
    if loss.use_weighting and any(term.sorts_batch for term in loss.terms):
        sorted_names = "/".join(repr(term.name) for term in DPO_LOSSES.values() if term.sorts_batch)
        raise ValueError(f"use_weighting (WPO pair_weights): not defined for {sorted_names}, which sort the pairs "
                         "of the batch")
    if loss.ld_alpha is not None and loss.average_logps:
        raise ValueError("ld_alpha: LD-DPO reweights summed log-probs; it cannot be combined with average_logps: true")
    for term in loss.terms:
        if term.needs_lengths and loss.average_logps:
            raise ValueError(f"loss_type {term.name!r} divides by the response lengths itself; set average_logps: "
                             "false")


@dataclass(frozen=True)
class DPOLoss:
    """A configured loss of the DPO family, validated once, here (one-line ``ValueError``s naming the field).

    The fields are ``litcpt dpo``'s recipe keys (TRL's ``DPOConfig`` names); see :func:`dpo` for the formulas.
    ``loss_type`` keeps its form (a name, or a tuple of names combined as ``Σ w_i · loss_i``), ``loss_weights``
    becomes a tuple (1.0 each when not given) and ``average_logps`` is on when a type always length-averages
    (``simpo``). ``terms`` are the :data:`DPO_LOSSES` entries of ``loss_type``.

    Example::

        >>> from litcpt.losses.preference import DPOLoss
        >>> mpo = DPOLoss(loss_type=("sigmoid", "bco_pair", "sft"), loss_weights=(0.8, 0.2, 1.0))
        >>> mpo.reference_free, mpo.needs_token_logps
        (False, True)
    """

    loss_type: DPOLossName | tuple[DPOLossName, ...] = "sigmoid"
    loss_weights: tuple[float, ...] | None = None
    beta: float = DEFAULT_BETA
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5
    discopop_tau: float = 0.05
    f_divergence_type: FDivergenceName = "reverse_kl"
    f_alpha_divergence_coef: float = 0.5
    use_weighting: bool = False
    """WPO: every term is multiplied by per-pair weights (``pair_weights`` of :func:`dpo_terms`)."""
    ld_alpha: float | None = None
    """LD-DPO: response tokens past the shorter response of a pair count ``ld_alpha`` (None: off)."""
    average_logps: bool = False
    """The terms read length-averaged response log-probs (else summed)."""
    terms: tuple[DPOTerm, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        terms = _parse_terms(self.loss_type)
        names = tuple(term.name for term in terms)
        weights = _parse_weights(self.loss_weights, names)
        beta = _check_beta(self.beta)
        _check_label_smoothing(float(self.label_smoothing), terms, repr(names[0] if len(names) == 1 else list(names)))
        _check_f_divergence(self.f_divergence_type, terms)
        normal = {
            "loss_type": self.loss_type if isinstance(self.loss_type, str) else names,
            "loss_weights": weights,
            "beta": beta,
            "label_smoothing": float(self.label_smoothing),
            "simpo_gamma": float(self.simpo_gamma),
            "discopop_tau": float(self.discopop_tau),
            "f_alpha_divergence_coef": float(self.f_alpha_divergence_coef),
            "use_weighting": bool(self.use_weighting),
            "ld_alpha": None if self.ld_alpha is None else _check_ld_alpha(self.ld_alpha),
            "average_logps": bool(self.average_logps),
            "terms": terms,
        }
        for name, value in normal.items():
            object.__setattr__(self, name, value)
        _check_sequence_options(self)  # average_logps as given: LD-DPO's check reads it before SimPO forces it on
        object.__setattr__(self, "average_logps", self.average_logps or any(t.length_averaged for t in terms))
        for term in terms:
            if term.check is not None:
                term.check(self)

    @property
    def names(self) -> tuple[str, ...]:
        """The ``loss_type`` names, in order (one per weight)."""
        return tuple(term.name for term in self.terms)

    @property
    def shown(self) -> str:
        """``loss_type`` as errors show it: ``'simpo'`` or ``['simpo', 'sft']``."""
        return repr(self.names[0] if len(self.terms) == 1 else list(self.names))

    @property
    def reference_free(self) -> bool:
        """No term reads a reference: no reference model is built or precomputed."""
        return not any(term.reads_reference for term in self.terms)

    @property
    def needs_lengths(self) -> bool:
        return any(term.needs_lengths for term in self.terms)

    @property
    def needs_sft_nll(self) -> bool:
        return any(term.needs_sft_nll for term in self.terms)

    @property
    def running_mean(self) -> bool:
        """A term reads ``bco_delta`` (``bco_pair``): the caller keeps the running mean of the rewards."""
        return any(term.running_mean for term in self.terms)

    @property
    def needs_token_logps(self) -> bool:
        """The loss reads per-token log-probs (the SFT term, WPO weights, LD-DPO), not only their sums."""
        return self.needs_sft_nll or self.use_weighting or self.ld_alpha is not None

    def arguments(self) -> dict[str, Any]:
        """The constructor arguments (``DPOLoss(**loss.arguments()) == loss``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def metadata(self) -> dict[str, Any]:
        """The loss part of a DPO run's ``dpo.json`` (its keys and their order)."""
        return {
            "beta": self.beta,
            "loss_type": self.loss_type if isinstance(self.loss_type, str) else list(self.loss_type),
            "label_smoothing": self.label_smoothing,
            "loss_weights": list(self.loss_weights),
            "average_logps": self.average_logps,
            "reference_free": self.reference_free,
        }


def _pair_logps(loss: DPOLoss, policy: tuple[Tensor, Tensor], ref: tuple[Tensor | None, Tensor | None],
                **inputs: Any) -> PairLogps:
    """The checked tensors of a batch and what the terms read from them (no check of ``loss`` itself)."""
    pc = _check_tensor("policy_chosen_logps", policy[0])
    pr = _check_tensor("policy_rejected_logps", policy[1])
    _check_same_shape(("policy_chosen_logps", "policy_rejected_logps"), pc, pr)
    if (ref[0] is None) != (ref[1] is None):
        raise ValueError(
            "ref_chosen_logps and ref_rejected_logps: expected both tensors or both None (reference-free), "
            "got one of each"
        )
    if ref[0] is None:
        rc = rr = None
        chosen_logratios, rejected_logratios = pc, pr
    else:
        refusing = next((term for term in loss.terms if term.refuses_reference), None)
        if refusing is not None:
            raise ValueError(f"loss_type {refusing.name!r} is reference-free: pass "
                             "ref_chosen_logps=ref_rejected_logps=None")
        rc = _check_tensor("ref_chosen_logps", ref[0])
        rr = _check_tensor("ref_rejected_logps", ref[1])
        _check_same_shape(("policy_chosen_logps", "ref_chosen_logps"), pc, rc)
        _check_same_shape(("policy_rejected_logps", "ref_rejected_logps"), pr, rr)
        chosen_logratios, rejected_logratios = pc - rc, pr - rr
    f_prime, alpha = F_DIVERGENCES[loss.f_divergence_type], loss.f_alpha_divergence_coef
    chosen_scores, rejected_scores = f_prime(chosen_logratios, alpha), f_prime(rejected_logratios, alpha)
    return PairLogps(pc, pr, rc, rr, chosen_logratios, rejected_logratios, chosen_scores, rejected_scores,
                     chosen_scores - rejected_scores, loss.beta * chosen_logratios, loss.beta * rejected_logratios,
                     **inputs)


def dpo_terms(
    loss: DPOLoss,
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None,
    ref_rejected_logps: Tensor | None,
    *,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    sft_nll: Tensor | None = None,
    bco_delta: Tensor | float = 0.0,
    pair_weights: Tensor | None = None,
) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """Per-pair loss of every type of ``loss`` (not weighted by its ``loss_weights``), and the implicit rewards.

    The per-step call: ``loss`` was validated when it was built; only the tensors are checked here. See :func:`dpo`
    for the definitions and the tensor arguments; ``pair_weights`` is given exactly when ``loss.use_weighting``.
    Returns ``(terms, chosen_rewards, rejected_rewards)`` with ``terms[name]`` of the batch shape (already multiplied
    by ``pair_weights`` when given, as TRL's WPO does).
    """
    if (pair_weights is not None) != loss.use_weighting:
        raise ValueError(f"pair_weights: expected per-pair weights exactly when use_weighting is on (WPO), got "
                         f"{'none' if pair_weights is None else 'weights'} with use_weighting={loss.use_weighting}")
    x = _pair_logps(loss, (policy_chosen_logps, policy_rejected_logps), (ref_chosen_logps, ref_rejected_logps),
                    chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths, sft_nll=sft_nll,
                    bco_delta=bco_delta)
    terms: dict[str, Tensor] = {}
    for term in loss.terms:
        value = term.per_pair(x, loss)
        if pair_weights is not None:
            value = value * pair_weights.to(value).detach()
        terms[term.name] = value
    return terms, x.chosen_rewards.detach(), x.rejected_rewards.detach()


def weighted_sum(loss: DPOLoss, terms: Mapping[str, Tensor]) -> Tensor:
    """``Σ w_i · terms[type_i]`` over the types of ``loss`` (the per-pair loss of a combination such as MPO)."""
    first = terms[loss.names[0]]
    return sum((w * terms[name] for name, w in zip(loss.names, loss.loss_weights)), start=torch.zeros_like(first))


def dpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None,
    ref_rejected_logps: Tensor | None,
    *,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    sft_nll: Tensor | None = None,
    bco_delta: Tensor | float = 0.0,
    pair_weights: Tensor | None = None,
    **options: Any,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair losses of the DPO family (TRL ``DPOTrainer``'s ``loss_type`` set) and implicit rewards.

    Builds a :class:`DPOLoss` from ``options`` (its fields; ``use_weighting`` is whether ``pair_weights`` is given)
    and computes it once: code that computes the same loss on many batches builds the :class:`DPOLoss` once and calls
    :func:`dpo_terms` and :func:`weighted_sum`.

    Notation: ``u_c = log π(y_c) − log π_ref(y_c)``, ``u_r`` likewise (``π_ref ≡ 1`` when the reference log-probs
    are ``None``), ``s = f'(e^u)`` the f-divergence score (:func:`f_divergence_scores`; ``s = u`` for the default
    reverse KL), ``d = s_c − s_r`` and ``ε`` = ``label_smoothing``. Per pair:

    * ``sigmoid`` — DPO (Rafailov et al., 2023, arXiv 2305.18290), with cDPO label smoothing:
      ``−(1−ε)·log σ(βd) − ε·log σ(−βd)``
    * ``ipo`` — IPO (Azar et al., 2023, arXiv 2310.12036): ``(d − 1/(2β))²`` on the log-probs passed (pass
      length-averaged log-probs for TRL ≥ 0.29's length-normalised IPO)
    * ``hinge`` — SLiC (Zhao et al., 2023, arXiv 2305.10425): ``max(0, 1 − βd)``
    * ``robust`` — rDPO (Chowdhury et al., 2024, arXiv 2403.00409), unbiased under label-flip rate ε < 0.5:
      ``[−(1−ε)·log σ(βd) + ε·log σ(−βd)] / (1 − 2ε)``
    * ``exo_pair`` — EXO (Ji et al., 2024, arXiv 2402.00856), reverse KL to the smoothed label
      ``[1−ε, ε]`` (ε = 1e-3 when ``label_smoothing`` is 0):
      ``σ(βd)·(log σ(βd) − log(1−ε)) + σ(−βd)·(log σ(−βd) − log ε)``
    * ``nca_pair`` — NCA (Chen et al., 2024, arXiv 2402.05369):
      ``−log σ(βu_c) − ½ log σ(−βu_c) − ½ log σ(−βu_r)``
    * ``bco_pair`` — BCO (Jung et al., 2024, arXiv 2404.04656), ``δ`` = ``bco_delta`` (the running mean of the
      rewards, kept by the caller; TRL ≥ 1.0 uses δ = 0): ``−log σ(βu_c − δ) − log σ(−(βu_r − δ))``
    * ``sppo_hard`` — SPPO with hard labels (Wu et al., 2024, arXiv 2405.00675):
      ``(u_c − 1/(2β))² + (u_r + 1/(2β))²``
    * ``aot`` / ``aot_unpaired`` — AOT (Melnyk et al., 2024, arXiv 2406.05882): the sigmoid loss on
      ``sort(log π_c − log π_r) − sort(log π_ref,c − log π_ref,r)``, resp. ``sort(u_c) − sort(u_r)``, sorted over
      the batch (dim 0): a pair's loss depends on the whole batch (see docs/dpo.md for DDP/FSDP).
    * ``apo_zero`` / ``apo_down`` — APO (D'Oosterlinck et al., 2024, arXiv 2408.06266):
      ``1 − σ(βu_c) + σ(βu_r)``, resp. ``σ(βu_c) + 1 − σ(β(u_c − u_r))``
    * ``discopop`` — DiscoPOP (Chan Lu et al., 2024, arXiv 2406.08414), ``x = βd``, ``m = σ(x/τ)``
      (τ = ``discopop_tau``): ``−log σ(x)·(1 − m) + e^{−x}·m``
    * ``sigmoid_norm`` — length-normalised sigmoid (SimPO's normalisation, with a reference, no γ):
      ``−log σ(β(s_c/|y_c| − s_r/|y_r|))`` with ``|y|`` = ``chosen_lengths`` / ``rejected_lengths``
    * ``simpo`` — SimPO (Meng et al., 2024, arXiv 2405.14734), reference-free, as TRL's
      ``CPOTrainer(loss_type="simpo")``: ``−(1−ε)·log σ(β(log π_c − log π_r) − γ) − ε·log σ(−(…))`` with
      ``γ`` = ``simpo_gamma``; pass length-averaged log-probs and no reference
    * ``sft`` — the NLL term of RPO (Pang et al., 2024, arXiv 2404.19733) / MPO: ``sft_nll`` (the mean NLL of the
      chosen response tokens of the batch) for every pair

    Args:
        policy_chosen_logps, policy_rejected_logps: response log-probs under the policy, ``(B,)``.
        ref_chosen_logps, ref_rejected_logps: the same under the reference, or both ``None`` (reference-free).
        chosen_lengths, rejected_lengths: response lengths ``(B,)`` (``sigmoid_norm``).
        sft_nll: the mean NLL of the chosen response tokens of the batch (``sft``).
        bco_delta: δ of ``bco_pair``.
        pair_weights: per-pair weights multiplying every term (WPO's ``w_c·w_r``, see :func:`wpo_weights`).
        **options: the fields of :class:`DPOLoss`: ``loss_type`` (a name of :data:`DPO_LOSSES`, or a list of them
            combined as ``Σ w_i · loss_i``, e.g. MPO = ``["sigmoid", "bco_pair", "sft"]`` with ``loss_weights``
            ``[0.8, 0.2, 1.0]``; RPO = ``["sigmoid", "sft"]``), ``loss_weights`` (1.0 each), ``beta`` (0.1),
            ``label_smoothing`` (ε in ``[0, 0.5]``, only for the types that read it), ``discopop_tau`` (0.05),
            ``simpo_gamma`` (0.5), ``f_divergence_type`` (``"reverse_kl"``), ``f_alpha_divergence_coef`` (0.5).

    Returns:
        ``(losses, chosen_rewards, rejected_rewards)``: ``losses`` has the batch shape and is *not* reduced (its
        mean is TRL's loss); the rewards are ``β·u_c``, ``β·u_r`` (``β log π`` when reference-free), detached.
    """
    loss = DPOLoss(**{"use_weighting": pair_weights is not None, **options})
    terms, chosen_rewards, rejected_rewards = dpo_terms(
        loss, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
        chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths, sft_nll=sft_nll, bco_delta=bco_delta,
        pair_weights=pair_weights)
    return weighted_sum(loss, terms), chosen_rewards, rejected_rewards


# --------------------------------------------------------------------------- #
# token-level helpers of the DPO variants (per-token log-probs in, per-row out)
# --------------------------------------------------------------------------- #
def sft_nll(per_token_logps: Tensor, mask: Tensor) -> Tensor:
    """Mean NLL over the masked tokens of the whole batch (the ``sft`` term: token-weighted, as TRL's)."""
    mask = mask.bool()
    return -per_token_logps[mask].mean() if bool(mask.any()) else per_token_logps.sum() * 0.0


def wpo_weights(per_token_logps: Tensor, log_sum_sq_probs: Tensor, mask: Tensor) -> Tensor:
    """WPO weights (Zhou et al., 2024, arXiv 2406.11827, Eq. 2) of each row, detached:
    ``exp(mean_t [log p(y_t) − log Σ_v p(v)²])`` over the masked tokens. A pair's weight is the product of its
    chosen and rejected rows' weights."""
    mask = mask.to(per_token_logps.dtype)
    with torch.no_grad():
        aligned = (per_token_logps - log_sum_sq_probs) * mask
        return torch.exp(aligned.sum(-1) / mask.sum(-1).clamp_min(1.0))


def ld_logps(per_token_logps: Tensor, mask: Tensor, alpha: float) -> Tensor:
    """LD-DPO (Liu et al., 2024, arXiv 2409.06411) sequence log-probs of ``2B`` rows (chosen rows first): the
    first ``min(|y_c|, |y_r|)`` response tokens of both responses of a pair count fully, the rest by ``alpha``.
    ``alpha = 1`` is the plain sum; ``alpha = 0`` keeps only the shared length."""
    alpha = _check_ld_alpha(alpha)
    m = mask.long()
    position = m.cumsum(-1)
    lengths = m.sum(-1)
    half = lengths.shape[0] // 2
    shared = torch.minimum(lengths[:half], lengths[half:]).repeat(2).unsqueeze(-1)
    shared_mask = (position > 0) & (position <= shared) & mask.bool()
    tail_mask = (position > shared) & mask.bool()
    zero = torch.zeros((), dtype=per_token_logps.dtype, device=per_token_logps.device)
    return (torch.where(shared_mask, per_token_logps, zero).sum(-1)
            + alpha * torch.where(tail_mask, per_token_logps, zero).sum(-1))


def running_mean_update(mean: Tensor, count: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
    """One step of the running mean that ``bco_pair`` uses as δ (TRL's ``RunningMoments`` fed one batch mean per
    step): ``count + 1``, ``mean + (value − mean)/(count + 1)``. Returns new tensors (``value`` detached)."""
    value = value.detach().to(mean)
    new_count = count + 1
    return mean + (value - mean) / new_count.to(mean), new_count
