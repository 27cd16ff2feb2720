"""Preference pairs (prompt, chosen, rejected) for reward models and DPO.

The module is a pipeline of small, mostly pure steps; the :class:`Preference` DataModule
at the end wires them together for LitGPT / Lightning:

1. **Parse** -- :func:`load_preference_pairs` reads ``.jsonl``, ``.jsonl.gz``, ``.json``,
   ``.parquet``, a ``save_to_disk`` directory, a ``datasets`` object, a list of dicts or a
   hub name, and turns every row into a :class:`PreferencePair`. Three row formats are
   understood (auto-detected per row, or forced with ``format=``):

   * ``"prompt"``: ``prompt``/``chosen``/``rejected`` strings (RewardBench, TRL "standard").
   * ``"hh"``: whole conversations as text in ``chosen``/``rejected`` and no ``prompt``
     (Anthropic HH-RLHF). See :func:`split_conversation` for the exact rule.
   * ``"chat"``: lists of ``{"role", "content"}`` messages in ``chosen``/``rejected`` (and
     optionally ``prompt``), rendered to text (see :func:`render_chat_pair`).

2. **Split** -- :func:`split_pairs` makes a deterministic train/test split.
3. **Tokenise + truncate** -- :func:`tokenize_pairs` (see :func:`truncate_sequence`).
4. **Batch** -- :class:`LengthBucketBatchSampler` and :func:`collate_preference`.

One module per step: :mod:`~litcpt.data.rows` (reading any source), :mod:`~litcpt.data.preference.pair_rows` and
:mod:`~litcpt.data.preference.chat` (parsing, the HH convention, chat rendering),
:mod:`~litcpt.data.preference.pair_loading` (loading and
the split), :mod:`~litcpt.data.preference.pair_tokens` (tokenisation and truncation),
:mod:`~litcpt.data.preference.batching` (datasets,
collation, samplers). This module holds the DataModule and keeps every name importable from here.

See ``docs/preference-data.md`` for examples and the exact batch layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litgpt.data import DataModule
from litgpt.prompts import PromptStyle
from litgpt.tokenizer import Tokenizer
from torch.utils.data import DataLoader

from litcpt.data.preference.batching import (
    PADDING_SIDES,
    LengthBucketBatchSampler,
    PreferenceDataset,
    ResumableBatchesMixin,
    get_preference_collate_fn,
    pad_id_of,
    padding_fraction,
)
from litcpt.data.preference.chat import (
    resolve_prompt_style,
)
from litcpt.data.preference.pair_loading import (
    LoadReport,
    bundled_preference_file,
    load_preference_pairs_with_report,
    split_pairs,
)
from litcpt.data.preference.pair_rows import (
    FORMATS,
    PreferencePair,
)
from litcpt.data.preference.pair_tokens import (
    TRUNCATIONS,
    TokenizationStats,
    length_limit,
    tokenize_pairs,
)
from litcpt.data.rows import check_choice
from litcpt.data.textio import DEFAULT_ENCODING
from litcpt.runtime.ranks import group_rank_world

__all__ = ["Preference"]


def _print_rank_zero(message: str) -> None:
    if group_rank_world()[0] == 0:
        print(message, flush=True)


@dataclass
class Preference(ResumableBatchesMixin, DataModule):
    """Preference pairs for reward-model and DPO training (LitGPT DataModule).

    ``batch_size`` given to :meth:`connect` counts *pairs*: a batch has ``2 * batch_size``
    rows (see :func:`collate_preference`). The effective length limit is the smaller of
    ``max_length`` and the ``max_seq_length`` given to :meth:`connect` (either may be
    unset).
    """

    train_data_path: str | Path | None = None
    """Training pairs (any source :func:`load_preference_pairs` accepts). ``None``: the
    bundled 2000 Anthropic HH-RLHF harmless-base pairs."""
    val_data_path: str | Path | None = None
    """Held-out pairs. ``None``: split ``val_split_fraction`` off the training pairs with
    :func:`split_pairs`."""
    val_split_fraction: float = 0.1
    format: str = "auto"
    """Row format: "auto", "prompt", "hh" or "chat"."""
    max_length: int | None = None
    """Maximum tokens of prompt + response per sequence (``None``: no limit of its own)."""
    truncation: str = "left"
    """"left", "keep_end" or "drop" (see :func:`truncate_sequence`)."""
    on_bad_row: str = "error"
    """"error" or "skip"."""
    padding_side: str = "right"
    bucket: bool = True
    """Group pairs of similar length in batches."""
    seed: int = 42
    num_workers: int = 0
    prompt_style: str | PromptStyle | None = None
    """For "chat" rows; ``None`` uses the default Human/Assistant template."""
    encoding: str = DEFAULT_ENCODING
    """Text encoding of ``.jsonl``/``.json`` files (``utf-8``, ``latin-1``, ``cp1252``, ...)."""

    tokenizer: Tokenizer | None = field(default=None, init=False, repr=False)
    batch_size: int = field(default=1, init=False, repr=False)
    max_seq_length: int = field(default=-1, init=False, repr=False)
    train_dataset: PreferenceDataset | None = field(default=None, init=False, repr=False)
    test_dataset: PreferenceDataset | None = field(default=None, init=False, repr=False)
    train_report: LoadReport | None = field(default=None, init=False, repr=False)
    test_report: LoadReport | None = field(default=None, init=False, repr=False)
    train_stats: TokenizationStats | None = field(default=None, init=False, repr=False)
    test_stats: TokenizationStats | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__init__()
        check_choice("format", self.format, FORMATS)
        check_choice("truncation", self.truncation, TRUNCATIONS)
        check_choice("on_bad_row", self.on_bad_row, ("error", "skip"))
        check_choice("padding_side", self.padding_side, PADDING_SIDES)
        if not 0.0 <= self.val_split_fraction < 1.0:
            raise ValueError(f"val_split_fraction must be in [0, 1), got {self.val_split_fraction!r}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be >= 2 or None, got {self.max_length!r}")
        self.prompt_style = resolve_prompt_style(self.prompt_style)

    def connect(
        self, tokenizer: Tokenizer | None = None, batch_size: int = 1, max_seq_length: int | None = None, **kwargs: Any
    ) -> None:
        """Set the tokenizer, the number of pairs per batch and the model's context limit."""
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_seq_length = -1 if max_seq_length is None else max_seq_length

    @property
    def effective_max_length(self) -> int | None:
        """``min(max_length, max_seq_length)`` over the ones that are set."""
        return length_limit(self.max_length, self.max_seq_length)

    @property
    def pad_id(self) -> int:
        """Padding value of ``input_ids`` (:func:`~litcpt.data.preference.batching.pad_id_of` the tokenizer)."""
        return pad_id_of(self.tokenizer)

    def _load(self, source: Any) -> tuple[list[PreferencePair], LoadReport]:
        return load_preference_pairs_with_report(
            source, format=self.format, on_bad_row=self.on_bad_row, prompt_style=self.prompt_style,
            encoding=self.encoding,
        )

    def setup(self, stage: str = "") -> None:
        """Parse and tokenise (once; later calls are no-ops) and print the statistics."""
        if self.train_dataset is not None:
            return
        if self.tokenizer is None:
            raise ValueError("Preference.setup: call connect(tokenizer=...) first")
        source = bundled_preference_file() if self.train_data_path is None else self.train_data_path
        train_pairs, self.train_report = self._load(source)
        if not train_pairs:  # else Lightning's "No training batches" and exit 0, without a model
            raise ValueError(f"data.train_data_path: {str(source)!r} holds no preference pairs")
        if self.val_data_path is None:
            train_pairs, test_pairs = split_pairs(train_pairs, self.val_split_fraction, self.seed)
            self.test_report = None
        else:
            test_pairs, self.test_report = self._load(self.val_data_path)
        limit = self.effective_max_length
        options = {"max_length": limit, "truncation": self.truncation}
        train_items, self.train_stats = tokenize_pairs(train_pairs, self.tokenizer, **options)
        test_items, self.test_stats = tokenize_pairs(test_pairs, self.tokenizer, **options)
        if not train_items:
            raise ValueError(f"data.train_data_path: no training pairs of {str(source)!r} are left after the "
                             f"validation split and truncation ({len(train_pairs)} before truncation)")
        self.train_dataset = PreferenceDataset(train_items)
        self.test_dataset = PreferenceDataset(test_items)
        lines = [self.train_report.summary()]
        if self.test_report is not None:
            lines.append(self.test_report.summary())
        else:
            fraction, seed = self.val_split_fraction, self.seed
            lines.append(f"split {len(train_pairs)} train / {len(test_pairs)} test (fraction {fraction}, seed {seed})")
        lines += [f"train: {self.train_stats.summary()}", f"test: {self.test_stats.summary()}"]
        sampler = self._batch_sampler(self.train_dataset, shuffle=True)
        waste = padding_fraction(sampler.global_batches(), self.train_dataset.row_lengths)
        per_rank = f" per rank ({sampler.num_replicas} ranks)" if sampler.num_replicas > 1 else ""
        lines.append(
            f"train batches: {len(sampler)}{per_rank} of {self.batch_size} pairs, "
            f"padding {waste:.1%} (bucket={self.bucket})"
        )
        _print_rank_zero("Preference data:\n  " + "\n  ".join(lines))

    def _batch_sampler(self, dataset: PreferenceDataset, shuffle: bool) -> LengthBucketBatchSampler:
        return LengthBucketBatchSampler(
            batch_size=self.batch_size, lengths=dataset.lengths, shuffle=shuffle, bucket=self.bucket, seed=self.seed
        )

    def _dataloader(self, dataset: PreferenceDataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise ValueError("Preference: call setup() before requesting a dataloader")
        sampler = self._batch_sampler(dataset, shuffle)
        return DataLoader(
            dataset,
            batch_sampler=self._resume_sampler(sampler) if shuffle else sampler,
            num_workers=self.num_workers,
            collate_fn=get_preference_collate_fn(self.pad_id, self.padding_side),
        )

    def train_dataloader(self) -> DataLoader:
        """Bucketed, shuffled (``seed + epoch``) batches of the training pairs (from the saved position after a
        resume, see :class:`~litcpt.data.preference.batching.ResumableBatchesMixin`)."""
        return self._dataloader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Bucketed, unshuffled batches of the held-out pairs."""
        return self._dataloader(self.test_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Same as :meth:`val_dataloader`."""
        return self.val_dataloader()
