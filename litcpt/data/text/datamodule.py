"""``TextFiles``: pretraining data module (text corpus -> cached tokens -> resumable block stream).

Works with ``litgpt pretrain`` (``--data litcpt.data.TextFiles --data.train_data_path ...``) and
with a Lightning ``Trainer`` (``trainer.fit(model, datamodule=TextFiles(...))`` after
``connect(tokenizer, batch_size, max_seq_length)``). See ``docs/data.md``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from litgpt.data import DataModule
from torch.utils.data import DataLoader

from litcpt.data.mixing.blend import Mixer
from litcpt.data.mixing.stream import BlockStream, StreamLoader
from litcpt.data.text.blocks import BlockSplit, TokenBlocks, make_blocks, split_blocks
from litcpt.data.text.litdata_source import LitdataTokens
from litcpt.data.text.token_cache import open_tokens
from litcpt.data.text.token_files import TokenFile
from litcpt.data.textio import check_encoding

__all__ = ["ResumableStreamMixin", "TextFiles", "load_tokenizer"]


def load_tokenizer(tokenizer: Any) -> Any:
    """A ``litgpt.Tokenizer`` from a tokenizer, a tokenizer directory, or ``None``."""
    if tokenizer is None or not isinstance(tokenizer, (str, Path)):
        return tokenizer
    from litgpt import Tokenizer

    if not Path(tokenizer).is_dir():
        raise ValueError(f"tokenizer dir {str(tokenizer)!r} does not exist")
    return Tokenizer(tokenizer)


def _check_block_size(max_seq_length: int | None, what: str) -> int:
    if max_seq_length is None or int(max_seq_length) < 1:
        raise ValueError(
            f"{what}: call connect(max_seq_length=...) with a positive block size first, got {max_seq_length}"
        )
    return int(max_seq_length)


class ResumableStreamMixin:
    """Global-stream position bookkeeping shared by the litcpt data modules.

    The position is the number of samples of the global training stream consumed by all ranks.
    Under a Lightning ``Trainer`` it is derived from the optimizer-step count
    (``global_step * accumulate_grad_batches * batch_size * world_size``, relative to the state
    the module was resumed from): Lightning fetches one batch ahead, so counting yielded batches
    would be off by one. Otherwise (``litgpt pretrain``, plain loops) the train loader counts the
    batches handed to its consumer. ``state_dict()``/``load_state_dict()`` carry the position;
    Lightning stores it in ``.ckpt`` files and restores it before ``train_dataloader()`` is called.
    """

    batch_size: int
    trainer: Any
    _loader: StreamLoader | None
    _resume: tuple[int, int]

    def _stream_fingerprint(self) -> dict[str, Any]:  # pragma: no cover - overridden
        return {}

    def _trainer_position(self) -> int | None:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None
        per_step = int(trainer.accumulate_grad_batches) * int(self.batch_size) * int(trainer.world_size)
        samples, step = self._resume
        return samples + (int(trainer.global_step) - step) * per_step

    def stream_position(self) -> int:
        """Global samples consumed so far (where the next train iteration starts)."""
        pos = self._trainer_position()
        if pos is not None:
            return pos
        if self._loader is not None:
            return self._loader.position()
        return self._resume[0]

    def state_dict(self) -> dict[str, Any]:
        """``{"consumed_samples", "global_step", "stream"}``; plain Python types only."""
        trainer = getattr(self, "trainer", None)
        return {
            "consumed_samples": int(self.stream_position()),
            "global_step": int(trainer.global_step) if trainer is not None else 0,
            "stream": self._stream_fingerprint(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the training stream at ``state_dict["consumed_samples"]``."""
        if "consumed_samples" not in state_dict:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: expected key 'consumed_samples', got {sorted(state_dict)}"
            )
        self._resume = (int(state_dict["consumed_samples"]), int(state_dict.get("global_step") or 0))
        saved = state_dict.get("stream")
        if saved and self._has_sources() and saved != self._stream_fingerprint():
            warnings.warn(
                f"{type(self).__name__}: resuming a stream saved with different data settings "
                f"({saved} != {self._stream_fingerprint()}); the position is kept as a sample count",
                UserWarning,
                stacklevel=2,
            )
        if self._loader is not None:
            self._loader.load_state_dict({"consumed_samples": self._resume[0]})

    def _has_sources(self) -> bool:  # pragma: no cover - overridden
        return False


class TextFiles(ResumableStreamMixin, DataModule):
    """Pretraining corpus from text files or an HF dataset, as fixed-length token blocks.

    Args:
        train_data_path: a ``.txt``/``.jsonl``/``.json``/``.parquet`` file (``.gz`` too), a directory
            of them (recursive), a ``datasets`` ``save_to_disk`` directory, a litcpt token
            directory, ``"hf:<dataset name or path>[@split]"``, or ``"litdata:<dir or s3://...>"``
            (a ``litdata.optimize(..., item_loader=TokensLoader())`` dataset, streamed without a
            token cache; see ``docs/data.md``). A ``.txt`` file is one document.
        val_data_path: same forms; if ``None``, ``val_split_fraction`` of the training blocks
            are held out (a seeded choice of blocks, the same for the same corpus, tokenizer,
            block size, fraction and seed).
        val_split_fraction: fraction of blocks held out for validation, in (0, 1).
        text_field: field/column holding the text in JSON/parquet/HF data.
        name: name of this corpus (validation metric ``val/loss/<name>``; default ``"val"``).
        seed: seed of the validation split and of the per-epoch shuffles.
        num_workers: dataloader worker processes (the stream order does not depend on it).
        cache_dir: where token files are cached (default ``$LITCPT_CACHE_DIR/tokens`` or
            ``~/.cache/litcpt/tokens``).
        hf_kwargs: extra keyword arguments for ``datasets.load_dataset`` (``hf:`` paths only),
            e.g. ``{"data_files": "train.jsonl"}`` with ``train_data_path="hf:json"``.
        litdata_kwargs: extra keyword arguments for ``litdata.StreamingDataset`` (streamed
            ``litdata:`` paths only), e.g. ``{"cache_dir": "/scratch/chunks", "max_cache_size":
            "200GB", "storage_options": {...}}``; not ``item_loader``/``shuffle``/``subsample``.
        encoding: text encoding of ``.txt``/``.jsonl``/``.json`` files (ASCII-compatible: ``utf-8``,
            ``latin-1``, ``cp1252``, ...); a byte that does not decode is reported with file and line.

    Training batches are ``LongTensor[batch_size, max_seq_length + 1]`` from an infinite,
    seeded stream, reshuffled every epoch; see :mod:`litcpt.data.mixing`.
    """

    def __init__(
        self,
        train_data_path: str | Path,
        val_data_path: str | Path | None = None,
        val_split_fraction: float = 0.05,
        text_field: str = "text",
        name: str | None = None,
        seed: int = 42,
        num_workers: int = 0,
        cache_dir: str | Path | None = None,
        hf_kwargs: dict[str, Any] | None = None,
        litdata_kwargs: dict[str, Any] | None = None,
        encoding: str = "utf-8",
    ) -> None:
        super().__init__()
        if val_data_path is None and not 0 < float(val_split_fraction) < 1:
            raise ValueError(
                f"TextFiles({train_data_path}): val_split_fraction must be in (0, 1), got {val_split_fraction}"
            )
        if int(num_workers) < 0:
            raise ValueError(f"TextFiles({train_data_path}): num_workers must be >= 0, got {num_workers}")
        self.train_data_path = train_data_path
        self.val_data_path = val_data_path
        self.val_split_fraction = float(val_split_fraction)
        self.text_field = text_field
        self.name = name
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.cache_dir = cache_dir
        self.hf_kwargs = dict(hf_kwargs) if hf_kwargs else None
        self.litdata_kwargs = dict(litdata_kwargs) if litdata_kwargs else None
        self.encoding = check_encoding(encoding, f"TextFiles({train_data_path}): encoding")

        self.tokenizer: Any = None
        self.batch_size = 1
        self.max_seq_length: int | None = None
        self._train_tokens: TokenFile | LitdataTokens | None = None
        self._val_tokens: TokenFile | LitdataTokens | None = None
        self._split: BlockSplit | None = None
        self._loader: StreamLoader | None = None
        self._resume = (0, 0)

    def __repr__(self) -> str:
        return (f"TextFiles(train_data_path={str(self.train_data_path)!r}, val_data_path={self.val_data_path!r}, "
                f"name={self.name!r})")

    @property
    def label(self) -> str:
        """Name used in messages: ``name`` or the training path."""
        return self.name or str(self.train_data_path)

    @property
    def val_names(self) -> list[str]:
        """One name per validation dataloader."""
        return [self.name or "val"]

    def connect(
        self, tokenizer: Any = None, batch_size: int = 1, max_seq_length: int | None = -1, **kwargs: Any
    ) -> None:
        """Set what litgpt decides at run time: tokenizer (or its dir), micro-batch size, block size."""
        if int(batch_size) < 1:
            raise ValueError(f"TextFiles({self.label}): batch_size must be >= 1, got {batch_size}")
        self.tokenizer = load_tokenizer(tokenizer)
        self.batch_size = int(batch_size)
        self.max_seq_length = None if max_seq_length is None or int(max_seq_length) < 1 else int(max_seq_length)
        self._train_tokens = self._val_tokens = self._split = None

    def _ensure(self, create: bool = True) -> None:
        if self._train_tokens is not None:
            return
        T = _check_block_size(self.max_seq_length, f"TextFiles({self.label})")
        common = {
            "block_size": T,
            "cache_dir": self.cache_dir,
            "text_field": self.text_field,
            "hf_kwargs": self.hf_kwargs,
            "litdata_kwargs": self.litdata_kwargs,
            "create": create,
            "encoding": self.encoding,
        }
        train = open_tokens(self.train_data_path, self.tokenizer, what="train_data_path", **common)
        val = None
        if self.val_data_path is not None:
            val = open_tokens(self.val_data_path, self.tokenizer, what="val_data_path", **common)
            if val.num_blocks(T) < 1:
                raise ValueError(
                    f"val_data_path {str(self.val_data_path)!r}: {val.num_tokens} tokens are too few for one block of "
                    f"{T}+1"
                )
            if val.tokenizer != train.tokenizer:
                raise ValueError(
                    f"val_data_path {str(self.val_data_path)!r}: tokenised with another tokenizer than train_data_path"
                )
        n = train.num_blocks(T)
        if n < 1:
            raise ValueError(
                f"train_data_path {str(self.train_data_path)!r}: {train.num_tokens} tokens are too few for one block "
                f"of {T}+1"
            )
        fraction = 0.0 if val is not None else self.val_split_fraction
        self._split = split_blocks(n, fraction, self.seed, what=f"train_data_path {str(self.train_data_path)!r}")
        self._train_tokens, self._val_tokens = train, val

    def prepare_data(self) -> None:
        """Tokenise and cache the corpus (litgpt runs this on rank 0 first). A large corpus not yet in the cache is
        an error under several processes: prepare it with ``litcpt prepare-data`` (see litcpt.data.prepare)."""
        from litcpt.data.prepare import check_textfiles_prepared

        check_textfiles_prepared(self)
        self._ensure(create=True)

    def setup(self, stage: str = "") -> None:
        """Open the cached token files (tokenising them if ``prepare_data`` was not run)."""
        self._ensure(create=True)

    # -------------------------------------------------------------- datasets (also used by Replay)

    def train_blocks(self) -> TokenBlocks:
        """Training blocks (``T + 1`` tokens each) of this corpus."""
        self._ensure()
        assert self._train_tokens is not None and self.max_seq_length is not None
        return make_blocks(self._train_tokens, self.max_seq_length, self._split, part="train")

    def val_blocks(self) -> TokenBlocks:
        """Held-out blocks (the validation file, or the held-out split of the training file)."""
        self._ensure()
        assert self._train_tokens is not None and self.max_seq_length is not None
        if self._val_tokens is not None:
            return make_blocks(self._val_tokens, self.max_seq_length)
        return make_blocks(self._train_tokens, self.max_seq_length, self._split, part="val")

    def token_file(self) -> TokenFile | LitdataTokens:
        """Metadata of the training tokens (a token file, or a streamed litdata dataset)."""
        self._ensure()
        assert self._train_tokens is not None
        return self._train_tokens

    def _has_sources(self) -> bool:
        return self._train_tokens is not None

    def _stream_fingerprint(self) -> dict[str, Any]:
        if self._train_tokens is None:
            return {}
        return {
            "sources": [[self.name or "train", len(self.train_blocks()), self._train_tokens.tokenizer]],
            "block_size": self.max_seq_length,
            "seed": self.seed,
        }

    def train_stream(self) -> BlockStream:
        """The (infinite) training stream of micro-batches."""
        return BlockStream([self.train_blocks()], Mixer(), self.batch_size, seed=self.seed, names=[self.label])

    # -------------------------------------------------------------- loaders

    def train_dataloader(self) -> StreamLoader:
        """Infinite loader of ``LongTensor[B, T + 1]``, resumable (``state_dict``/``load_state_dict``)."""
        loader = StreamLoader(
            self.train_stream(),
            num_workers=self.num_workers,
            position_fn=self._trainer_position,
            pin_memory=torch.cuda.is_available(),
        )
        loader.load_state_dict({"consumed_samples": self.stream_position()})
        self._loader = loader
        return loader

    def val_dataloader(self) -> DataLoader:
        """Held-out blocks in a fixed order (not shuffled, last batch kept)."""
        return DataLoader(
            self.val_blocks(),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
        )
