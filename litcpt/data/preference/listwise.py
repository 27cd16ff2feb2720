"""Listwise preference data: one chosen completion and a list of rejected ones per prompt (RewardBench 2's shape).

Rows: ``prompt`` (string), ``chosen`` (a string, or a list of one), ``rejected`` (a list of strings; with
``ranked=True`` ordered best first, so ``[chosen] + rejected`` is a full ranking for the Plackett–Luce loss). Read
by :func:`litcpt.data.preference.best_of_n.load_best_of_n_rows` from any source :class:`litcpt.data.Preference` reads;
tokenised
as ``litcpt`` does for pairs (prompt once, each completion with EOS, prompt cut from the left when too long).

A batch is :func:`litcpt.data.preference.best_of_n.collate_groups` (``micro_batch_size`` prompts, all their completions
as rows,
``group``/``shared``/``sizes``) plus ``is_duplicate`` (prompts repeated only to give every rank the same number of
batches). Batches group prompts of similar length (:class:`~litcpt.data.preference.batching.LengthBucketBatchSampler`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from litgpt.data import DataModule
from torch.utils.data import DataLoader

from litcpt.data.preference.batching import (
    LengthBucketBatchSampler,
    RankPaddedDataset,
    ResumableBatchesMixin,
    pad_id_of,
)
from litcpt.data.preference.pair_tokens import length_limit
from litcpt.data.textio import DEFAULT_ENCODING

__all__ = ["Listwise", "ListwiseDataset", "collate_listwise"]


class ListwiseDataset(RankPaddedDataset):
    """Tokenised groups as ``(group, is_duplicate)``; indices ``n..2n-1`` are rank padding (see
    :class:`~litcpt.data.preference.batching.RankPaddedDataset`)."""

    what = "prompts"

    def __getitem__(self, index: int) -> tuple[Any, bool]:
        return self.lookup(index)


def collate_listwise(items: list[tuple[Any, bool]], pad_id: int = 0) -> dict[str, Any]:
    """:func:`~litcpt.data.preference.best_of_n.collate_groups` of the groups plus ``is_duplicate [B]``."""
    from litcpt.data.preference.best_of_n import collate_groups

    batch = collate_groups([g for g, _ in items], pad_id=pad_id)
    batch["is_duplicate"] = torch.tensor([d for _, d in items], dtype=torch.bool)
    return batch


@dataclass
class Listwise(ResumableBatchesMixin, DataModule):
    """Listwise preference data for ``litcpt reward`` (a LitGPT DataModule); ``batch_size`` counts prompts.

    Example recipe fragment::

        data:
          class_path: litcpt.data.Listwise
          init_args: {train_data_path: data/listwise.jsonl, max_length: 128}
    """

    train_data_path: str | Path | None = None
    """Training rows (required)."""
    val_data_path: str | Path | None = None
    """Held-out rows (``None``: split ``val_split_fraction`` off the training rows, deterministically)."""
    val_split_fraction: float = 0.1
    max_length: int | None = None
    """Tokens of prompt + completion per row (``None``: the model's context)."""
    ranked: bool = False
    """``rejected`` is ordered best first: ``[chosen] + rejected`` is a full ranking (needed by ``plackett_luce``)."""
    split: str | None = None
    """Split of a hub dataset or dataset dict."""
    seed: int = 42
    encoding: str = DEFAULT_ENCODING
    """Text encoding of ``.jsonl``/``.json`` files (``utf-8``, ``latin-1``, ``cp1252``, ...)."""

    tokenizer: Any = field(default=None, init=False, repr=False)
    batch_size: int = field(default=1, init=False, repr=False)
    max_seq_length: int = field(default=-1, init=False, repr=False)
    train_dataset: ListwiseDataset | None = field(default=None, init=False, repr=False)
    test_dataset: ListwiseDataset | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__init__()
        if self.train_data_path is None:
            raise ValueError("Listwise: train_data_path is required (rows with prompt, chosen and a list of rejected)")
        if not 0.0 <= self.val_split_fraction < 1.0:
            raise ValueError(f"val_split_fraction must be in [0, 1), got {self.val_split_fraction!r}")

    def connect(self, tokenizer: Any = None, batch_size: int = 1, max_seq_length: int | None = None,
                **kwargs: Any) -> None:
        self.tokenizer, self.batch_size = tokenizer, batch_size
        self.max_seq_length = -1 if max_seq_length is None else max_seq_length

    def _rows(self, source: Any) -> list:
        from litcpt.data.preference.best_of_n import load_best_of_n_rows

        rows = load_best_of_n_rows(source, split=self.split, encoding=self.encoding)
        for number, row in enumerate(rows, start=1):
            if row.num_correct != 1:
                raise ValueError(f"{source}: row {number}: field 'chosen': expected one chosen completion for "
                                 f"listwise training, got {row.num_correct}")
        return rows

    def setup(self, stage: str = "") -> None:
        """Read, split and tokenise (once)."""
        if self.train_dataset is not None:
            return
        if self.tokenizer is None:
            raise ValueError("Listwise.setup: call connect(tokenizer=...) first")
        from litcpt.data.preference.best_of_n import tokenize_groups
        from litcpt.data.preference.pair_loading import split_pairs
        from litcpt.data.preference.pair_rows import PreferencePair

        train = self._rows(self.train_data_path)
        if self.val_data_path is None:
            # split_pairs ranks by content; a stand-in pair per row keeps its rule (stable, order-free)
            keys = [PreferencePair(r.prompt, r.completions[0], "\x00".join(r.completions[1:])) for r in train]
            kept, held = split_pairs(keys, self.val_split_fraction, self.seed)
            held_ids = {id(k) for k in held}
            test = [r for r, k in zip(train, keys) if id(k) in held_ids]
            train = [r for r, k in zip(train, keys) if id(k) not in held_ids]
        else:
            test = self._rows(self.val_data_path)
        limit = length_limit(self.max_length, self.max_seq_length)
        train_groups, _ = tokenize_groups(train, self.tokenizer, max_length=limit)
        test_groups, _ = tokenize_groups(test, self.tokenizer, max_length=limit)
        self.train_dataset = ListwiseDataset(train_groups)
        self.test_dataset = ListwiseDataset([dataclasses.replace(g, index=i) for i, g in enumerate(test_groups)])

    def _loader(self, dataset: ListwiseDataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise ValueError("Listwise: call setup() before requesting a dataloader")
        sampler = LengthBucketBatchSampler(batch_size=self.batch_size, lengths=dataset.lengths, shuffle=shuffle,
                                           seed=self.seed)
        return DataLoader(dataset, batch_sampler=self._resume_sampler(sampler) if shuffle else sampler,
                          collate_fn=partial(collate_listwise, pad_id=pad_id_of(self.tokenizer)))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
