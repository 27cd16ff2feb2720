"""Prompt sharing (`litcpt.models.shared_prefix`): the two-phase forward equals a plain litgpt forward for every
attention/norm/residual layout it accepts, computes each shared prompt token once, runs the final layer only where
outputs are read, leaves the model as it was, and rejects what it cannot do."""

from __future__ import annotations

import pytest
import torch
from litgpt import GPT, Config

from litcpt.models.base import init_weights
from litcpt.models.logprobs import batch_shared_lengths, head_logps, token_logps
from litcpt.models.shared_prefix import pair_hidden_states, supports_shared_prefix

LAYOUTS = {
    "llama": {},
    "gqa": dict(n_query_groups=2),
    "mqa": dict(n_query_groups=1),
    "parallel-residual": dict(parallel_residual=True),
    "shared-attention-norm": dict(parallel_residual=True, shared_attention_norm=True),
    "qk-norm": dict(norm_qk=True),
    "qk-norm-olmo2": dict(norm_qk=True, norm_qk_type="olmo2"),
    "post-norms": dict(post_attention_norm=True, post_mlp_norm=True),
    "partial-rope": dict(rotary_percentage=0.5),
    "neox": dict(scale_embeddings=True, bias=True, norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP"),
    "attn-bias": dict(attn_bias=True),
    "local-rope": dict(rope_local_base_freq=500.0, rope_indices=[0, 1, 0]),
}


def gpt(**overrides) -> GPT:
    args = dict(name="shared-prefix-test", block_size=64, vocab_size=97, padded_vocab_size=97, n_layer=3, n_head=4,
                n_embd=32, n_query_groups=4, rotary_percentage=1.0, parallel_residual=False, bias=False,
                norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=48)
    args.update(overrides)
    torch.manual_seed(0)
    model = GPT(Config(**args))
    init_weights(model)
    return model.eval()


def pair_batch(lengths_c, lengths_r, shared, vocab=97, seed=1):
    """Right-padded rows (chosen then rejected) whose pairs share their first ``shared[i]`` tokens."""
    g = torch.Generator().manual_seed(seed)
    B = len(shared)
    lengths = torch.tensor(list(lengths_c) + list(lengths_r))
    ids = torch.randint(0, vocab, (2 * B, int(lengths.max())), generator=g)
    for i, s in enumerate(shared):
        ids[B + i, :s] = ids[i, :s]
        if s < min(lengths_c[i], lengths_r[i]):         # make the first unshared tokens differ
            ids[B + i, s] = (ids[i, s] + 1) % vocab
    return ids, lengths, torch.tensor(shared)


def plain_hidden(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    head, model.lm_head = model.lm_head, torch.nn.Identity()
    try:
        with torch.no_grad():
            return model(ids)
    finally:
        model.lm_head = head


# lengths: a pair sharing nothing, a pair sharing all but one token of its shorter row, typical pairs
CASE = dict(lengths_c=[20, 9, 15, 7, 30], lengths_r=[17, 12, 15, 8, 11], shared=[10, 0, 14, 6, 5])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("rows_per_forward", [None, 1, 3])
def test_hidden_states_equal_a_plain_forward(layout, rows_per_forward):
    model = gpt(**LAYOUTS[layout])
    assert supports_shared_prefix(model)
    ids, lengths, shared = pair_batch(**CASE)
    full = plain_hidden(model, ids)
    every = torch.arange(ids.shape[1]) < lengths.unsqueeze(1)
    last = torch.zeros_like(every)
    last[torch.arange(ids.shape[0]), lengths - 1] = True              # what a reward head reads
    edge = last.clone()                                                # + the last shared position (phase 1)
    for i, s in enumerate(shared.tolist()):
        if s:
            edge[i, s - 1] = edge[len(shared) + i, s - 1] = True
    with torch.no_grad():
        for wanted in (every, last, edge):
            got = pair_hidden_states(model, ids, lengths, shared, wanted, rows_per_forward=rows_per_forward)
            torch.testing.assert_close(got, full[wanted], atol=1e-5, rtol=1e-5)


def test_bf16_autocast_matches_a_plain_forward_under_the_same_autocast():
    model = gpt(n_query_groups=2)
    ids, lengths, shared = pair_batch(**CASE)
    wanted = torch.arange(ids.shape[1]) < lengths.unsqueeze(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full = plain_hidden(model, ids)
        with torch.no_grad():
            got = pair_hidden_states(model, ids, lengths, shared, wanted, rows_per_forward=2)
    torch.testing.assert_close(got.float(), full[wanted].float(), atol=0.1, rtol=0.05)
    assert (got.float() - full[wanted].float()).abs().mean() < 0.02


class Counter:
    """Forward hooks: token positions entering the first block, rows entering each block's MLP and the final
    block's attention output projection."""

    def __init__(self, model: GPT):
        self.positions, self.mlp_rows, self.final_proj_rows = 0, [0] * len(model.transformer.h), 0
        self.handles = [model.transformer.h[0].register_forward_pre_hook(self._block)]
        for i, block in enumerate(model.transformer.h):
            self.handles.append(block.mlp.register_forward_pre_hook(lambda m, a, i=i: self._mlp(i, a)))
        self.handles.append(model.transformer.h[-1].attn.proj.register_forward_pre_hook(self._proj))

    def _proj(self, module, args):
        self.final_proj_rows += args[0].shape[0] * args[0].shape[1]

    def _block(self, module, args):
        self.positions += args[0].shape[0] * args[0].shape[1]

    def _mlp(self, i, args):
        self.mlp_rows[i] += args[0].shape[0] * args[0].shape[1]

    def close(self):
        for h in self.handles:
            h.remove()


def test_each_shared_token_is_computed_once_and_the_final_mlp_only_where_read():
    model = gpt()
    # equal prompt and tail lengths: no padding in any forward, so the count is exact
    B, prompt, tail = 4, 9, 3
    ids, lengths, shared = pair_batch([prompt + tail] * B, [prompt + tail] * B, [prompt] * B)
    last = torch.zeros(ids.shape, dtype=torch.bool)
    last[torch.arange(2 * B), lengths - 1] = True
    for rows_per_forward in (None, 1, 3):
        counter = Counter(model)
        with torch.no_grad():
            pair_hidden_states(model, ids, lengths, shared, last, rows_per_forward=rows_per_forward)
        counter.close()
        expected = B * prompt + 2 * B * tail                              # prompts once, then each row's tail
        assert counter.positions == expected < 2 * B * (prompt + tail)
        assert counter.mlp_rows[:-1] == [expected] * (model.config.n_layer - 1)
        assert counter.mlp_rows[-1] == 2 * B                              # the final MLP: the read positions only
        assert counter.final_proj_rows == 2 * B                           # and the final attention's queries
    # mixed lengths: padding, but still fewer positions than two plain rows per pair
    ids, lengths, shared = pair_batch(**CASE)
    counter = Counter(model)
    with torch.no_grad():
        pair_hidden_states(model, ids, lengths, shared, torch.arange(ids.shape[1]) < lengths.unsqueeze(1),
                           rows_per_forward=2)
    counter.close()
    assert counter.positions < int(lengths.sum())


def test_the_model_is_left_as_it_was_also_after_an_error():
    model = gpt()
    ids, lengths, shared = pair_batch(**CASE)
    wanted = torch.arange(ids.shape[1]) < lengths.unsqueeze(1)
    before = plain_hidden(model, ids)
    with torch.no_grad():
        pair_hidden_states(model, ids, lengths, shared, wanted)
        with pytest.raises(ValueError):
            pair_hidden_states(model, ids, lengths, lengths[: len(shared)], wanted)     # nothing left per row
    assert all(block.attn.kv_cache is None for block in model.transformer.h)
    torch.testing.assert_close(plain_hidden(model, ids), before)
    model.set_kv_cache(batch_size=1)                     # an existing KV cache is restored, not dropped
    caches = [block.attn.kv_cache for block in model.transformer.h]
    with torch.no_grad():
        pair_hidden_states(model, ids, lengths, shared, wanted)
    assert [block.attn.kv_cache for block in model.transformer.h] == caches


def test_bad_inputs_are_named():
    model = gpt()
    ids, lengths, shared = pair_batch(**CASE)
    wanted = torch.arange(ids.shape[1]) < lengths.unsqueeze(1)
    with torch.no_grad():
        with pytest.raises(ValueError, match="expected 2B rows"):
            pair_hidden_states(model, ids[:-1], lengths[:-1], shared, wanted[:-1])
        with pytest.raises(ValueError, match=r"shared \[B\], lengths \[2B\]"):
            pair_hidden_states(model, ids, lengths, shared[:-1], wanted)
        with pytest.raises(ValueError, match="shared: expected 0 <= shared"):
            pair_hidden_states(model, ids, lengths, shared + 20, wanted)
        with pytest.raises(ValueError, match="wanted: positions past a row's length"):
            pair_hidden_states(model, ids, lengths, shared, torch.ones_like(wanted))
        with pytest.raises(ValueError, match="rows_per_forward"):
            pair_hidden_states(model, ids, lengths, shared, wanted, rows_per_forward=0)
        short = gpt(block_size=16)
        with pytest.raises(ValueError, match="max_seq_length 16"):
            pair_hidden_states(short, ids, lengths, shared, wanted)
        empty = pair_hidden_states(model, ids, lengths, shared, torch.zeros_like(wanted))
        assert empty.shape == (0, model.config.n_embd)


def test_models_it_cannot_run_are_reported():
    assert not supports_shared_prefix(torch.nn.Linear(2, 2))
    assert not supports_shared_prefix(gpt(sliding_window_size=4, sliding_window_indices=[1, 1, 1]))
    assert not supports_shared_prefix(gpt(attention_logit_softcapping=50.0))


def test_batch_shared_lengths_stops_at_the_prompt_and_leaves_each_row_a_token():
    B = 3
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 0, 0, 0], [1, 2, 3, 0, 0],
                        [5, 6, 7, 1, 0], [5, 6, 0, 0, 0], [9, 2, 3, 0, 0]])
    batch = {"input_ids": ids, "lengths": torch.tensor([5, 2, 3, 4, 2, 3]),
             "prompt_lengths": torch.tensor([4, 2, 1, 4, 2, 1])}
    # pair 0: prompts agree on 3 tokens; pair 1: identical rows keep one token each; pair 2: differ at once
    assert batch_shared_lengths(batch).tolist() == [3, 1, 0]
    assert B == len(batch_shared_lengths(batch))


@pytest.mark.parametrize("chunk", [None, 1, 3, 1000])
def test_head_logps_in_chunks_equals_one_log_softmax(chunk):
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11)
    hidden, targets = torch.randn(10, 8), torch.randint(0, 11, (10,))
    expected = token_logps(head(hidden), targets)
    torch.testing.assert_close(head_logps(head, hidden, targets, chunk=chunk), expected)
    assert head_logps(head, hidden[:0], targets[:0]).shape == (0,)
    with pytest.raises(ValueError, match="hidden and targets"):
        head_logps(head, hidden, targets[:3])
