"""The fused LM head (:mod:`litcpt.losses.fused_head`) against the plain head: values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from litcpt.losses.fused_head import chunk_rows, fused_cross_entropy, head_token_logps

TOL = {torch.float64: 1e-6, torch.float32: 1e-5}


def _leaves(dtype, n=37, c=16, v=103, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, c, dtype=dtype, generator=g).requires_grad_()
    w = torch.randn(v, c, dtype=dtype, generator=g).requires_grad_()
    b = torch.randn(v, dtype=dtype, generator=g).requires_grad_() if bias else None
    t = torch.randint(0, v, (n,), generator=g)
    return h, w, b, t


def _grads(loss, leaves):
    grads = torch.autograd.grad(loss, [x for x in leaves if x is not None])
    return list(grads)


def _assert_rel(actual, expected, rel):
    for a, e in zip(actual, expected):
        err = float((a - e).abs().max() / e.abs().max().clamp_min(1e-30))
        assert err <= rel, err


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_head_token_logps_values_and_grads_equal_the_plain_head(dtype, bias):
    h, w, b, t = _leaves(dtype, bias=bias)
    g = torch.Generator().manual_seed(1)
    g_logp, g_lse = torch.randn(len(t), dtype=dtype, generator=g), torch.randn(len(t), dtype=dtype, generator=g)
    logp, lse, lse2 = head_token_logps(h, w, b, t, chunk=10, sum_sq=True)  # 103 % 10 != 0, 37 % 10 != 0
    fused = _grads((logp * g_logp + lse * g_lse).sum(), (h, w, b))
    logits = F.linear(h, w, b)
    ref_logp = logits.log_softmax(-1).gather(-1, t[:, None]).squeeze(-1)
    ref_lse = logits.logsumexp(-1)
    plain = _grads((ref_logp * g_logp + ref_lse * g_lse).sum(), (h, w, b))
    _assert_rel([logp, lse, lse2], [ref_logp, ref_lse, torch.logsumexp(2 * logits.log_softmax(-1), -1)], TOL[dtype])
    _assert_rel(fused, plain, TOL[dtype])
    assert not lse2.requires_grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("z_weight", [0.0, 0.3])
def test_fused_cross_entropy_with_z_loss_equals_the_plain_loss(dtype, z_weight):
    h, w, b, t = _leaves(dtype)
    loss, ce, z = fused_cross_entropy(h, w, b, t, z_weight=z_weight, chunk=8)
    fused = _grads(2.5 * loss, (h, w, b))  # the upstream gradient scales the gradients made in the forward
    logits = F.linear(h, w, b)
    ref_ce, ref_z = F.cross_entropy(logits, t), logits.logsumexp(-1).square().mean()
    plain = _grads(2.5 * (ref_ce + z_weight * ref_z), (h, w, b))
    _assert_rel([loss, ce, z], [ref_ce + z_weight * ref_z, ref_ce, ref_z], TOL[dtype])
    _assert_rel(fused, plain, TOL[dtype])


def test_nothing_to_score_gives_zeros_and_zero_gradients():
    h, w, b, t = _leaves(torch.float32, n=0)
    loss, ce, z = fused_cross_entropy(h, w, b, t)
    assert float(loss) == float(ce) == float(z) == 0.0
    assert all(float(g.abs().sum()) == 0.0 for g in _grads(loss, (h, w, b)))
    logp, lse, _ = head_token_logps(h, w, b, t)
    assert logp.shape == lse.shape == (0,)


def test_the_fused_cross_entropy_refuses_a_second_backward():
    h, w, b, t = _leaves(torch.float32)
    loss, _, _ = fused_cross_entropy(h, w, b, t)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="twice"):
        loss.backward()


def test_no_grad_computes_values_only(monkeypatch):
    """Under ``no_grad`` (validation) no gradient is made, though the leaves require grad (autograd's
    ``needs_input_grad`` follows ``requires_grad``, not the grad mode: before, validation paid for the gradients)."""
    from litcpt.losses import fused_head

    calls = []
    real = fused_head._accumulate_head_grads
    monkeypatch.setattr(fused_head, "_accumulate_head_grads", lambda *a: calls.append(1) or real(*a))
    h, w, b, t = _leaves(torch.float32)
    fused_cross_entropy(h, w, b, t)
    assert calls  # with grad mode on, the forward makes the gradients
    calls.clear()
    with torch.no_grad():
        loss, ce, _ = fused_cross_entropy(h, w, b, t)
        logp, _, _ = head_token_logps(h, w, b, t)
    assert not loss.requires_grad and not logp.requires_grad and not calls
    torch.testing.assert_close(ce, F.cross_entropy(F.linear(h, w, b), t).detach())


def test_chunk_rows_and_shape_errors():
    assert chunk_rows(128256) == (1 << 25) // 128256 and chunk_rows(1 << 30) == 1 and chunk_rows(10, 3) == 3
    with pytest.raises(ValueError, match="positive"):
        chunk_rows(10, 0)
    h, w, b, t = _leaves(torch.float32)
    with pytest.raises(ValueError, match=r"hidden \[N, C\]"):
        head_token_logps(h, w, b, t[:3])
