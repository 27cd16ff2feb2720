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

One module on purpose: one job (pairwise preference losses as pure tensor functions), one dispatcher
(:func:`dpo_terms`) over the whole family; the size is the number of published variants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_BETA",
    "DPO_LOSS_TYPES",
    "F_DIVERGENCE_TYPES",
    "bradley_terry",
    "dpo",
    "dpo_terms",
    "f_divergence_scores",
    "implicit_reward",
    "ld_logps",
    "logistic",
    "parse_loss_types",
    "running_mean_update",
    "sft_nll",
    "wpo_weights",
]

DEFAULT_BETA: Final[float] = 0.1
"""β of the DPO family when none is given: the one default of the losses, ``litcpt dpo`` and ``litcpt rewardbench``."""

#: Loss types accepted by :func:`dpo`.
DPO_LOSS_TYPES: Final[tuple[str, ...]] = (
    "sigmoid", "ipo", "hinge", "robust", "exo_pair", "bco_pair", "sppo_hard", "nca_pair", "aot", "aot_unpaired",
    "apo_zero", "apo_down", "discopop", "sigmoid_norm", "simpo", "sft")


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


#: f-divergences of f-DPO (Wang et al., 2023, arXiv 2309.16240) accepted by :func:`dpo` (``f_divergence_type``).
F_DIVERGENCE_TYPES: Final[tuple[str, ...]] = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
#: Loss types built on the chosen − rejected score difference: the only ones with an f-divergence generalisation.
F_DIVERGENCE_LOSS_TYPES: Final[frozenset[str]] = frozenset(
    {"sigmoid", "sigmoid_norm", "hinge", "ipo", "exo_pair", "robust", "discopop", "sft"})
#: Loss types that read ``label_smoothing``.
LABEL_SMOOTHING_LOSS_TYPES: Final[tuple[str, ...]] = ("sigmoid", "robust", "exo_pair", "aot", "aot_unpaired", "simpo")
#: Loss types that never read a reference model (SimPO; the SFT term).
REFERENCE_FREE_LOSS_TYPES: Final[frozenset[str]] = frozenset({"simpo", "sft"})
#: Loss types that need the response lengths (``chosen_lengths`` / ``rejected_lengths``).
LENGTH_LOSS_TYPES: Final[frozenset[str]] = frozenset({"sigmoid_norm"})
#: Loss types that sort over the batch: a pair's loss depends on the other pairs of the batch.
BATCH_SORTED_LOSS_TYPES: Final[frozenset[str]] = frozenset({"aot", "aot_unpaired"})
#: ε of EXO when ``label_smoothing`` is 0 (the EXO paper's recommendation).
EXO_DEFAULT_EPSILON: Final[float] = 1e-3

# exp() arguments are clamped below this per dtype in the α-divergence (as TRL does; float64 added here).
_EXP_CLAMP = {torch.float16: 11.0, torch.bfloat16: 80.0, torch.float32: 80.0, torch.float64: 700.0}


def parse_loss_types(loss_type: str | Sequence[str], loss_weights: Sequence[float] | None = None
                     ) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Normalise ``loss_type`` (one name or a list) and ``loss_weights`` (default: 1.0 each); one-line errors."""
    types = (loss_type,) if isinstance(loss_type, str) else tuple(loss_type)
    if not types:
        raise ValueError("loss_type: expected a loss name or a non-empty list of them, got an empty list")
    for name in types:
        if name not in DPO_LOSS_TYPES:
            raise ValueError(f"loss_type: expected one of {', '.join(map(repr, DPO_LOSS_TYPES))}, got {name!r}")
    if len(set(types)) != len(types):
        raise ValueError(f"loss_type: each loss may appear once, got {list(types)}")
    if loss_weights is None:
        weights = (1.0,) * len(types)
    else:
        weights = tuple(float(w) for w in loss_weights)
        if len(weights) != len(types):
            raise ValueError(f"loss_weights: expected one weight per loss_type ({len(types)}: {list(types)}), "
                             f"got {len(weights)}")
        if not all(math.isfinite(w) for w in weights):
            raise ValueError(f"loss_weights: expected finite numbers, got {list(weights)}")
    if "simpo" in types and not set(types) <= REFERENCE_FREE_LOSS_TYPES:
        raise ValueError(f"loss_type: 'simpo' is reference-free and combines only with 'sft', got {list(types)}")
    return types, weights


def f_divergence_scores(logratios: Tensor, f_divergence_type: str = "reverse_kl", alpha: float = 0.5) -> Tensor:
    """``f'(π/π_ref)`` of f-DPO (Wang et al., 2023, "Beyond Reverse KL", arXiv 2309.16240) from ``log(π/π_ref)``.

    ``reverse_kl``: ``u`` (standard DPO) · ``forward_kl``: ``1 − e^{−u}`` · ``js_divergence``: ``log 2 + log σ(u)``
    · ``alpha_divergence``: ``(e^{(α−1)u} − 1)/(α−1)`` (``u`` when ``|α − 1| < 1e-6``; the exponent is clamped
    above, at 80 in float32/bf16, 11 in float16, 700 in float64, as TRL does).
    """
    if f_divergence_type == "reverse_kl":
        return logratios
    if f_divergence_type == "forward_kl":
        return 1.0 - torch.exp(-logratios)
    if f_divergence_type == "js_divergence":
        return math.log(2.0) + F.logsigmoid(logratios)
    if f_divergence_type == "alpha_divergence":
        alpha = float(alpha)
        if abs(alpha - 1.0) < 1e-6:
            return logratios
        t = ((alpha - 1.0) * logratios).clamp(max=_EXP_CLAMP.get(logratios.dtype, 80.0))
        return torch.expm1(t) / (alpha - 1.0)
    raise ValueError(f"f_divergence_type: expected one of {', '.join(map(repr, F_DIVERGENCE_TYPES))}, "
                     f"got {f_divergence_type!r}")


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


def dpo_terms(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None,
    ref_rejected_logps: Tensor | None,
    *,
    beta: float = DEFAULT_BETA,
    loss_type: str | Sequence[str] = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    sft_nll: Tensor | None = None,
    bco_delta: Tensor | float = 0.0,
    discopop_tau: float = 0.05,
    simpo_gamma: float = 0.5,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
    pair_weights: Tensor | None = None,
) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """Per-pair loss of every type in ``loss_type`` (not weighted by ``loss_weights``), and the implicit rewards.

    See :func:`dpo` for the definitions and arguments. Returns ``(terms, chosen_rewards, rejected_rewards)`` with
    ``terms[name]`` of the batch shape (already multiplied by ``pair_weights`` when given, as TRL's WPO does).
    """
    types, _ = parse_loss_types(loss_type)
    beta = _check_beta(beta)
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 0.5:
        raise ValueError(f"label_smoothing: expected a number in [0, 0.5], got {eps}")
    if eps and not set(types) & set(LABEL_SMOOTHING_LOSS_TYPES):
        raise ValueError(f"label_smoothing: only used by loss_type="
                         f"{', '.join(map(repr, LABEL_SMOOTHING_LOSS_TYPES))}, got {eps} with loss_type="
                         f"{types[0] if len(types) == 1 else list(types)!r}")
    if "robust" in types and eps >= 0.5:
        raise ValueError(f"label_smoothing: 'robust' divides by 1 - 2ε and needs ε in [0, 0.5), got {eps}")
    if f_divergence_type not in F_DIVERGENCE_TYPES:
        raise ValueError(f"f_divergence_type: expected one of {', '.join(map(repr, F_DIVERGENCE_TYPES))}, "
                         f"got {f_divergence_type!r}")
    if f_divergence_type != "reverse_kl" and not set(types) <= F_DIVERGENCE_LOSS_TYPES:
        raise ValueError(f"f_divergence_type={f_divergence_type!r}: only for loss_type in "
                         f"{sorted(F_DIVERGENCE_LOSS_TYPES)}, got {list(types)}")
    if "discopop" in types and not float(discopop_tau) > 0.0:
        raise ValueError(f"discopop_tau: expected a number > 0, got {discopop_tau}")
    if pair_weights is not None and set(types) & BATCH_SORTED_LOSS_TYPES:
        raise ValueError("pair_weights (WPO, use_weighting): not defined for 'aot'/'aot_unpaired', which sort the "
                         "pairs of the batch")

    pc = _check_tensor("policy_chosen_logps", policy_chosen_logps)
    pr = _check_tensor("policy_rejected_logps", policy_rejected_logps)
    _check_same_shape(("policy_chosen_logps", "policy_rejected_logps"), pc, pr)
    if (ref_chosen_logps is None) != (ref_rejected_logps is None):
        raise ValueError(
            "ref_chosen_logps and ref_rejected_logps: expected both tensors or both None (reference-free), "
            "got one of each"
        )
    if ref_chosen_logps is None:
        rc = rr = None
        chosen_logratios, rejected_logratios = pc, pr
    else:
        if "simpo" in types:
            raise ValueError("loss_type 'simpo' is reference-free: pass ref_chosen_logps=ref_rejected_logps=None")
        rc = _check_tensor("ref_chosen_logps", ref_chosen_logps)
        rr = _check_tensor("ref_rejected_logps", ref_rejected_logps)
        _check_same_shape(("policy_chosen_logps", "ref_chosen_logps"), pc, rc)
        _check_same_shape(("policy_rejected_logps", "ref_rejected_logps"), pr, rr)
        chosen_logratios, rejected_logratios = pc - rc, pr - rr

    chosen_scores = f_divergence_scores(chosen_logratios, f_divergence_type, f_alpha_divergence_coef)
    rejected_scores = f_divergence_scores(rejected_logratios, f_divergence_type, f_alpha_divergence_coef)
    delta = chosen_scores - rejected_scores
    cr_beta, rr_beta = beta * chosen_logratios, beta * rejected_logratios

    terms: dict[str, Tensor] = {}
    for name in types:
        if name == "sigmoid":
            term = _logistic(beta * delta, eps)
        elif name == "hinge":
            term = torch.relu(1.0 - beta * delta)
        elif name == "ipo":
            term = (delta - 1.0 / (2.0 * beta)) ** 2
        elif name == "robust":
            term = (-(1.0 - eps) * F.logsigmoid(beta * delta) + eps * F.logsigmoid(-beta * delta)) / (1.0 - 2.0 * eps)
        elif name == "exo_pair":
            e = eps or EXO_DEFAULT_EPSILON
            x = beta * delta
            term = (torch.sigmoid(x) * (F.logsigmoid(x) - math.log1p(-e))
                    + torch.sigmoid(-x) * (F.logsigmoid(-x) - math.log(e)))
        elif name == "nca_pair":
            term = -F.logsigmoid(cr_beta) - 0.5 * F.logsigmoid(-cr_beta) - 0.5 * F.logsigmoid(-rr_beta)
        elif name == "bco_pair":
            d = bco_delta.to(pc).detach() if isinstance(bco_delta, Tensor) else float(bco_delta)
            term = -F.logsigmoid(cr_beta - d) - F.logsigmoid(-(rr_beta - d))
        elif name == "sppo_hard":
            term = (chosen_logratios - 0.5 / beta) ** 2 + (rejected_logratios + 0.5 / beta) ** 2
        elif name == "aot":
            ref_margin = (rc - rr) if rc is not None else torch.zeros_like(pc)
            x = torch.sort(pc - pr, dim=0).values - torch.sort(ref_margin, dim=0).values
            term = _logistic(beta * x, eps)
        elif name == "aot_unpaired":
            x = torch.sort(chosen_logratios, dim=0).values - torch.sort(rejected_logratios, dim=0).values
            term = _logistic(beta * x, eps)
        elif name == "apo_zero":
            term = 1.0 - torch.sigmoid(cr_beta) + torch.sigmoid(rr_beta)
        elif name == "apo_down":
            term = torch.sigmoid(cr_beta) + 1.0 - torch.sigmoid(beta * (chosen_logratios - rejected_logratios))
        elif name == "discopop":
            x = beta * delta
            modulation = torch.sigmoid(x / float(discopop_tau))
            # exp(-x)·σ(x/τ) written as exp(-x + log σ(x/τ)): finite where exp(-x) alone overflows
            term = -F.logsigmoid(x) * (1.0 - modulation) + torch.exp(-x + F.logsigmoid(x / float(discopop_tau)))
        elif name == "sigmoid_norm":
            lc = _check_lengths("chosen_lengths", chosen_lengths, pc)
            lr = _check_lengths("rejected_lengths", rejected_lengths, pr)
            term = -F.logsigmoid(beta * (chosen_scores / lc - rejected_scores / lr))
        elif name == "simpo":
            term = _logistic(beta * (pc - pr - float(simpo_gamma) / beta), eps)
        else:  # "sft"
            if sft_nll is None:
                raise ValueError("sft_nll: required by loss_type 'sft' (mean NLL of the chosen response tokens)")
            term = sft_nll.to(pc).expand(pc.shape) if sft_nll.dim() == 0 else sft_nll.to(pc)
        if pair_weights is not None:
            term = term * pair_weights.to(term).detach()
        terms[name] = term

    return terms, cr_beta.detach(), rr_beta.detach()


def dpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None,
    ref_rejected_logps: Tensor | None,
    *,
    loss_type: str | Sequence[str] = "sigmoid",
    loss_weights: Sequence[float] | None = None,
    **options: Any,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair losses of the DPO family (TRL ``DPOTrainer``'s ``loss_type`` set) and implicit rewards.

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
        beta: β > 0 (default 0.1; keyword, passed on to :func:`dpo_terms` with the other options).
        loss_type: one of :data:`DPO_LOSS_TYPES`, or a list of them combined as ``Σ w_i · loss_i``
            (e.g. MPO = ``["sigmoid", "bco_pair", "sft"]`` with weights ``[0.8, 0.2, 1.0]``; RPO =
            ``["sigmoid", "sft"]``).
        label_smoothing: ε in ``[0, 0.5]`` (default 0), for the types in :data:`LABEL_SMOOTHING_LOSS_TYPES` (an error
        for others).
        loss_weights: one weight per loss type (default 1.0 each).
        **options: ``chosen_lengths``, ``rejected_lengths`` (``sigmoid_norm``), ``sft_nll`` (``sft``),
            ``bco_delta`` (``bco_pair``), ``discopop_tau`` (0.05), ``simpo_gamma`` (0.5),
            ``f_divergence_type`` (``"reverse_kl"``), ``f_alpha_divergence_coef`` (0.5), ``pair_weights``
            (per-pair weights multiplying every term: WPO's ``w_c·w_r``, see :func:`wpo_weights`).

    Returns:
        ``(losses, chosen_rewards, rejected_rewards)``: ``losses`` has the batch shape and is *not* reduced (its
        mean is TRL's loss); the rewards are ``β·u_c``, ``β·u_r`` (``β log π`` when reference-free), detached.
    """
    types, weights = parse_loss_types(loss_type, loss_weights)
    terms, chosen_rewards, rejected_rewards = dpo_terms(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, loss_type=types, **options)
    losses = sum((w * terms[name] for name, w in zip(types, weights)), start=torch.zeros_like(terms[types[0]]))
    return losses, chosen_rewards, rejected_rewards


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
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"ld_alpha: expected a number in [0, 1], got {alpha}")
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
