"""Inference forward of a litgpt ``GPT`` over preference pairs that computes the shared prompt once.

The chosen and the rejected sequence of a pair start with the same prompt tokens. Scoring them as two independent
sequences runs those tokens through the model twice; :func:`pair_hidden_states` runs them once::

    phase 1  prompts, one row per pair          causal attention (SDPA's fast path, no mask); K/V recorded
    phase 2  tails, one row per response        attends to [its pair's prompt K/V ; its own tail, causally]

Row ``i`` (chosen) and row ``B + i`` (rejected) of a batch (:func:`litcpt.data.preference.batching.collate_preference`
layout) both continue from prompt ``i``. The tail positions keep their absolute RoPE positions (``shared_i + j``),
so every hidden state equals the one of a plain forward over the whole sequence up to float rounding (tested
against ``GPT.forward`` for MHA/GQA/MQA, parallel residual, shared attention norm, QK norms, post-norms, partial
and per-layer RoPE, biases).

Padding. The two phases are batched independently: the prompts of a call are sorted by length and run
``rows_per_forward`` at a time, then all tails sorted by length likewise (rows shorter than average go more to a
forward). Pairs mix long prompts with short answers and the reverse, so batching whole pairs would pad far more
(measured in ``docs/benchmarks.md``).

The final layer. Only the hidden states asked for (``wanted``: the last token for a reward head, the positions that
predict response tokens for log-probs) leave the model, so the final block runs its MLP only there, and where a row
wants few positions its attention too: a first call over all positions stops once its keys and values are known,
a second one runs just the wanted queries.

It uses litgpt's own modules (``wte``, each ``Block``'s attention with litgpt's RoPE, ``ln_f``): the keys and values
are captured by a recorder that stands in for litgpt's ``KVCache`` during the call (the model's own cache, if any,
is put back). Models this path does not cover (sliding windows, latent attention, attention-logit soft-capping,
non-``GPT`` modules) are reported by :func:`supports_shared_prefix`; callers then use a plain forward. The
prompts' keys and values of one call are held in memory at once: ``sum(shared) x 2 x n_layer x n_query_groups x
head_size`` values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from litgpt.model import GPT
from torch import Tensor, nn

from litcpt._private import KVCache, block_attention

__all__ = ["pair_hidden_states", "supports_shared_prefix"]


def supports_shared_prefix(model: nn.Module) -> bool:
    """Whether :func:`pair_hidden_states` can run ``model``: a plain ``litgpt.GPT`` with global causal attention
    (no sliding windows, latent attention or attention-logit soft-capping)."""
    if not isinstance(model, GPT):
        return False
    config = model.config
    return (config.sliding_window_size is None and not getattr(config, "latent_attention", None)
            and config.attention_logit_softcapping is None)


class _Captured(Exception):
    """Raised by :class:`_PrefixKV` in capture mode: the attention call has produced its keys and values, the rest
    of it (all queries, the output projection) is not needed."""


class _PrefixKV(KVCache):
    """Stands in for litgpt's ``KVCache`` in one attention layer during :func:`pair_hidden_states`.

    The prompts' keys and values live in one flat store ``[sum(shared) + 1 + scratch, groups, hs]`` (row
    ``sum(shared)`` is zero: what padding positions read; the scratch rows hold a tail forward's own K/V).
    Mode ``("record", src, dst)``: the call is a phase-1 forward over prompts; its K/V at the flat positions ``src``
    go to store rows ``dst``, and are returned unchanged (litgpt then attends causally without a mask). Mode
    ``("attend", index)``: the call's rows are tails; each gets the store rows
    ``index [n, width]`` (its pair's prompt, padded) in front of its own K/V (one gather from the store).

    ``capture``: the call stops (``_Captured``) as soon as its K/V are known and keeps them; while ``replay`` holds
    them, a call returns them whatever its own K/V (the queries of a few positions attend to all keys).
    """

    def __init__(self, n_head: int, size: int, scratch: int) -> None:
        nn.Module.__init__(self)  # no preallocated buffers
        self.n_head, self.size, self.scratch = n_head, size, scratch
        self.store_k: Tensor | None = None
        self.store_v: Tensor | None = None
        self.mode: tuple = ()
        self.capture = False                 # raise _Captured once the layer's K/V are known (see _final_block)
        self.replay: tuple[Tensor, Tensor] | None = None

    def _heads(self, t: Tensor) -> Tensor:
        # litgpt does not repeat a single (multi-query) K/V head when a cache is in use; expand it here so both
        # phases hand full heads to SDPA (not every kernel broadcasts a head).
        return t.expand(-1, self.n_head, -1, -1) if t.shape[1] == 1 and self.n_head > 1 else t

    def forward(self, input_pos: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.replay is not None:
            return self.replay
        out = self._forward(k, v)
        if self.capture:
            self.replay = out
            raise _Captured
        return out

    def _store(self, t: Tensor) -> Tensor:
        store = t.new_empty((self.size + 1 + self.scratch, t.shape[1], t.shape[3]))
        store[self.size] = 0
        return store

    def _forward(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.store_k is None or self.store_v is None:
            self.store_k, self.store_v = self._store(k), self._store(v)
        if self.mode[0] == "record":
            _, src, dst = self.mode
            for store, t in ((self.store_k, k), (self.store_v, v)):
                store.index_copy_(0, dst, t.transpose(1, 2).reshape(-1, t.shape[1], t.shape[3]).index_select(0, src))
            return self._heads(k), self._heads(v)
        _, index = self.mode
        if index.shape[1] == 0:                    # nothing shared in this forward
            return self._heads(k), self._heads(v)
        # the tail's own K/V go to the scratch rows, then one gather lays out [prompt ; tail] per row
        n, width = k.shape[0], k.shape[2]
        scratch = self.size + 1 + torch.arange(n * width, device=k.device).view(n, width)
        index = torch.cat([index, scratch], dim=1)
        out = []
        for store, t in ((self.store_k, k), (self.store_v, v)):
            store[self.size + 1:self.size + 1 + n * width] = t.transpose(1, 2).reshape(n * width, *store.shape[1:])
            out.append(store.index_select(0, index.view(-1)).view(n, index.shape[1], *store.shape[1:]).transpose(1, 2))
        return self._heads(out[0]), self._heads(out[1])

    def reset_parameters(self) -> None:  # pragma: no cover - never part of a trained model
        self.store_k = self.store_v = None


@contextlib.contextmanager
def _recording(gpt: GPT, size: int, scratch: int) -> Iterator[list[_PrefixKV]]:
    saved = [block.attn.kv_cache for block in gpt.transformer.h]
    caches = [_PrefixKV(gpt.config.n_head, size, scratch) for _ in gpt.transformer.h]
    for block, cache in zip(gpt.transformer.h, caches):
        block.attn.kv_cache = cache
    try:
        yield caches
    finally:
        for block, cache in zip(gpt.transformer.h, saved):
            block.attn.kv_cache = cache


def _final_block(block: nn.Module, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None, input_pos: Tensor,
                 keep: Tensor) -> Tensor:
    """``Block.forward`` at the flat positions ``keep`` only (indices into ``x.view(-1, C)``): ``[len(keep), C]``.

    Every position's keys and values are computed (later layers are not run, but the kept positions attend to all
    earlier ones). When few positions are kept per row (a reward head reads one), attention runs in two calls:
    one over all positions that stops once its K/V are known (:class:`_PrefixKV` capture), one for the kept
    positions' queries against those K/V; the output projection, residuals and MLP then run on the kept positions
    only. Mirrors litgpt's ``Block.forward`` (both residual layouts, shared attention norm, post-norms).
    """
    config = block.config
    n, width, C = x.shape
    rows, cols = keep // width, keep % width
    counts = torch.bincount(rows, minlength=n)
    queries = int(counts.max()) if keep.numel() else 0
    cache = block.attn.kv_cache
    x_normed = block.norm_1(x)
    if 2 * queries > width:
        h = block.post_attention_norm(block_attention(block, x_normed, cos, sin, mask, input_pos))
        flat = keep
    else:
        cache.capture = True
        try:
            block_attention(block, x_normed, cos, sin, mask, input_pos)
        except _Captured:
            pass
        finally:
            cache.capture = False
        if queries == 0:
            cache.replay = None
            return x.new_empty((0, C))
        # slot of each kept position among its row's queries; unused slots repeat the row's first kept position
        order = torch.argsort(keep, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.empty_like(keep)
        slot[order] = torch.arange(keep.numel(), device=keep.device) - starts[rows[order]]
        first = torch.zeros(n, dtype=torch.long, device=keep.device)
        first[rows] = cols                  # any kept column of the row (duplicates: whichever write lands)
        q_cols = first.unsqueeze(1).repeat(1, queries)
        q_cols[rows, slot] = cols

        def take(t: Tensor) -> Tensor:      # [n, width, ...] -> [n, queries, ...] at the query columns
            return t.gather(1, q_cols.unsqueeze(-1).expand(-1, -1, t.shape[-1]))

        q_cos = take(cos.expand(n, -1, -1))
        q_sin = take(sin.expand(n, -1, -1))
        if mask is None:        # causal: the query at column j sees keys 0..j
            q_mask = torch.arange(width, device=x.device).view(1, 1, -1) <= q_cols.unsqueeze(-1)
        else:
            q_mask = mask[:, 0].gather(1, q_cols.unsqueeze(-1).expand(-1, -1, mask.shape[-1]))
        q_pos = input_pos.expand(n, -1).gather(1, q_cols) if input_pos.dim() == 1 else input_pos.gather(1, q_cols)
        try:
            h = block.post_attention_norm(
                block_attention(block, take(x_normed), q_cos, q_sin, q_mask.unsqueeze(1), q_pos))
        finally:
            cache.replay = None
        x, x_normed = take(x), take(x_normed)
        flat = rows * queries + slot
    residual = (h + x).reshape(-1, C)[flat]
    if config.parallel_residual:      # the MLP reads the block's input, not the attention's sum
        mlp_in = (x_normed if config.shared_attention_norm else block.norm_2(x)).reshape(-1, C)[flat]
    else:
        mlp_in = block.norm_2(residual)
    return (block.post_mlp_norm(block.mlp(mlp_in.unsqueeze(0))) + residual.unsqueeze(0)).squeeze(0)


def _attention_mask(mask: Tensor, dtype: torch.dtype | None) -> Tensor:
    """SDPA mask: additive (0 / -inf) in ``dtype`` when given, so the kernels of every layer need not convert the
    boolean one again; else the boolean mask (autocast: the query dtype is not known here)."""
    if dtype is None:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def _chunks(order: Tensor, size: int, widths: Tensor | None = None) -> list[Tensor]:
    """Cut ``order`` (sorted longest first) into forwards of ``size`` rows; with ``widths``, rows shorter than the
    mean go ``size x mean / width`` (at most ``8 x size``) to a forward, so that short rows do not pay a forward's
    fixed cost for a handful of tokens."""
    if widths is None:
        return [order[i:i + size] for i in range(0, order.numel(), size)]
    w = widths[order].tolist()
    budget = size * sum(w) / max(len(w), 1)
    out, i = [], 0
    while i < len(w):
        n = max(size, min(8 * size, int(budget // max(w[i], 1))))
        out.append(order[i:i + n])
        i += n
    return out


def _run(gpt: GPT, ids: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None, input_pos: Tensor,
         keep: Tensor) -> Tensor:
    """All blocks over ``ids``; the final block's output at the flat positions ``keep``, after ``ln_f``."""
    x = gpt.transformer.wte(ids)
    if gpt.config.scale_embeddings:
        x = x * torch.tensor(gpt.config.n_embd ** 0.5, dtype=x.dtype)
    indices = gpt.config.rope_indices
    last = len(gpt.transformer.h) - 1
    for i, block in enumerate(gpt.transformer.h):
        bc, bs = (cos, sin) if indices is None else (cos[..., indices[i]], sin[..., indices[i]])
        if i < last:
            x = block(x, bc, bs, mask, input_pos, None)
        else:
            x = _final_block(block, x, bc, bs, mask, input_pos, keep)
    return gpt.transformer.ln_f(x)


def pair_hidden_states(gpt: GPT, input_ids: Tensor, lengths: Tensor, shared: Tensor, wanted: Tensor, *,
                       rows_per_forward: int | None = None, groups: Tensor | None = None) -> Tensor:
    """Final hidden states (after ``ln_f``, before the LM head) of a preference batch at the ``wanted`` positions.

    Args:
        gpt: a ``litgpt.GPT`` that :func:`supports_shared_prefix` accepts (its ``lm_head`` is not used).
        input_ids: ``[2B, T]`` right-padded rows, chosen rows ``0..B-1`` then rejected rows ``B..2B-1``.
        lengths: ``[2B]`` real tokens per row.
        shared: ``[B]`` leading tokens that chosen ``i`` and rejected ``i`` share (computed once), at most
            ``min(len_c, len_r) - 1`` so that each row keeps a tail; 0 shares nothing.
        wanted: bool ``[2B, T]``, the positions whose hidden states are returned (inside each row's length).
        rows_per_forward: rows per forward pass in each phase (default: all); forwards of rows shorter than the
            phase's average take proportionally more (up to 8x). The prompts are sorted by length and cut into
            forwards, and so are the tails, independently: little padding in either phase whatever mix of prompt
            and response lengths a batch has.
        groups: ``[R]`` long, the prompt of each row (``0..G-1``), for rows that are not chosen/rejected pairs
            (e.g. the N completions of a RewardBench 2 prompt): ``shared [G]`` is then per prompt, at most the
            length of each of its rows minus one, and ``input_ids`` has any number of rows. Default: the pair
            layout above (``groups = [0..B-1, 0..B-1]``).

    Returns:
        ``[wanted.sum(), n_embd]`` in the order of ``wanted.nonzero()`` (row-major), like ``hidden[wanted]`` of a
        plain forward. Call under ``torch.no_grad()`` / ``torch.inference_mode()``.
    """
    group_of, first_row, groups_count = _groups(input_ids, shared, groups)
    if shared.shape != (groups_count,) or lengths.shape != (input_ids.shape[0],) or wanted.shape != input_ids.shape:
        raise ValueError(f"shared [B], lengths [2B], wanted [2B, T]: got {tuple(shared.shape)}, "
                         f"{tuple(lengths.shape)}, {tuple(wanted.shape)} for input_ids {tuple(input_ids.shape)}")
    if rows_per_forward is not None and rows_per_forward < 1:
        raise ValueError(f"rows_per_forward: expected a positive integer or None, got {rows_per_forward}")
    device = input_ids.device
    lengths, shared, wanted = lengths.to(device), shared.to(device).long(), wanted.to(device)
    _check_lengths(gpt, input_ids, lengths, shared, wanted, group_of)
    plan = _Plan(input_ids, lengths, shared, wanted, group_of, first_row, rows_per_forward or input_ids.shape[0])
    if plan.r.numel() == 0:
        return gpt.transformer.wte.weight.new_zeros((0, gpt.config.n_embd))
    autocast = torch.is_autocast_enabled(plan.device.type) if plan.device.type in ("cpu", "cuda") else True
    dtype = None if autocast else gpt.transformer.wte.weight.dtype
    tail_chunks = _chunks(torch.argsort(plan.tails, descending=True, stable=True), plan.per, plan.tails)
    scratch = max(chunk.numel() * int(plan.tails[chunk].max()) for chunk in tail_chunks)
    with _recording(gpt, int(shared.sum()), scratch) as caches:
        _prompt_phase(gpt, plan, caches)
        _tail_phase(gpt, plan, caches, tail_chunks, dtype)
    assert plan.hidden is not None
    return plan.hidden


def _groups(input_ids: Tensor, shared: Tensor, groups: Tensor | None) -> tuple[Tensor, Tensor, int]:
    """``(group_of [R], first_row [G], G)``: the prompt of each row, a row holding each prompt, and the number of
    prompts (pairs by default)."""
    rows = input_ids.shape[0]
    device = input_ids.device
    if groups is None:
        half = rows // 2
        if rows != 2 * half or half == 0:
            raise ValueError(f"input_ids: expected 2B rows (chosen then rejected), got {rows}")
        return torch.arange(rows, device=device) % half, torch.arange(half, device=device), half
    half = int(shared.shape[0]) if shared.dim() == 1 else -1
    group_of = groups.to(device).long()
    if rows == 0 or group_of.shape != (rows,) or bool(((group_of < 0) | (group_of >= half)).any()):
        raise ValueError(f"groups: expected [R] prompt indices in [0, {half}) for {rows} rows")
    first_row = torch.zeros(half, dtype=torch.long, device=device)
    first_row[group_of] = torch.arange(rows, device=device)
    return group_of, first_row, half


def _check_lengths(gpt: GPT, input_ids: Tensor, lengths: Tensor, shared: Tensor, wanted: Tensor,
                   group_of: Tensor) -> None:
    """One-line errors for lengths that :func:`pair_hidden_states` cannot run."""
    T = input_ids.shape[1]
    if bool((lengths - shared[group_of] < 1).any()) or bool((shared < 0).any()):
        raise ValueError("shared: expected 0 <= shared < the length of both rows of the pair")
    if int(lengths.max()) > gpt.max_seq_length:
        raise ValueError(f"input_ids: rows of up to {int(lengths.max())} tokens exceed the model's max_seq_length "
                         f"{gpt.max_seq_length}")
    if bool((wanted & (torch.arange(T, device=input_ids.device) >= lengths.unsqueeze(1))).any()):
        raise ValueError("wanted: positions past a row's length")


class _Plan:
    """Where each wanted output of :func:`pair_hidden_states` is computed, and the buffer it is written to: a position
    before its row's ``shared`` prefix is the same in every row of its group and comes from phase 1 (one prompt row
    per group), the rest from phase 2 (the row's tail)."""

    def __init__(self, input_ids: Tensor, lengths: Tensor, shared: Tensor, wanted: Tensor, group_of: Tensor,
                 first_row: Tensor, per: int) -> None:
        self.input_ids, self.lengths, self.shared, self.group_of, self.first_row = (input_ids, lengths, shared,
                                                                                    group_of, first_row)
        self.device, self.per = input_ids.device, per
        self.start = shared[group_of]                               # [R] first tail position of each row
        self.tails = lengths - self.start
        self.offset = torch.cumsum(shared, 0) - shared               # first store row of each group's prompt
        self.total = int(shared.sum())
        self.r, self.c = wanted.nonzero(as_tuple=True)
        self.in_prefix = self.c < self.start[self.r]
        self.pair_of = group_of[self.r]
        self.hidden: Tensor | None = None

    def put(self, index: Tensor, values: Tensor) -> None:
        if self.hidden is None:
            self.hidden = values.new_empty((self.r.shape[0], values.shape[-1]))
        self.hidden[index] = values


def _prompt_phase(gpt: GPT, plan: _Plan, caches: list) -> None:
    """Phase 1: the prompts, longest first, causal (no mask; right padding after each prompt), positions 0..P-1; their
    keys and values are recorded in the caches' store."""
    shared, device = plan.shared, plan.device
    prompt_pairs = torch.argsort(shared, descending=True, stable=True)
    prompt_pairs = prompt_pairs[shared[prompt_pairs] > 0]
    row_of = torch.full((shared.shape[0],), -1, dtype=torch.long, device=device)
    for pairs in _chunks(prompt_pairs, plan.per, shared):
        n, width = pairs.numel(), int(shared[pairs].max())
        steps = torch.arange(width, device=device)
        valid = steps.unsqueeze(0) < shared[pairs].unsqueeze(1)
        src = (torch.arange(n, device=device).unsqueeze(1) * width + steps)[valid]
        dst = (plan.offset[pairs].unsqueeze(1) + steps)[valid]
        for cache in caches:
            cache.mode = ("record", src, dst)
        row_of[pairs] = torch.arange(n, device=device)
        mine = plan.in_prefix & (row_of[plan.pair_of] >= 0)
        keep, inverse = torch.unique(row_of[plan.pair_of[mine]] * width + plan.c[mine], return_inverse=True)
        row_of[pairs] = -1
        out = _run(gpt, plan.input_ids[plan.first_row[pairs], :width], gpt.cos[:width].unsqueeze(0),
                   gpt.sin[:width].unsqueeze(0), None, steps, keep)
        if keep.numel():
            plan.put(mine.nonzero(as_tuple=True)[0], out[inverse])


def _tail_phase(gpt: GPT, plan: _Plan, caches: list, tail_chunks: list[Tensor], dtype: torch.dtype | None) -> None:
    """Phase 2: the tails, longest first; each attends to its group's stored prompt K/V (valid positions only) and
    causally to itself, at its absolute positions ``start + j``."""
    device, shared = plan.device, plan.shared
    row_of = torch.full((plan.input_ids.shape[0],), -1, dtype=torch.long, device=device)
    for chunk in tail_chunks:
        n, width = chunk.numel(), int(plan.tails[chunk].max())
        pairs = plan.group_of[chunk]
        prefix = int(shared[pairs].max())
        before = torch.arange(prefix, device=device).unsqueeze(0)
        prefix_ok = before < shared[pairs].unsqueeze(1)  # [n, prefix]
        index = torch.where(prefix_ok, plan.offset[pairs].unsqueeze(1) + before, plan.total)
        for cache in caches:
            cache.mode = ("attend", index)
        steps = torch.arange(width, device=device)
        # padding columns repeat the row's last position: never read, and causality hides their keys
        cols = torch.minimum(plan.start[chunk].unsqueeze(1) + steps, (plan.lengths[chunk] - 1).unsqueeze(1))
        cos = gpt.cos.index_select(0, cols.reshape(-1)).view(n, width, *gpt.cos.shape[1:])
        sin = gpt.sin.index_select(0, cols.reshape(-1)).view(n, width, *gpt.sin.shape[1:])
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        mask = torch.cat([prefix_ok.unsqueeze(1).expand(n, width, prefix), causal.expand(n, width, width)], 2)
        row_of[chunk] = torch.arange(n, device=device)
        mine = ~plan.in_prefix & (row_of[plan.r] >= 0)
        rr = plan.r[mine]
        keep = row_of[rr] * width + (plan.c[mine] - plan.start[rr])
        row_of[chunk] = -1
        out = _run(gpt, plan.input_ids[chunk].gather(1, cols), cos, sin, _attention_mask(mask.unsqueeze(1), dtype),
                   cols, keep)
        if keep.numel():
            plan.put(mine.nonzero(as_tuple=True)[0], out)
