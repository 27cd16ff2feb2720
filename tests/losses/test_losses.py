"""Tests for litcpt.losses.preference: closed forms, gradients, stability, and agreement with
independent re-implementations of the published / TRL definitions."""

from __future__ import annotations

import math

import pytest
import torch

from litcpt.losses.preference import bradley_terry, dpo, implicit_reward, logistic

# the original three; the rest of the family is tested in test_dpo_loss_family.py and test_dpo_losses_trl.py
DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge")

LOG2 = math.log(2.0)


def _t(*values: float, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad)


# --------------------------------------------------------------------------- #
# independent references (written from the paper formulas with plain math)
# --------------------------------------------------------------------------- #
def _log_sigmoid(x: float) -> float:
    # numerically safe log(1 / (1 + e^-x))
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def _ref_bt(rc: list[float], rr: list[float], margin: list[float] | None, eta: float) -> float:
    m = margin or [0.0] * len(rc)
    nll = sum(-_log_sigmoid(c - r - mi) for c, r, mi in zip(rc, rr, m)) / len(rc)
    center = sum((c + r) ** 2 for c, r in zip(rc, rr)) / len(rc)
    return nll + eta * center


def _ref_dpo(pc, pr, rc, rr, beta, loss_type, eps):
    out = []
    for a, b, c, d in zip(pc, pr, rc, rr):
        h = (a - c) - (b - d)
        if loss_type == "sigmoid":
            # cDPO: expected DPO loss when the label is flipped with probability eps
            out.append(-(1 - eps) * _log_sigmoid(beta * h) - eps * _log_sigmoid(-beta * h))
        elif loss_type == "ipo":
            out.append((h - 1 / (2 * beta)) ** 2)
        else:
            out.append(max(0.0, 1 - beta * h))
    return out


# --------------------------------------------------------------------------- #
# Bradley–Terry
# --------------------------------------------------------------------------- #
class TestBradleyTerry:
    def test_equal_rewards_is_log2(self):
        loss = bradley_terry(_t(0.3, -1.0, 5.0), _t(0.3, -1.0, 5.0))
        assert loss.item() == pytest.approx(LOG2, rel=1e-12)

    def test_closed_form_single_pair(self):
        # -log σ(2) = log(1 + e^-2)
        assert bradley_terry(_t(2.0), _t(0.0)).item() == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-12)

    def test_margin_shifts_difference(self):
        # r_c - r_r = 1, margin 1  → difference 0 → log 2
        assert bradley_terry(_t(1.0), _t(0.0), margin=1.0).item() == pytest.approx(LOG2, rel=1e-12)
        # per-pair tensor margin
        loss = bradley_terry(_t(1.0, 3.0), _t(0.0, 0.0), margin=_t(1.0, 3.0))
        assert loss.item() == pytest.approx(LOG2, rel=1e-12)

    def test_center_term_matches_trl_form(self):
        rc, rr = _t(1.0, 2.0), _t(0.0, -3.0)
        base = bradley_terry(rc, rr).item()
        with_center = bradley_terry(rc, rr, center_coefficient=0.01).item()
        # mean((r_c + r_r)^2) = ((1)^2 + (-1)^2)/2 = 1
        assert with_center - base == pytest.approx(0.01 * 1.0, rel=1e-12)

    @pytest.mark.parametrize("eta", [0.0, 0.01, 0.5])
    def test_agrees_with_reference(self, eta):
        g = torch.Generator().manual_seed(0)
        rc = torch.randn(17, generator=g, dtype=torch.float64) * 3
        rr = torch.randn(17, generator=g, dtype=torch.float64) * 3
        m = torch.rand(17, generator=g, dtype=torch.float64)
        got = bradley_terry(rc, rr, margin=m, center_coefficient=eta).item()
        want = _ref_bt(rc.tolist(), rr.tolist(), m.tolist(), eta)
        assert got == pytest.approx(want, rel=1e-10)

    def test_gradient_signs(self):
        rc, rr = _t(0.5, -0.2, requires_grad=True), _t(0.1, 0.4, requires_grad=True)
        bradley_terry(rc, rr).backward()
        assert (rc.grad < 0).all()  # raising the chosen reward lowers the loss
        assert (rr.grad > 0).all()
        # closed form: d/dr_c mean(-log σ(d)) = -(1 - σ(d)) / B
        d = (rc - rr).detach()
        torch.testing.assert_close(rc.grad, -(1 - torch.sigmoid(d)) / 2)

    @pytest.mark.parametrize("big", [1e4, -1e4])
    def test_stable_for_large_margins(self, big):
        rc = torch.tensor([big], dtype=torch.float32, requires_grad=True)
        rr = torch.tensor([0.0], dtype=torch.float32, requires_grad=True)
        loss = bradley_terry(rc, rr)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(rc.grad).all()
        expected = 0.0 if big > 0 else -big  # -log σ(x) → max(-x, 0)
        assert loss.item() == pytest.approx(expected, abs=1e-3)

    def test_errors(self):
        with pytest.raises(ValueError, match="same shape"):
            bradley_terry(_t(1.0, 2.0), _t(1.0))
        with pytest.raises(ValueError, match="center_coefficient"):
            bradley_terry(_t(1.0), _t(0.0), center_coefficient=-1.0)
        with pytest.raises(ValueError, match="margin"):
            bradley_terry(_t(1.0, 2.0), _t(0.0, 0.0), margin=_t(1.0, 2.0, 3.0))
        with pytest.raises(ValueError, match="r_chosen: expected a torch.Tensor"):
            bradley_terry([1.0], _t(0.0))
        with pytest.raises(ValueError, match="empty"):
            bradley_terry(torch.empty(0), torch.empty(0))


# --------------------------------------------------------------------------- #
# logistic
# --------------------------------------------------------------------------- #
class TestLogistic:
    def test_zero_score_is_log2(self):
        assert logistic(_t(0.0, 0.0), _t(1.0, 0.0)).item() == pytest.approx(LOG2, rel=1e-12)

    def test_closed_form(self):
        # label 1, s=2 → log(1+e^-2); label 0, s=2 → log(1+e^2)
        got = logistic(_t(2.0, 2.0), torch.tensor([1, 0])).item()
        want = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(2.0))) / 2
        assert got == pytest.approx(want, rel=1e-12)

    def test_bool_labels_and_gradient(self):
        s = _t(0.3, -0.7, requires_grad=True)
        logistic(s, torch.tensor([True, False])).backward()
        # d/ds BCE = (σ(s) - y) / N
        torch.testing.assert_close(s.grad, (torch.sigmoid(s.detach()) - _t(1.0, 0.0)) / 2)
        assert s.grad[0] < 0 < s.grad[1]

    @pytest.mark.parametrize("big", [1e4, -1e4])
    def test_stable(self, big):
        s = torch.tensor([big, big], requires_grad=True)
        loss = logistic(s, torch.tensor([1.0, 0.0]))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
        assert loss.item() == pytest.approx(abs(big) / 2, rel=1e-6)

    def test_bad_labels(self):
        with pytest.raises(ValueError, match=r"labels: expected only 0 or 1, got 0.5 at index \(1,\)"):
            logistic(_t(0.0, 0.0), _t(1.0, 0.5))
        with pytest.raises(ValueError, match="same shape"):
            logistic(_t(0.0, 0.0), _t(1.0))


# --------------------------------------------------------------------------- #
# DPO
# --------------------------------------------------------------------------- #
PC, PR = [-10.0, -4.0, -7.5, -3.0], [-12.0, -3.0, -7.5, -9.0]
RC, RR = [-11.0, -5.0, -7.0, -4.0], [-11.5, -2.0, -8.0, -4.0]


class TestDPO:
    @pytest.mark.parametrize("loss_type", DPO_LOSS_TYPES)
    @pytest.mark.parametrize("beta", [0.1, 0.5])
    def test_agrees_with_reference(self, loss_type, beta):
        eps = 0.2 if loss_type == "sigmoid" else 0.0
        losses, cr, rr = dpo(_t(*PC), _t(*PR), _t(*RC), _t(*RR), beta=beta, loss_type=loss_type, label_smoothing=eps)
        want = _ref_dpo(PC, PR, RC, RR, beta, loss_type, eps)
        assert losses.shape == (4,)
        torch.testing.assert_close(losses, torch.tensor(want, dtype=torch.float64))
        torch.testing.assert_close(cr, beta * (_t(*PC) - _t(*RC)))
        torch.testing.assert_close(rr, beta * (_t(*PR) - _t(*RR)))

    def test_sigmoid_equal_logratios_is_log2(self):
        losses, _, _ = dpo(_t(-3.0), _t(-5.0), _t(-3.0), _t(-5.0))
        assert losses.item() == pytest.approx(LOG2, rel=1e-12)
        # label smoothing is symmetric at h = 0
        losses, _, _ = dpo(_t(-3.0), _t(-5.0), _t(-3.0), _t(-5.0), label_smoothing=0.3)
        assert losses.item() == pytest.approx(LOG2, rel=1e-12)

    def test_ipo_and_hinge_closed_forms(self):
        # h = 2, beta = 0.25 → ipo (2 - 2)^2 = 0 ; hinge relu(1 - 0.5) = 0.5
        args = (_t(-1.0), _t(-3.0), _t(0.0), _t(0.0))
        assert dpo(*args, beta=0.25, loss_type="ipo")[0].item() == pytest.approx(0.0, abs=1e-12)
        assert dpo(*args, beta=0.25, loss_type="hinge")[0].item() == pytest.approx(0.5, rel=1e-12)
        # hinge is 0 once beta*h >= 1
        assert dpo(*args, beta=1.0, loss_type="hinge")[0].item() == 0.0

    def test_label_smoothing_half_is_symmetric(self):
        # eps = 0.5 → loss = -½(log σ(x) + log σ(-x)) = ½ log(2 + 2cosh x): the label no longer matters
        a = dpo(_t(0.0), _t(-4.0), None, None, beta=1.0, label_smoothing=0.5)[0]
        b = dpo(_t(-4.0), _t(0.0), None, None, beta=1.0, label_smoothing=0.5)[0]
        assert a.item() == pytest.approx(b.item(), rel=1e-12)
        assert a.item() == pytest.approx(0.5 * math.log(2 + 2 * math.cosh(4.0)), rel=1e-12)

    def test_reference_free(self):
        losses, cr, rr = dpo(_t(-2.0), _t(-4.0), None, None, beta=0.5)
        assert losses.item() == pytest.approx(-_log_sigmoid(0.5 * 2.0), rel=1e-12)
        assert cr.item() == pytest.approx(-1.0) and rr.item() == pytest.approx(-2.0)

    @pytest.mark.parametrize("loss_type", DPO_LOSS_TYPES)
    def test_gradient_signs(self, loss_type):
        # start at h = 0 where every loss type is still decreasing in h
        pc, pr = _t(-5.0, -6.0, requires_grad=True), _t(-5.0, -6.0, requires_grad=True)
        losses, cr, _ = dpo(pc, pr, _t(-5.0, -6.0), _t(-5.0, -6.0), beta=0.1, loss_type=loss_type)
        losses.sum().backward()
        assert (pc.grad < 0).all() and (pr.grad > 0).all()
        assert not cr.requires_grad  # implicit rewards are detached

    @pytest.mark.parametrize("big", [1e4, -1e4])
    @pytest.mark.parametrize("loss_type", DPO_LOSS_TYPES)
    def test_stable_for_large_logratios(self, big, loss_type):
        pc = torch.tensor([big], requires_grad=True)
        losses, cr, rr = dpo(pc, torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]),
                             beta=0.1, loss_type=loss_type, label_smoothing=0.1 if loss_type == "sigmoid" else 0.0)
        losses.sum().backward()
        for t in (losses, cr, rr, pc.grad):
            assert torch.isfinite(t).all()

    def test_sigmoid_large_value(self):
        # -log σ(-1000) = 1000 (+ tiny); no overflow to inf
        losses, _, _ = dpo(torch.tensor([0.0]), torch.tensor([1e4]), None, None, beta=0.1)
        assert losses.item() == pytest.approx(1000.0, rel=1e-6)

    def test_errors(self):
        expected = r"loss_type: expected one of 'sigmoid', 'ipo', 'hinge', .*'sft', got 'kto'"
        with pytest.raises(ValueError, match=expected):
            dpo(_t(0.0), _t(0.0), None, None, loss_type="kto")
        with pytest.raises(ValueError, match="both tensors or both None"):
            dpo(_t(0.0), _t(0.0), _t(0.0), None)
        with pytest.raises(ValueError, match="beta"):
            dpo(_t(0.0), _t(0.0), None, None, beta=0.0)
        with pytest.raises(ValueError, match="label_smoothing"):
            dpo(_t(0.0), _t(0.0), None, None, label_smoothing=0.7)
        with pytest.raises(ValueError, match="only used by loss_type='sigmoid'"):
            dpo(_t(0.0), _t(0.0), None, None, loss_type="ipo", label_smoothing=0.1)
        with pytest.raises(ValueError, match="policy_chosen_logps and ref_chosen_logps"):
            dpo(_t(0.0, 1.0), _t(0.0, 1.0), _t(0.0), _t(0.0, 1.0))


def test_implicit_reward():
    torch.testing.assert_close(implicit_reward(_t(-3.0, -1.0), _t(-4.0, -1.0), beta=0.5), _t(0.5, 0.0))
    torch.testing.assert_close(implicit_reward(_t(-3.0), beta=0.1), _t(-0.3))
    p = _t(-3.0, requires_grad=True)
    assert not implicit_reward(p, beta=1.0).requires_grad
    with pytest.raises(ValueError, match="beta"):
        implicit_reward(p, beta=-1.0)
