"""One shard of a generated corpus: batches sampled with LitGPT's own generation loop (KV cache, temperature, top-k,
top-p: ``litgpt.generate.base.batched_generate_fn``), filtered, and cut to the shard's token quota.

Everything random in a shard comes from its seed (:func:`shard_seed`): which prompts each batch starts from, each
batch's length and the seed of torch's sampler for the batch (set inside ``torch.random.fork_rng``, so the caller's
random state is left as it was). A shard is therefore the same whichever rank, and however many ranks, make it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from litcpt.generation.filters import is_degenerate, sample_key

__all__ = ["Sampling", "ShardOutput", "StartTokens", "generate_shard", "shard_seed"]

STALL_BATCHES = 50
"""Batches in a row that may keep no sample before a shard gives up (every sample repetitive, duplicate or short)."""


@dataclass(frozen=True)
class Sampling:
    """How samples are drawn and which are kept (``litcpt generate-replay``'s arguments of the same names)."""

    temperature: float
    top_k: int | None
    top_p: float
    min_new_tokens: int
    max_new_tokens: int
    batch_size: int
    repetition_ngram: int
    repetition_threshold: float


@dataclass(frozen=True)
class StartTokens:
    """What a sample starts from and how it is stored: the model is fed ``[start] + prompt``; the stored document is
    ``[bos] + prompt + generated + [eos]`` (``[bos]`` only when the tokenizer puts it in front of documents, as in any
    litcpt token file)."""

    start: int
    eos: int
    bos: int | None


@dataclass
class ShardOutput:
    """The kept documents of a shard and what was dropped."""

    documents: list[np.ndarray]
    generated: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"repetitive": 0, "duplicate": 0, "short": 0})
    seconds: float = 0.0

    @property
    def tokens(self) -> int:
        return sum(len(d) for d in self.documents)


def shard_seed(seed: int, index: int) -> int:
    """The seed of shard ``index`` of a corpus generated with ``seed`` (independent streams per shard)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0] >> 1)


def _batch_prompts(rng: np.random.Generator, by_length: dict[int, list[int]], prompts: Sequence[Sequence[int]],
                   size: int) -> list[Sequence[int]]:
    """``size`` prompts of one token length (LitGPT's batched loop needs equal lengths): the first drawn uniformly,
    the others uniformly among prompts of its length, so each prompt's share stays ``1 / len(prompts)``."""
    first = int(rng.integers(len(prompts)))
    same = by_length[len(prompts[first])]
    return [prompts[first]] + [prompts[same[int(i)]] for i in rng.integers(len(same), size=size - 1)]


def _sample_batch(model: torch.nn.Module, batch: list[Sequence[int]], start: StartTokens, length: int,
                  sampling: Sampling, torch_seed: int, device: torch.device) -> list[list[int]]:
    """The generated continuations (without EOS) of ``batch``, sampled by ``batched_generate_fn``."""
    from litgpt.generate.base import batched_generate_fn

    inputs = torch.tensor([[start.start, *p] for p in batch], dtype=torch.int64, device=device)
    dtype = next(model.parameters()).dtype
    model.set_kv_cache(batch_size=len(batch), device=device, dtype=dtype)
    out: list[list[int]] = [[] for _ in batch]
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(torch_seed)
        for step in batched_generate_fn(model, inputs, inputs.shape[1] + length,
                                        sample_args={"temperature": sampling.temperature, "top_k": sampling.top_k,
                                                     "top_p": sampling.top_p},
                                        stop_tokens=([start.eos],), include_prompt=False, include_eos=False):
            for row, token in enumerate(step):
                if token is not None:
                    out[row].append(int(token))
    model.clear_kv_cache()
    return out


def generate_shard(model: torch.nn.Module, *, seed: int, quota: int, prompts: Sequence[Sequence[int]],
                   start: StartTokens, sampling: Sampling, block_size: int, device: torch.device,
                   progress: Callable[[int], None] | None = None) -> ShardOutput:
    """Sample documents until ``quota`` tokens are kept, then cut the last one so the shard holds exactly ``quota``
    tokens (ending with EOS). ``prompts``: token lists (``[[]]``: start-token only). Drops samples that stop (EOS)
    before ``min_new_tokens``, repetition loops (:func:`litcpt.generation.filters.is_degenerate`) and exact
    duplicates within the shard; ``progress(tokens)`` is called after each batch with the tokens kept."""
    rng = np.random.default_rng(seed)
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    shard = ShardOutput(documents=[])
    seen: set[str] = set()
    kept = stalled = 0
    t0 = time.perf_counter()
    while kept < quota:
        batch = _batch_prompts(rng, by_length, prompts, sampling.batch_size)
        longest = block_size - 1 - len(batch[0])
        length = min(int(rng.integers(sampling.min_new_tokens, sampling.max_new_tokens + 1)), longest)
        before = kept
        for prompt, new in zip(batch, _sample_batch(model, batch, start, length, sampling,
                                                    int(rng.integers(2**63 - 1)), device)):
            shard.generated += len(new)
            if len(new) < min(sampling.min_new_tokens, length):
                shard.dropped["short"] += 1
                continue
            if is_degenerate(new, n=sampling.repetition_ngram, threshold=sampling.repetition_threshold):
                shard.dropped["repetitive"] += 1
                continue
            doc = np.asarray(([start.bos] if start.bos is not None else []) + list(prompt) + new + [start.eos],
                             dtype=np.int64)
            key = sample_key(doc)
            if key in seen:
                shard.dropped["duplicate"] += 1
                continue
            seen.add(key)
            shard.documents.append(doc)
            kept += len(doc)
            if kept >= quota:
                break
        stalled = stalled + 1 if kept == before else 0
        if stalled >= STALL_BATCHES:
            raise RuntimeError(f"generation: {STALL_BATCHES} batches in a row kept no sample (all repetitive, "
                               f"duplicate or shorter than min_new_tokens={sampling.min_new_tokens}); raise "
                               "--temperature, loosen --repetition_threshold or lower --min_new_tokens")
        if progress is not None:
            progress(min(kept, quota) - before)
    _cut(shard, quota, start.eos)
    shard.seconds = time.perf_counter() - t0
    return shard


def _cut(shard: ShardOutput, quota: int, eos: int) -> None:
    """Shorten the last document so the shard holds exactly ``quota`` tokens, still ending with EOS."""
    extra = shard.tokens - quota
    if extra <= 0:
        return
    last = shard.documents[-1]
    keep = len(last) - extra
    if keep < 2:  # not even one token before its EOS: drop it, the shard is a little short
        shard.documents.pop()
        return
    shard.documents[-1] = np.concatenate([last[:keep - 1], [eos]]).astype(np.int64)
