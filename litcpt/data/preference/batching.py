"""Batches of tokenised pairs: :class:`PreferenceDataset`, :func:`collate_preference` (``2B`` padded rows) and
:class:`LengthBucketBatchSampler` (deterministic, length-bucketed, sharded across ranks). Also used for listwise and
best-of-N groups (:mod:`litcpt.data.preference.listwise`, :mod:`litcpt.data.preference.best_of_n`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, Dataset

from litcpt.data.preference.pair_tokens import TokenizedPair
from litcpt.data.rows import check_choice
from litcpt.runtime.ranks import group_rank_world

__all__ = ["PADDING_SIDES", "LengthBucketBatchSampler", "PaddingSide", "PreferenceDataset", "RankPaddedDataset",
           "ResumableBatchesMixin",
           "collate_preference", "get_preference_collate_fn", "pad_id_of", "pad_rows",
           "padding_fraction"]

PaddingSide = Literal["right", "left"]
PADDING_SIDES = ("right", "left")


class RankPaddedDataset(Dataset):
    """In-memory items with a ``length`` (the bucketing key). Indices ``0 .. n-1`` are the items; indices
    ``n .. 2n-1`` are item ``i - n`` again, flagged as a duplicate: :class:`LengthBucketBatchSampler` uses them to
    give every rank the same number of batches."""

    what = "items"
    """Plural noun of the items, for the index error."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def lookup(self, index: int) -> tuple[Any, bool]:
        """``(item, is_duplicate)`` of a sampler index."""
        n = len(self.items)
        if 0 <= index < n:
            return self.items[index], False
        if n <= index < 2 * n:
            return self.items[index - n], True
        raise IndexError(f"index {index} out of range for {n} {self.what} (duplicates: {n}..{2 * n - 1})")

    @property
    def lengths(self) -> list[int]:
        """Bucketing key per item (for pairs ``max(len(chosen_ids), len(rejected_ids))``)."""
        return [item.length for item in self.items]


class PreferenceDataset(RankPaddedDataset):
    """In-memory dataset of :class:`TokenizedPair`; a duplicate index returns the pair with ``is_duplicate=True``."""

    what = "pairs"

    def __getitem__(self, index: int) -> TokenizedPair:
        item, duplicate = self.lookup(index)
        return dataclasses.replace(item, is_duplicate=True) if duplicate else item

    @property
    def row_lengths(self) -> list[tuple[int, int]]:
        """``(len(chosen_ids), len(rejected_ids))`` per pair."""
        return [(len(item.chosen_ids), len(item.rejected_ids)) for item in self.items]


def pad_id_of(tokenizer: Any) -> int:
    """Padding value of ``input_ids``: the tokenizer's EOS id, or 0 if it has none (padding is marked by
    ``attention_mask`` and ``last_index``, so its value never matters)."""
    eos = getattr(tokenizer, "eos_id", None)
    return 0 if eos is None else int(eos)


def pad_rows(rows: Sequence[Tensor], prompt_lengths: Sequence[int], *, pad_id: int = 0,
             padding_side: PaddingSide = "right") -> dict[str, Tensor]:
    """Token rows (each a prompt of ``prompt_lengths[i]`` tokens, then a response) as one padded batch:
    ``input_ids``, ``attention_mask``, ``response_mask``, ``lengths``, ``prompt_lengths`` and ``last_index``, laid
    out as in :func:`collate_preference` (which adds the pair fields)."""
    check_choice("padding_side", padding_side, PADDING_SIDES)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    width = int(lengths.max())
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    response_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, n_prompt) in enumerate(zip(rows, prompt_lengths)):
        start = 0 if padding_side == "right" else width - len(row)
        input_ids[i, start : start + len(row)] = row
        attention_mask[i, start : start + len(row)] = True
        response_mask[i, start + n_prompt : start + len(row)] = True
    last_index = lengths - 1 if padding_side == "right" else torch.full_like(lengths, width - 1)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "response_mask": response_mask,
        "lengths": lengths,
        "prompt_lengths": torch.tensor(list(prompt_lengths), dtype=torch.long),
        "last_index": last_index,
    }


def collate_preference(
    items: Sequence[TokenizedPair], *, pad_id: int = 0, padding_side: PaddingSide = "right"
) -> dict[str, Any]:
    """Collate ``B`` pairs into one batch of ``2B`` rows: chosen rows ``0..B-1``, then
    rejected rows ``B..2B-1`` (row ``i`` and row ``B + i`` are the same pair).

    Returns (``L`` = longest row):

    * ``input_ids`` long ``[2B, L]``, padded with ``pad_id`` on ``padding_side``.
    * ``attention_mask`` bool ``[2B, L]``: True on real tokens.
    * ``response_mask`` bool ``[2B, L]``: True where the *token at that position* is a
      response token (EOS included). For log-probabilities of the response use
      ``logits[:, :-1]`` against ``input_ids[:, 1:]`` masked by ``response_mask[:, 1:]``.
    * ``lengths``, ``prompt_lengths`` long ``[2B]``: tokens per row, prompt tokens per row.
    * ``last_index`` long ``[2B]``: position of the last real token (``lengths - 1`` with
      right padding, ``L - 1`` with left padding) -- where a reward head reads its score.
    * ``margin`` float ``[B]`` (0 when absent), ``index`` long ``[B]`` (pair position in the
      dataset), ``is_duplicate`` bool ``[B]``, ``subset`` and ``id``: lists of ``B``.
    """
    check_choice("padding_side", padding_side, PADDING_SIDES)
    if not items:
        raise ValueError("collate_preference: empty batch")
    rows = [item.chosen_ids for item in items] + [item.rejected_ids for item in items]
    prompt_lengths = [item.chosen_prompt_length for item in items] + [item.rejected_prompt_length for item in items]
    return {
        **pad_rows(rows, prompt_lengths, pad_id=pad_id, padding_side=padding_side),
        "margin": torch.tensor([0.0 if i.margin is None else i.margin for i in items], dtype=torch.float),
        "index": torch.tensor([i.index for i in items], dtype=torch.long),
        "is_duplicate": torch.tensor([i.is_duplicate for i in items], dtype=torch.bool),
        "subset": [i.subset for i in items],
        "id": [i.id for i in items],
    }


def get_preference_collate_fn(pad_id: int = 0, padding_side: PaddingSide = "right"):
    """A picklable ``collate_fn`` for a DataLoader (see :func:`collate_preference`)."""
    check_choice("padding_side", padding_side, PADDING_SIDES)
    return partial(collate_preference, pad_id=pad_id, padding_side=padding_side)


def padding_fraction(batches: Iterable[Sequence[int]], lengths: Sequence[int | Sequence[int]]) -> float:
    """Fraction of padding positions when every batch is padded to its longest row.

    ``lengths[i]`` is the length of item ``i``, or a tuple of its row lengths (e.g.
    ``(len(chosen_ids), len(rejected_ids))``, see :attr:`PreferenceDataset.row_lengths`);
    indices ``>= len(lengths)`` wrap around (flagged duplicates).
    """
    total = padded = 0
    n = len(lengths)
    for batch in batches:
        rows = [size for i in batch for size in _as_tuple(lengths[i % n])]
        if rows:
            total += max(rows) * len(rows)
            padded += max(rows) * len(rows) - sum(rows)
    return padded / total if total else 0.0


def _as_tuple(value: int | Sequence[int]) -> Sequence[int]:
    return (value,) if isinstance(value, int) else value


class _EpochCounter:
    """Holds the epoch when no distributed sampler was injected (Lightning calls
    ``batch_sampler.sampler.set_epoch``)."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class LengthBucketBatchSampler(BatchSampler):
    """Deterministic batches of similar-length pairs, sharded across ranks.

    Batches are built from ``lengths`` (one per pair) for the whole dataset, identically on
    every rank:

    * ``shuffle=True``: permute the pairs with a ``torch.Generator`` seeded with
      ``seed + epoch``; cut the permutation into mega-batches of
      ``batch_size * mega_batch_factor`` pairs; sort each mega-batch by length (longest
      first, stable); cut into batches; shuffle the order of the batches (same generator).
    * ``shuffle=False``: sort all pairs by length (stable) and cut into batches.
    * ``bucket=False``: skip the sorting (plain random / sequential batches).

    With ``num_replicas > 1``, batches are dealt round-robin (rank ``r`` gets batches
    ``r, r + W, ...``). If their number is not a multiple of ``W``, the first batches are
    repeated to even it out, with their indices shifted by ``len(lengths)`` so that
    :class:`PreferenceDataset` flags them ``is_duplicate`` (drop them when counting
    evaluation results; every pair then appears exactly once unflagged).

    ``num_replicas``/``rank`` default to those of a ``DistributedSampler`` passed as
    ``sampler`` (this is how Lightning injects one; its own order is ignored), else to
    ``torch.distributed`` when initialised, else 1/0. ``sampler`` is otherwise unused.
    Call :meth:`set_epoch` (Lightning does) to reshuffle each epoch.
    """

    def __init__(
        self,
        sampler: Any = None,
        batch_size: int = 1,
        drop_last: bool = False,
        *,
        lengths: Sequence[int] = (),
        shuffle: bool = True,
        bucket: bool = True,
        seed: int = 42,
        mega_batch_factor: int = 50,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        # BatchSampler.__init__ is not called on purpose: the order comes from `lengths`.
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if mega_batch_factor < 1:
            raise ValueError(f"mega_batch_factor must be >= 1, got {mega_batch_factor!r}")
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.lengths = list(lengths)
        self.shuffle = shuffle
        self.bucket = bucket
        self.seed = seed
        self.mega_batch_factor = mega_batch_factor
        injected = sampler if hasattr(sampler, "num_replicas") and hasattr(sampler, "rank") else None
        group_rank, group_world = group_rank_world()
        if num_replicas is None:
            num_replicas = injected.num_replicas if injected is not None else group_world
        if rank is None:
            rank = injected.rank if injected is not None else group_rank
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.num_replicas = num_replicas
        self.rank = rank
        self.sampler = injected if injected is not None and hasattr(injected, "set_epoch") else _EpochCounter()
        self._skip = 0

    @property
    def epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next shuffle (``seed + epoch``)."""
        self.sampler.set_epoch(epoch)

    def start_at(self, epoch: int, batch: int) -> None:
        """Resume mid-epoch: the next iteration is epoch ``epoch`` from this rank's batch ``batch`` on; later ones
        are whole epochs. ``len()`` stays the whole epoch (Lightning counts the skipped batches as done)."""
        self.set_epoch(epoch)
        self._skip = int(batch)

    def global_batches(self) -> list[list[int]]:
        """All batches of this epoch, before sharding (identical on every rank)."""
        n = len(self.lengths)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator).tolist()
        else:
            generator = None
            order = list(range(n))
        if self.bucket:
            if self.shuffle:
                chunk = self.batch_size * self.mega_batch_factor
                order = [
                    i
                    for start in range(0, n, chunk)
                    for i in sorted(order[start : start + chunk], key=lambda i: -self.lengths[i])
                ]
            else:
                order = sorted(order, key=lambda i: self.lengths[i])
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle and generator is not None and batches:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def _shard(self) -> list[list[int]]:
        batches = self.global_batches()
        if self.num_replicas == 1 or not batches:
            return batches
        n, total = len(self.lengths), math.ceil(len(batches) / self.num_replicas) * self.num_replicas
        padding = [[i + n for i in batches[k % len(batches)]] for k in range(total - len(batches))]
        return (batches + padding)[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        batches, self._skip = self._shard()[self._skip:], 0
        return iter(batches)

    def __len__(self) -> int:
        n = len(self.lengths)
        count = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return math.ceil(count / self.num_replicas) if count else 0


class ResumableBatchesMixin:
    """``state_dict``/``load_state_dict`` of a DataModule whose train loader is a :class:`LengthBucketBatchSampler`:
    where the training run is in the epoch order, so that a run resumed from a Lightning checkpoint sees the batches
    an uninterrupted run would (without it Lightning restarts the epoch from its first batch, with the shuffle of
    epoch 0: its ``set_epoch`` comes after the resumed iterator is made). The position comes from the optimizer-step
    count at the save (Lightning steps at the end of an epoch even with a partial accumulation), so Lightning's
    one-batch prefetch does not shift it. The subclass calls :meth:`_resume_sampler` on its train sampler."""

    _pending_start: tuple[int, int] | None = None

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "batch"}``: the epoch and this rank's next batch in it; ``{}`` outside a fit."""
        trainer = getattr(self, "trainer", None)
        batches = getattr(trainer, "num_training_batches", None)
        if trainer is None or not isinstance(batches, int) or batches < 1:
            return {}
        accumulate = int(trainer.accumulate_grad_batches)
        epoch, step = divmod(int(trainer.global_step), math.ceil(batches / accumulate))
        return {"epoch": epoch, "batch": step * accumulate}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Start the next train loader at the saved position (Lightning calls this before ``train_dataloader``)."""
        if "epoch" in state_dict and "batch" in state_dict:
            self._pending_start = (int(state_dict["epoch"]), int(state_dict["batch"]))

    def _resume_sampler(self, sampler: LengthBucketBatchSampler) -> LengthBucketBatchSampler:
        if self._pending_start is not None:
            sampler.start_at(*self._pending_start)
            self._pending_start = None
        return sampler


