"""Closed forms and edge cases of the DPO loss family in litcpt.losses.preference (TRL agreement:
test_dpo_losses_trl.py)."""

from __future__ import annotations

import math

import pytest
import torch

from litcpt.losses import preference as losses
from litcpt.losses.preference import dpo

LOG2 = math.log(2.0)
REF_FREE = {"simpo"}


def _t(*values: float, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad)


def _options(n: int = 1) -> dict:
    return {
        "chosen_lengths": torch.full((n,), 4.0, dtype=torch.float64),
        "rejected_lengths": torch.full((n,), 4.0, dtype=torch.float64),
        "sft_nll": _t(0.75),
    }


def _call(loss_type, pc, pr, rc, rr, **kwargs):
    if loss_type in REF_FREE:
        rc = rr = None
    return dpo(pc, pr, rc, rr, loss_type=loss_type, **{**_options(pc.numel()), **kwargs})


# ------------------------------------------------------------------------------------- zero log-ratios
@pytest.mark.parametrize(
    ("loss_type", "beta", "want"),
    [
        ("sigmoid", 0.1, LOG2),
        ("robust", 0.1, LOG2),
        ("nca_pair", 0.1, 2 * LOG2),
        ("bco_pair", 0.3, 2 * LOG2),
        ("sppo_hard", 0.25, 2 * 2.0**2),
        ("apo_zero", 0.1, 1.0),
        ("apo_down", 0.1, 1.0),
        ("discopop", 0.1, 0.5 * LOG2 + 0.5),
        ("sigmoid_norm", 0.1, LOG2),
        ("aot", 0.1, LOG2),
        ("aot_unpaired", 0.1, LOG2),
        ("ipo", 0.25, 4.0),
        ("hinge", 0.1, 1.0),
        ("sft", 0.1, 0.75),
        ("exo_pair", 0.1, -LOG2 - 0.5 * math.log(1e-3 * (1 - 1e-3))),
    ],
)
def test_closed_forms_at_zero_log_ratios(loss_type, beta, want):
    got, cr, rr = _call(loss_type, _t(-3.0), _t(-5.0), _t(-3.0), _t(-5.0), beta=beta)
    assert got.item() == pytest.approx(want, rel=1e-12)
    assert cr.item() == 0.0 and rr.item() == 0.0


def test_closed_forms_off_zero():
    # u_c = 2, u_r = -1, beta = 0.5
    args = (_t(-1.0), _t(-6.0), _t(-3.0), _t(-5.0))
    sig = lambda x: 1 / (1 + math.exp(-x))
    assert _call("apo_zero", *args, beta=0.5)[0].item() == pytest.approx(1 - sig(1.0) + sig(-0.5), rel=1e-12)
    assert _call("apo_down", *args, beta=0.5)[0].item() == pytest.approx(sig(1.0) + 1 - sig(1.5), rel=1e-12)
    assert _call("sppo_hard", *args, beta=0.5)[0].item() == pytest.approx((2 - 1) ** 2 + (-1 + 1) ** 2, rel=1e-12)
    assert _call("nca_pair", *args, beta=0.5)[0].item() == pytest.approx(
        -math.log(sig(1.0)) - 0.5 * math.log(sig(-1.0)) - 0.5 * math.log(sig(0.5)), rel=1e-12
    )
    # bco_pair with delta = 0.25
    assert _call("bco_pair", *args, beta=0.5, bco_delta=0.25)[0].item() == pytest.approx(
        -math.log(sig(0.75)) - math.log(sig(0.75)), rel=1e-12
    )
    # sigmoid_norm divides the log-ratios by the lengths: h = 2/4 - (-1)/2 = 1
    got = dpo(*args, beta=0.5, loss_type="sigmoid_norm", chosen_lengths=_t(4.0), rejected_lengths=_t(2.0))[0]
    assert got.item() == pytest.approx(-math.log(sig(0.5)), rel=1e-12)
    # SimPO: -log σ(β(π_c − π_r) − γ)
    got, cr, _ = dpo(_t(-1.0), _t(-2.0), None, None, beta=2.0, loss_type="simpo", simpo_gamma=0.5)
    assert got.item() == pytest.approx(-math.log(sig(1.5)), rel=1e-12)
    assert cr.item() == pytest.approx(-2.0)


def test_robust_and_exo_epsilon_edges():
    args = (_t(-1.0, -4.0), _t(-3.0, -2.0), _t(-2.0, -2.0), _t(-2.0, -2.0))
    # ε = 0: robust and sigmoid coincide
    torch.testing.assert_close(_call("robust", *args)[0], _call("sigmoid", *args)[0])
    # robust is unbiased: E over flips with rate ε of the robust loss is the clean loss
    eps = 0.2
    flipped = (args[1], args[0], args[3], args[2])
    mix = (1 - eps) * _call("robust", *args, label_smoothing=eps)[0] + eps * _call(
        "robust", *flipped, label_smoothing=eps
    )[0]
    torch.testing.assert_close(mix, _call("sigmoid", *args)[0])
    with pytest.raises(ValueError, match=r"1 - 2ε"):
        losses.DPOLoss(loss_type="robust", label_smoothing=0.5)
    # exo_pair: ε = 0 means the paper's 1e-3
    torch.testing.assert_close(_call("exo_pair", *args)[0], _call("exo_pair", *args, label_smoothing=1e-3)[0])
    # exo_pair is a KL divergence: >= 0, and 0 where σ(βh) = 1 − ε
    x = math.log((1 - 0.2) / 0.2)  # σ(x) = 0.8
    got = dpo(_t(x), _t(0.0), None, None, beta=1.0, loss_type="exo_pair", label_smoothing=0.2)[0]
    assert got.item() == pytest.approx(0.0, abs=1e-12)
    assert (_call("exo_pair", *args, label_smoothing=0.2)[0] >= 0).all()


@pytest.mark.parametrize("big", [1e4, -1e4])
@pytest.mark.parametrize("loss_type", [t for t in losses.DPO_LOSSES if t != "sft"])
def test_finite_losses_and_gradients_for_extreme_log_ratios(big, loss_type):
    pc = torch.tensor([big], dtype=torch.float64, requires_grad=True)
    zero = torch.tensor([0.0], dtype=torch.float64)
    got, cr, rr = _call(loss_type, pc, zero, zero, zero, beta=0.1)
    got.sum().backward()
    for t in (got, cr, rr, pc.grad):
        assert torch.isfinite(t).all(), loss_type


@pytest.mark.parametrize(
    "loss_type",
    [
        "sigmoid",
        "ipo",
        "hinge",
        "robust",
        "exo_pair",
        "nca_pair",
        "bco_pair",
        "sppo_hard",
        "apo_zero",
        "sigmoid_norm",
        "simpo",
    ],
)
def test_gradients_raise_chosen_and_lower_rejected(loss_type):
    # (not discopop: it is non-convex, and at h = 0 with τ = 0.05 its gradient points the other way)
    pc, pr = _t(-5.0, -6.0, requires_grad=True), _t(-5.0, -6.0, requires_grad=True)
    got, cr, _ = _call(loss_type, pc, pr, _t(-5.0, -6.0), _t(-5.0, -6.0), beta=0.1)
    got.sum().backward()
    assert (pc.grad < 0).all() and (pr.grad > 0).all()
    assert not cr.requires_grad


def test_apo_down_lowers_the_chosen_likelihood_when_ahead():
    # APO-down: once the chosen log-ratio is above the rejected one, the loss pushes the chosen likelihood down
    pc = _t(-4.0, requires_grad=True)
    dpo(pc, _t(-8.0), _t(-5.0), _t(-5.0), beta=0.5, loss_type="apo_down")[0].sum().backward()
    assert pc.grad.item() > 0


def test_aot_sorts_over_the_batch():
    pc, pr = _t(-1.0, -5.0, -2.0), _t(-3.0, -2.0, -4.0)
    rc, rr = _t(-2.0, -2.0, -3.0), _t(-2.5, -1.0, -2.0)
    got = dpo(pc, pr, rc, rr, beta=0.5, loss_type="aot")[0]
    want = dpo(
        torch.sort(pc - pr).values,
        torch.zeros(3, dtype=torch.float64),
        torch.sort(rc - rr).values,
        torch.zeros(3, dtype=torch.float64),
        beta=0.5,
    )[0]
    torch.testing.assert_close(got, want)
    perm = torch.tensor([2, 0, 1])
    assert dpo(pc[perm], pr[perm], rc[perm], rr[perm], beta=0.5, loss_type="aot")[0].mean().item() == pytest.approx(
        got.mean().item(), rel=1e-12
    )
    # one pair: AOT is DPO
    torch.testing.assert_close(
        dpo(pc[:1], pr[:1], rc[:1], rr[:1], beta=0.5, loss_type="aot")[0],
        dpo(pc[:1], pr[:1], rc[:1], rr[:1], beta=0.5)[0],
    )


def test_combinations_are_weighted_sums():
    args = (_t(-1.0, -4.0), _t(-3.0, -2.0), _t(-2.0, -2.5), _t(-2.0, -1.5))
    opts = _options(2)
    mpo = dpo(*args, beta=0.5, loss_type=["sigmoid", "bco_pair", "sft"], loss_weights=[0.8, 0.2, 1.0], **opts)[0]
    parts, _, _ = losses.dpo_terms(losses.DPOLoss(beta=0.5, loss_type=("sigmoid", "bco_pair", "sft")), *args, **opts)
    torch.testing.assert_close(mpo, 0.8 * parts["sigmoid"] + 0.2 * parts["bco_pair"] + 0.75)
    torch.testing.assert_close(parts["sigmoid"], dpo(*args, beta=0.5)[0])
    rpo = dpo(*args, beta=0.5, loss_type=["sigmoid", "sft"], **opts)[0]
    torch.testing.assert_close(rpo, parts["sigmoid"] + 0.75)


def test_f_divergence_scores():
    u = _t(-2.0, 0.0, 1.5)
    torch.testing.assert_close(losses.f_divergence_scores(u, "reverse_kl"), u)
    torch.testing.assert_close(losses.f_divergence_scores(u, "forward_kl"), 1 - torch.exp(-u))
    torch.testing.assert_close(
        losses.f_divergence_scores(u, "js_divergence"), torch.log(2 * torch.exp(u) / (1 + torch.exp(u)))
    )
    torch.testing.assert_close(losses.f_divergence_scores(u, "alpha_divergence", 1.0), u)
    torch.testing.assert_close(losses.f_divergence_scores(u, "alpha_divergence", 0.5), (torch.exp(-0.5 * u) - 1) / -0.5)
    # every f' is 0 at u = 0 except... all of them: f'(1) = 0 for these generators
    for f in losses.F_DIVERGENCES:
        assert losses.f_divergence_scores(_t(0.0), f).item() == pytest.approx(0.0, abs=1e-12)


def test_token_helpers():
    per_token = _t(-1.0, -2.0, -3.0, 0.0, -0.5, -0.5, 0.0, 0.0).view(2, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    # LD-DPO: shared length 2; chosen tail -3 weighted by alpha
    torch.testing.assert_close(losses.ld_logps(per_token, mask, 1.0), _t(-6.0, -1.0))
    torch.testing.assert_close(losses.ld_logps(per_token, mask, 0.0), _t(-3.0, -1.0))
    torch.testing.assert_close(losses.ld_logps(per_token, mask, 0.5), _t(-4.5, -1.0))
    with pytest.raises(ValueError, match="ld_alpha"):
        losses.ld_logps(per_token, mask, 1.5)
    # SFT: token-weighted mean NLL of the masked tokens
    assert losses.sft_nll(per_token, mask).item() == pytest.approx(7.0 / 5.0)
    # WPO: a uniform distribution over V tokens has log p = log Σ p² = -log V: weight 1
    v = math.log(50.0)
    w = losses.wpo_weights(
        torch.full((2, 4), -v, dtype=torch.float64), torch.full((2, 4), -v, dtype=torch.float64), mask
    )
    torch.testing.assert_close(w, _t(1.0, 1.0))
    # running mean
    mean, count = torch.zeros(()), torch.zeros((), dtype=torch.long)
    for value in (1.0, 3.0, -1.0):
        mean, count = losses.running_mean_update(mean, count, torch.tensor(value))
    assert mean.item() == pytest.approx(1.0) and int(count) == 3


def test_errors_are_one_line_and_name_the_argument():
    """Errors of the loss itself come from DPOLoss, once, when it is built; errors of the tensors from the call."""
    spec_cases = [
        (dict(loss_type=["sigmoid", "sigmoid"]), "each loss may appear once"),
        (dict(loss_type=[]), "non-empty"),
        (dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0]), "one weight per loss_type"),
        (dict(loss_type="ipo", label_smoothing=0.1), "label_smoothing: only used by"),
        (dict(loss_type="bco_pair", f_divergence_type="js_divergence"), "only for loss_type"),
        (dict(f_divergence_type="kl"), "f_divergence_type: expected one of"),
        (dict(loss_type="aot", use_weighting=True), "pair_weights"),
        (dict(loss_type="discopop", discopop_tau=0.0), "discopop_tau"),
        (dict(loss_type=["simpo", "sigmoid"]), "combines only with 'sft'"),
    ]
    for kwargs, match in spec_cases:
        with pytest.raises(ValueError, match=match) as err:
            losses.DPOLoss(**kwargs)
        assert "\n" not in str(err.value)
    args = (_t(0.0), _t(0.0), _t(0.0), _t(0.0))
    call_cases = [
        (dict(loss_type="sigmoid_norm"), "chosen_lengths: required"),
        (dict(loss_type="sft"), "sft_nll: required"),
        (dict(loss_type="simpo"), "reference-free"),
    ]
    for kwargs, match in call_cases:
        with pytest.raises(ValueError, match=match) as err:
            losses.dpo_terms(losses.DPOLoss(**kwargs), *args)
        assert "\n" not in str(err.value)
    # dpo() builds the DPOLoss: the same errors through it (use_weighting is whether pair_weights is given)
    with pytest.raises(ValueError, match="pair_weights"):
        dpo(*args, loss_type="aot", pair_weights=_t(1.0))
    with pytest.raises(ValueError, match="label_smoothing: only used by"):
        dpo(*args, loss_type="ipo", label_smoothing=0.1)
