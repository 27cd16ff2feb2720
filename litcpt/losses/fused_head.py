"""The LM head fused with what training reads from it, so the ``[positions, vocab]`` logits never exist at once.

A causal LM's last layer maps hidden states ``h [N, C]`` to logits ``h W^T + b`` ``[N, V]``; every training loss of
litcpt only needs, per position, the log-sum-exp ``lse`` of those logits and the logit of the target token (the
log-probability is their difference; the z-loss reads ``lse`` alone). Both functions here run the head on chunks
of ``chunk`` positions, so at most one chunk of logits (plus its softmax) is alive:

* :func:`head_token_logps` -- per-position ``log p(target)`` and ``lse`` (and, on request, WPO's
  ``logsumexp(2 log p)``), differentiable: its forward keeps only the hidden states, the per-position ``lse`` and
  the targets, its backward recomputes each chunk's logits. Serves DPO-family policy log-probs (sums, means and the
  per-token values of WPO / LD-DPO / the SFT term) and the reference and scoring passes (under ``no_grad``).
* :func:`fused_cross_entropy` -- mean next-token cross-entropy plus a weighted z-loss, as one scalar. Its upstream
  gradient is a single number, so the forward computes the gradients of the hidden states, the weight and the bias
  chunk by chunk while the logits are at hand, and the backward only scales them: no recomputation, three
  matmuls per chunk like the unfused path.

Positions are given already selected (callers gather only the unmasked ones), so masked positions are never
computed. Math: the head runs in the compute dtype (the autocast dtype under autocast, else the promoted dtype of
``h`` and ``W``), the softmax in at least float32 (float64 stays float64), as the unfused path does when
``cross_entropy`` upcasts.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["FUSED_CHUNK_ELEMENTS", "chunk_rows", "fused_cross_entropy", "head_token_logps"]

FUSED_CHUNK_ELEMENTS = 1 << 25
"""Logits per chunk (128 MiB of float32): at a 128k vocabulary about 260 positions, enough rows for the matmuls to
run at full speed, small next to the ``[N, V]`` logits of a training micro-batch."""


def chunk_rows(vocab: int, chunk: int | None = None) -> int:
    """Positions per chunk: ``chunk`` if given, else ``FUSED_CHUNK_ELEMENTS // vocab`` (at least 1)."""
    if chunk is not None:
        if chunk < 1:
            raise ValueError(f"chunk: expected a positive number of positions, got {chunk}")
        return int(chunk)
    return max(1, FUSED_CHUNK_ELEMENTS // max(1, int(vocab)))


def _dtypes(hidden: Tensor, weight: Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(dtype of the head's matmuls, dtype of the softmax math)."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        compute = torch.get_autocast_dtype(device)
    else:
        compute = torch.promote_types(hidden.dtype, weight.dtype)
    return compute, torch.promote_types(compute, torch.float32)


def _logits(h: Tensor, weight: Tensor, bias: Tensor | None, compute: torch.dtype, acc: torch.dtype) -> Tensor:
    b = None if bias is None else bias.to(compute)
    return torch.nn.functional.linear(h.to(compute), weight.to(compute), b).to(acc)


def _exp_shifted_(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Turns ``logits`` in place into ``exp(logits - max)`` per row; returns (log-sum-exp, sum of the exps) per row.

    One pass of ``exp`` and no temporary of the chunk's size (``torch.logsumexp`` allocates one, and the softmax
    would need a second ``exp``): ``softmax = logits / sum`` afterwards."""
    top = logits.amax(-1, keepdim=True)
    total = logits.sub_(top).exp_().sum(-1)
    return total.log().add_(top.squeeze(-1)), total


def _accumulate_head_grads(d: Tensor, h: Tensor, w: Tensor, rows: slice, grad_h: Tensor | None,
                           grad_w: Tensor | None, grad_b: Tensor | None) -> None:
    """Adds the gradients of one chunk, ``d = d loss / d logits [n, V]`` of the hidden states ``h [n, C]``, to the
    head's: ``grad_h[rows] = d W``, ``grad_w += d^T h`` (in place, no ``[V, C]`` temporary when the dtypes agree),
    ``grad_b += sum(d)``."""
    if grad_b is not None:
        grad_b += d.sum(0).to(grad_b.dtype)
    d = d.to(w.dtype)
    if grad_h is not None:
        grad_h[rows] = (d @ w).to(grad_h.dtype)
    if grad_w is not None:
        if grad_w.dtype == d.dtype:
            grad_w.addmm_(d.T, h)
        else:
            grad_w += (d.T @ h).to(grad_w.dtype)


def _check(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor) -> None:
    if (hidden.dim() != 2 or targets.shape != hidden.shape[:1] or weight.dim() != 2
            or weight.shape[1] != hidden.shape[1]):
        raise ValueError(f"hidden [N, C], weight [V, C], targets [N]: got {tuple(hidden.shape)}, "
                         f"{tuple(weight.shape)}, {tuple(targets.shape)}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"bias: expected [{weight.shape[0]}], got {tuple(bias.shape)}")


class _HeadLogps(torch.autograd.Function):
    """(log p(target), lse, logsumexp(2 log p) or empty) per position; backward recomputes each chunk's logits."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk, sum_sq):  # type: ignore[override]
        compute, acc = _dtypes(hidden, weight)
        n = hidden.shape[0]
        logp = hidden.new_empty(n, dtype=acc)
        lse = hidden.new_empty(n, dtype=acc)
        lse2 = hidden.new_empty(n if sum_sq else 0, dtype=acc)
        with torch.autocast(hidden.device.type, enabled=False):
            for s in range(0, n, chunk):
                logits = _logits(hidden[s:s + chunk], weight, bias, compute, acc)
                target = logits.gather(-1, targets[s:s + chunk, None]).squeeze(-1)
                norm, total = _exp_shifted_(logits)
                lse[s:s + chunk] = norm
                logp[s:s + chunk] = target - norm
                if sum_sq:  # log sum_v p(v)^2 = log sum_v exp(logit - max)^2 - 2 log sum_v exp(logit - max)
                    lse2[s:s + chunk] = logits.square_().sum(-1).log_() - 2.0 * total.log()
                del logits
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.chunk, ctx.compute, ctx.acc = chunk, compute, acc
        ctx.mark_non_differentiable(lse2)
        return logp, lse, lse2

    @staticmethod
    def backward(ctx, g_logp, g_lse, _g_lse2):  # type: ignore[override]
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        chunk, compute, acc = ctx.chunk, ctx.compute, ctx.acc
        n = hidden.shape[0]
        g_logp = lse.new_zeros(n) if g_logp is None else g_logp.to(acc)
        g_lse = lse.new_zeros(n) if g_lse is None else g_lse.to(acc)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.promote_types(weight.dtype, torch.float32)) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=grad_w.dtype if grad_w is not None else acc) if need_b else None
        w = weight.to(compute)
        with torch.autocast(hidden.device.type, enabled=False):
            for s in range(0, n, chunk):
                h = hidden[s:s + chunk].to(compute)
                d = _logits(h, w, bias, compute, acc)
                # d logits = g_lse * p + g_logp * (onehot - p)
                d.sub_(lse[s:s + chunk, None]).exp_().mul_((g_lse[s:s + chunk] - g_logp[s:s + chunk])[:, None])
                d.scatter_add_(-1, targets[s:s + chunk, None], g_logp[s:s + chunk, None])
                _accumulate_head_grads(d, h, w, slice(s, s + chunk), grad_h, grad_w, grad_b)
                del d
        grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        grad_b = None if grad_b is None else grad_b.to(bias.dtype)
        return grad_h, grad_w, grad_b, None, None, None


def head_token_logps(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, *,
                     chunk: int | None = None, sum_sq: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(log_softmax(h W^T + b)[targets], logsumexp(h W^T + b), logsumexp(2 log_softmax) or None)``, each ``[N]``.

    Args:
        hidden: ``[N, C]`` hidden states of the positions to score (only those: select before calling).
        weight, bias: the LM head (``[V, C]``, ``[V]`` or None).
        targets: ``[N]`` token ids.
        chunk: positions per chunk (default :func:`chunk_rows`).
        sum_sq: also return WPO's ``log sum_v p(v)^2`` per position (not differentiable).

    Differentiable w.r.t. ``hidden``, ``weight`` and ``bias`` (the backward recomputes each chunk's logits); the
    results are in float32 (float64 for float64 inputs).
    """
    _check(hidden, weight, bias, targets)
    logp, lse, lse2 = _HeadLogps.apply(hidden, weight, bias, targets.long(), chunk_rows(weight.shape[0], chunk),
                                       sum_sq)
    return logp, lse, (lse2 if sum_sq else None)


class _FusedCrossEntropy(torch.autograd.Function):
    """``mean(lse - logit[target]) + z * mean(lse^2)``; the gradients are computed in the forward, chunk by chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, z_weight, chunk, grad_mode):  # type: ignore[override]
        compute, acc = _dtypes(hidden, weight)
        n = hidden.shape[0]
        # needs_input_grad follows requires_grad, not the grad mode: under no_grad (validation) no gradient is made
        need_h, need_w, need_b = (grad_mode and need for need in ctx.needs_input_grad[:3])
        sums = hidden.new_zeros(2, dtype=acc)  # (sum of -log p, sum of lse^2)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.promote_types(weight.dtype, torch.float32)) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=grad_w.dtype if grad_w is not None else acc) if need_b else None
        scale = 1.0 / max(n, 1)
        w = weight.to(compute)
        with torch.autocast(hidden.device.type, enabled=False):
            for s in range(0, n, chunk):
                h = hidden[s:s + chunk].to(compute)
                logits = _logits(h, w, bias, compute, acc)
                t = targets[s:s + chunk, None]
                target = logits.gather(-1, t).squeeze(-1)
                norm, total = _exp_shifted_(logits)  # logits now hold exp(logit - max): p = logits / total
                sums[0] += (norm - target).sum()
                sums[1] += norm.square().sum()
                if not (need_h or need_w or need_b):
                    continue
                # d loss / d logits = (p - onehot) / n + z * 2 lse p / n
                d = logits.mul_(((1.0 + 2.0 * z_weight * norm) * scale / total)[:, None])
                d.scatter_add_(-1, t, d.new_full(t.shape, -scale))
                _accumulate_head_grads(d, h, w, slice(s, s + chunk), grad_h, grad_w, grad_b)
                del logits, d
        ctx.grads = (grad_h, None if grad_w is None else grad_w.to(weight.dtype),
                     None if grad_b is None else grad_b.to(bias.dtype))
        ce, z = sums[0] * scale, sums[1] * scale
        ctx.mark_non_differentiable(ce, z)
        return ce + z_weight * z, ce, z

    @staticmethod
    def backward(ctx, g_loss, _g_ce, _g_z):  # type: ignore[override]
        if ctx.grads is None:
            raise RuntimeError("fused_cross_entropy: backward through the same graph twice is not supported")
        grads, ctx.grads = ctx.grads, None  # scaled in place: the buffers belong to this one backward
        grad_h, grad_w, grad_b = (None if g is None else g.mul_(g_loss.to(g.dtype)) for g in grads)
        return grad_h, grad_w, grad_b, None, None, None, None


def fused_cross_entropy(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, *,
                        z_weight: float = 0.0, chunk: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(loss to train on, cross-entropy, z-loss) of the LM head on ``hidden [N, C]`` against ``targets [N]``.

    ``loss = ce + z_weight * z`` with ``ce = mean(-log p(target))`` and ``z = mean(logsumexp(logits)^2)``, over the
    ``N`` positions given (select the non-ignored ones before calling; ``N = 0`` gives zeros). Only ``loss`` is
    differentiable (``ce`` and ``z`` are for logging); its gradients are computed in the forward while each chunk's
    logits exist, and the backward scales them by the upstream gradient (once: no ``retain_graph`` double
    backward). Without autograd (``no_grad``, frozen inputs) it only computes the values.
    """
    _check(hidden, weight, bias, targets)
    return _FusedCrossEntropy.apply(hidden, weight, bias, targets.long(), float(z_weight),
                                    chunk_rows(weight.shape[0], chunk), torch.is_grad_enabled())
