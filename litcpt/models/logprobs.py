"""Log-probabilities of response tokens under a causal LM: the quantity DPO trains on and scores with.

The shift. A causal LM's logits at position ``t`` are its prediction for the token at position ``t + 1``::

    tokens     x0   x1   x2   y0   y1   y2(EOS)     prompt x, response y
    logits     l0   l1   l2   l3   l4   l5
    predicts   x1   x2   y0   y1   y2   -

so ``log π(y_j | x, y_<j)`` is ``log_softmax(l_{t-1})[token_t]`` for every position ``t`` whose token is a response
token, and the logits of the last position are never needed: :func:`sequence_logps` feeds ``input_ids[:, :-1]`` to the
model (same logits for positions ``0..T-2``, one position cheaper) and scores ``input_ids[:, 1:]`` under the shifted
mask ``response_mask[:, 1:]``. Prompt and padding positions are excluded by the mask; a response token at position
0 (an empty prompt) cannot be scored — :func:`scored_token_counts` lets callers detect rows with nothing to score.

Batches follow :func:`litcpt.data.preference.batching.collate_preference`: right-padded rows, ``response_mask`` True
on the
response tokens (EOS included). Left padding is not supported (litgpt's ``GPT`` takes no attention mask).

Three entry points, one result (tested against each other and against a per-token loop):

* :func:`sequence_logps` — one plain forward; differentiable (DPO training, any wrapper: DDP, FSDP).
* :func:`response_logps` — inference: the LM head only on the scored positions (the prompt's and padding's logits
  are never materialised), in chunks that stay in cache (:func:`head_logps`).
* :func:`pair_logps` with ``share_prompt=True`` (what ``litcpt rewardbench`` uses) — inference on preference
  batches: the prompt shared by chosen and rejected goes through the model once, both responses continue from its
  keys and values (:func:`litcpt.models.shared_prefix.pair_hidden_states`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "batch_shared_lengths",
    "fused_lm_loss",
    "head_logps",
    "model_token_logps",
    "masked_logps",
    "pair_logps",
    "response_logps",
    "scored_token_counts",
    "sequence_logps",
    "shared_prefix_lengths",
    "supports_fast_inference",
    "supports_fused_head",
    "token_logps",
]


# --------------------------------------------------------------------------------------------- pure tensor math
def token_logps(logits: Tensor, targets: Tensor) -> Tensor:
    """``log_softmax(logits)[..., targets]`` in float32: ``[..., V]`` x ``[...]`` -> ``[...]``.

    float32/float64 logits: one fused log-softmax + gather (``cross_entropy(reduction="none")``, no extra copy of the
    logits). Lower precision (bf16/fp16): rows are upcast one at a time, so at most one row of float32 logits exists
    besides the input.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits and targets: expected logits [..., V] over targets [...], got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    if logits.dtype in (torch.float32, torch.float64):
        flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(), reduction="none")
        return (-flat).view(targets.shape).float()
    if logits.dim() == 1:
        return token_logps(logits.float(), targets)
    index = targets.long().unsqueeze(-1)
    rows = [row.float().log_softmax(-1).gather(-1, idx).squeeze(-1) for row, idx in zip(logits, index)]
    return torch.stack(rows)


def masked_logps(per_token: Tensor, mask: Tensor, *, average: bool = False) -> Tensor:
    """Sum (``average=False``) or mean (``average=True``) of ``per_token [B, T]`` over ``mask [B, T]`` per row.

    A row with an empty mask sums to 0 (and averages to 0).
    """
    if per_token.shape != mask.shape:
        raise ValueError(f"per_token and mask: expected the same shape, got {tuple(per_token.shape)} and "
                         f"{tuple(mask.shape)}")
    mask = mask.bool()
    total = torch.where(mask, per_token, torch.zeros((), dtype=per_token.dtype, device=per_token.device)).sum(-1)
    if not average:
        return total
    return total / mask.sum(-1).clamp_min(1).to(total.dtype)


def scored_token_counts(response_mask: Tensor) -> Tensor:
    """Number of response tokens that get a log-prob, per row: ``response_mask[:, 1:].sum(-1)`` (see the shift)."""
    return response_mask[:, 1:].sum(-1)


def _check_inputs(input_ids: Tensor, response_mask: Tensor) -> None:
    if input_ids.dim() != 2 or input_ids.shape != response_mask.shape:
        raise ValueError(f"input_ids and response_mask: expected the same [B, T] shape, got {tuple(input_ids.shape)} "
                         f"and {tuple(response_mask.shape)}")
    if input_ids.shape[1] < 2:
        raise ValueError(f"input_ids: expected sequences of at least 2 tokens (prompt + response), got length "
                         f"{input_ids.shape[1]}")


# ------------------------------------------------------------------------------------------- training
def supports_fused_head(model: torch.nn.Module) -> bool:
    """Whether :func:`model_token_logps` / :func:`fused_lm_loss` may fuse ``model``'s LM head: a litgpt ``GPT``
    (possibly wrapped, or sharded by ``fully_shard``) without final-logit soft-capping."""
    from litgpt import GPT

    gpt = _unwrap_gpt(model)
    return isinstance(gpt, GPT) and gpt.config.final_logit_softcapping is None


@contextlib.contextmanager
def _fused_head(model: torch.nn.Module, head_fn: Callable[..., Any]) -> Iterator[None]:
    """While inside, ``model.lm_head(x)`` returns ``head_fn(lm_head, x)``: the head runs inside the model's own
    forward, where FSDP/FSDP2 have its (sharded) weight gathered and autograd reaches the real parameter. Under
    ``torch.compile`` the head runs eagerly (a graph break: the chunks' count depends on the data)."""
    head = _unwrap_gpt(model).lm_head
    head.forward = torch.compiler.disable(functools.partial(head_fn, head))
    try:
        yield
    finally:
        del head.forward


def fused_lm_loss(model: torch.nn.Module, inputs: Tensor, targets: Tensor, *, z_weight: float = 0.0,
                  ignore_index: int = -100, chunk: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(loss to train on, cross-entropy, z-loss) of ``model`` on ``inputs [B, T]`` against ``targets [B, T]``, the
    full ``[B, T, V]`` logits never materialised (:func:`litcpt.losses.fused_head.fused_cross_entropy` on the
    positions whose target is not ``ignore_index``). ``ce`` equals litgpt's ``chunked_cross_entropy`` of the plain
    logits, ``z`` :func:`litcpt.losses.stability.z_loss`, up to float rounding; ``loss = ce + z_weight * z``."""
    from litcpt.losses.fused_head import fused_cross_entropy

    def head_fn(head: torch.nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, t = x.reshape(-1, x.shape[-1]), targets.reshape(-1)
        keep = t != ignore_index
        if not bool(keep.all()):
            x, t = x[keep], t[keep]
        return fused_cross_entropy(x, head.weight, head.bias, t, z_weight=z_weight, chunk=chunk)

    with _fused_head(model, head_fn):
        return model(inputs)


def model_token_logps(model: torch.nn.Module, input_ids: Tensor, response_mask: Tensor, *, fused_head: bool = False,
                      sum_sq: bool = False) -> tuple[Tensor, Tensor | None]:
    """``log π(token_t | tokens_<t)`` of ``input_ids[:, 1:]``: ``[B, T-1]`` float32, one forward of ``model``, and
    with ``sum_sq`` WPO's ``log Σ_v p(v)²`` per position (detached; else None).

    ``fused_head=True`` (and a model that :func:`supports_fused_head`): the LM head runs only on the positions that
    predict a response token (``response_mask[:, 1:]``), in chunks, with its own autograd
    (:func:`litcpt.losses.fused_head.head_token_logps`); the other positions are 0. Otherwise every position is
    scored from the full logits. Either way only the masked positions are meant to be read.
    """
    _check_inputs(input_ids, response_mask)
    targets = input_ids[:, 1:]
    if not (fused_head and supports_fused_head(model)):
        logits = model(input_ids[:, :-1])
        per_token = token_logps(logits, targets)
        if not sum_sq:
            return per_token, None
        with torch.no_grad():
            log_sum_sq = torch.logsumexp(2.0 * logits.float().log_softmax(-1), dim=-1)
        return per_token, log_sum_sq
    from litcpt.losses.fused_head import head_token_logps

    rows, cols = response_mask[:, 1:].bool().nonzero(as_tuple=True)

    def head_fn(head: torch.nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        return head_token_logps(x[rows, cols], head.weight, head.bias, targets[rows, cols], sum_sq=sum_sq)

    with _fused_head(model, head_fn):
        logp, _lse, lse2 = model(input_ids[:, :-1])
    zeros = torch.zeros(targets.shape, dtype=torch.float32, device=targets.device)
    per_token = zeros.index_put((rows, cols), logp.float())
    return per_token, (None if lse2 is None else zeros.index_put((rows, cols), lse2.detach().float()))


def sequence_logps(model: torch.nn.Module, input_ids: Tensor, response_mask: Tensor, *,
                   average: bool = False, fused_head: bool = False) -> Tensor:
    """Sum (or length-average) of ``log π(y_t | x, y_<t)`` over the response tokens of each row: ``[B]`` float32.

    Args:
        model: a causal LM returning logits ``[B, T, V]`` (a ``litgpt.GPT``, possibly wrapped).
        input_ids: ``[B, T]`` right-padded prompt + response tokens.
        response_mask: ``[B, T]`` True where the token at that position is a response token.
        average: divide by the number of scored tokens (RewardBench's ``avg``, length-normalised IPO).
        fused_head: the LM head only on the scored positions, with its own autograd (see :func:`model_token_logps`).

    Logits at position ``t`` predict token ``t + 1`` (see the module docstring); differentiable w.r.t. ``model``.
    """
    per_token, _ = model_token_logps(model, input_ids, response_mask, fused_head=fused_head)
    return masked_logps(per_token, response_mask[:, 1:], average=average)


# -------------------------------------------------------------------------------------- inference: fast paths
def _unwrap_gpt(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def supports_fast_inference(model: torch.nn.Module) -> bool:
    """Whether :func:`response_logps` / :func:`pair_logps` may run ``model`` without its LM head: a plain
    ``litgpt.GPT`` without final-logit soft-capping, sliding windows or latent attention."""
    from litgpt import GPT

    gpt = _unwrap_gpt(model)
    if not isinstance(gpt, GPT):
        return False
    config = gpt.config
    return (config.final_logit_softcapping is None and config.sliding_window_size is None
            and getattr(config, "latent_attention", None) is None)


@contextlib.contextmanager
def _without_lm_head(gpt: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Temporarily replace ``gpt.lm_head`` by identity so ``gpt(...)`` returns the final hidden states."""
    head = gpt.lm_head
    gpt.lm_head = torch.nn.Identity()
    try:
        yield head
    finally:
        gpt.lm_head = head


HEAD_CHUNK_ELEMENTS = 1 << 21
"""Logits per chunk of :func:`head_logps` (8 MiB of float32): the logits of a chunk stay in cache on CPUs, and
peak memory stays small for 100k+ vocabularies on GPUs."""


def head_logps(head: torch.nn.Module, hidden: Tensor, targets: Tensor, *, chunk: int | None = None) -> Tensor:
    """``log_softmax(head(hidden))[targets]``: ``[N, C]`` hidden states x ``[N]`` targets -> ``[N]`` float32.

    The LM head runs on ``chunk`` positions at a time (default: ``HEAD_CHUNK_ELEMENTS // vocab``, at least 1), so
    the full ``[N, V]`` logits never exist at once. Inference only (no memory is saved under autograd).
    """
    if hidden.shape[:-1] != targets.shape or hidden.dim() != 2:
        raise ValueError(f"hidden and targets: expected [N, C] and [N], got {tuple(hidden.shape)} and "
                         f"{tuple(targets.shape)}")
    n = hidden.shape[0]
    if n == 0:
        return hidden.new_zeros(0, dtype=torch.float32)
    if chunk is None:
        vocab = getattr(head, "out_features", None) or int(head(hidden[:1]).shape[-1])
        chunk = max(1, HEAD_CHUNK_ELEMENTS // vocab)
    parts = [token_logps(head(hidden[i:i + chunk]), targets[i:i + chunk]) for i in range(0, n, chunk)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _segment_sum(values: Tensor, rows: Tensor, num_rows: int, counts: Tensor, average: bool) -> Tensor:
    total = torch.zeros(num_rows, dtype=torch.float32, device=values.device).index_add_(0, rows, values.float())
    return total / counts.clamp_min(1).to(total.dtype) if average else total


def response_logps(model: torch.nn.Module, input_ids: Tensor, response_mask: Tensor, *,
                   average: bool = False) -> Tensor:
    """Same result as :func:`sequence_logps`, for inference: the LM head runs only on the scored positions.

    Falls back to :func:`sequence_logps` for models that :func:`supports_fast_inference` rejects.
    """
    _check_inputs(input_ids, response_mask)
    if not supports_fast_inference(model):
        return sequence_logps(model, input_ids, response_mask, average=average)
    gpt = _unwrap_gpt(model)
    mask = response_mask[:, 1:].bool()
    with _without_lm_head(gpt) as head:
        hidden = gpt(input_ids[:, :-1])
    rows, cols = mask.nonzero(as_tuple=True)
    scored = head_logps(head, hidden[rows, cols], input_ids[:, 1:][rows, cols])
    return _segment_sum(scored, rows, input_ids.shape[0], mask.sum(-1), average)


def shared_prefix_lengths(input_ids: Tensor, prompt_lengths: Tensor) -> Tensor:
    """Per pair, the number of leading tokens that chosen (rows ``0..B-1``) and rejected (rows ``B..2B-1``) share
    and that lie inside both prompts: ``[B]``. Only these may be computed once for both responses."""
    half = input_ids.shape[0] // 2
    chosen, rejected = input_ids[:half], input_ids[half:]
    same = (chosen == rejected).long().cumprod(dim=1).sum(dim=1)
    return torch.minimum(same, torch.minimum(prompt_lengths[:half], prompt_lengths[half:]))


def _row_lengths(batch: Mapping[str, Any]) -> Tensor:
    """Real tokens per row of a right-padded batch: ``lengths``, else the ``attention_mask`` count."""
    lengths = batch.get("lengths")
    return (batch["attention_mask"].sum(-1) if lengths is None else lengths).to(batch["input_ids"].device)


def batch_shared_lengths(batch: Mapping[str, Any]) -> Tensor:
    """What :func:`~litcpt.models.shared_prefix.pair_hidden_states` may share per pair of a preference batch: the
    shared prompt tokens (:func:`shared_prefix_lengths`), leaving each row at least one token of its own."""
    input_ids = batch["input_ids"]
    lengths = _row_lengths(batch)
    half = input_ids.shape[0] // 2
    shared = shared_prefix_lengths(input_ids, batch["prompt_lengths"].to(input_ids.device))
    return torch.minimum(shared, torch.minimum(lengths[:half], lengths[half:]) - 1).clamp_min(0)


def _pair_logps_shared(gpt: torch.nn.Module, batch: Mapping[str, Any], average: bool,
                       rows_per_forward: int | None) -> Tensor:
    from litcpt.models.shared_prefix import pair_hidden_states

    input_ids, response_mask = batch["input_ids"], batch["response_mask"].bool()
    wanted = torch.zeros_like(response_mask)
    wanted[:, :-1] = response_mask[:, 1:]            # position t predicts the (response) token at t + 1
    hidden = pair_hidden_states(gpt, input_ids, _row_lengths(batch), batch_shared_lengths(batch), wanted,
                                rows_per_forward=rows_per_forward)
    rows, cols = wanted.nonzero(as_tuple=True)
    scored = head_logps(gpt.lm_head, hidden, input_ids[rows, cols + 1])
    return _segment_sum(scored, rows, input_ids.shape[0], wanted.sum(-1), average)


def pair_logps(model: torch.nn.Module, batch: Mapping[str, Any], *, average: bool = False,
               share_prompt: bool = False, rows_per_forward: int | None = None) -> tuple[Tensor, Tensor]:
    """(chosen, rejected) response log-probs ``[B]`` of a preference batch (chosen rows first), for inference.

    ``share_prompt=True`` runs the prompt tokens that chosen and rejected share once and continues both responses
    from their keys and values (:func:`litcpt.models.shared_prefix.pair_hidden_states`, ``rows_per_forward`` rows
    per forward pass in each of its two phases); the results equal the plain path up to float rounding. It needs
    ``prompt_lengths`` in the batch and silently uses the plain path when the model is not supported. Call under
    ``torch.no_grad()`` or ``torch.inference_mode()``.
    """
    from litcpt.models.shared_prefix import supports_shared_prefix

    input_ids, response_mask = batch["input_ids"], batch["response_mask"]
    _check_inputs(input_ids, response_mask)
    if input_ids.shape[0] % 2:
        raise ValueError(f"input_ids: expected 2B rows (chosen then rejected), got {input_ids.shape[0]}")
    gpt = _unwrap_gpt(model)
    if (share_prompt and supports_fast_inference(model) and supports_shared_prefix(gpt)
            and "prompt_lengths" in batch):
        logps = _pair_logps_shared(gpt, batch, average, rows_per_forward)
    else:
        logps = response_logps(model, input_ids, response_mask, average=average)
    half = input_ids.shape[0] // 2
    return logps[:half], logps[half:]
