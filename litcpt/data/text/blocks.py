"""Fixed-length token blocks: the train/validation :class:`BlockSplit` and the map-style block datasets
(:class:`TokenBlocks` of a token file, :class:`LitdataBlocks` of a streamed litdata dataset).

Block ``i`` of a token file with block size ``T`` is ``tokens[i*T : i*T + T + 1]``; a streamed litdata dataset uses
litdata's own ``TokensLoader`` blocks (see :mod:`litcpt.data.text`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from litcpt.data.mixing.permutation import derive_key, permute
from litcpt.data.text.litdata_source import LitdataTokens, check_ids
from litcpt.data.text.token_files import TokenFile

__all__ = ["BlockSplit", "LitdataBlocks", "RoundRobinBlocks", "TokenBlocks", "concat_round_robin", "make_blocks",
           "split_blocks"]

@dataclass(frozen=True)
class BlockSplit:
    """Deterministic train/validation split of ``num_blocks`` blocks (O(1) memory).

    A keyed permutation ``P`` of the blocks: validation block ``j`` is ``P(j)`` for
    ``j < num_val``, training block ``k`` is ``P(num_val + k)``.
    """

    num_blocks: int
    num_val: int
    seed: int

    @property
    def num_train(self) -> int:
        return self.num_blocks - self.num_val

    def _perm(self, idx: np.ndarray) -> np.ndarray:
        if self.num_val == 0:
            return np.asarray(idx, dtype=np.int64)
        return permute(idx, self.num_blocks, derive_key("split", self.seed))

    def train_blocks(self, k: np.ndarray | Sequence[int]) -> np.ndarray:
        """Block ids of training blocks ``k``."""
        return self._perm(np.asarray(k, dtype=np.int64) + self.num_val)

    def val_blocks(self, j: np.ndarray | Sequence[int]) -> np.ndarray:
        """Block ids of validation blocks ``j``."""
        return self._perm(np.asarray(j, dtype=np.int64))


def split_blocks(num_blocks: int, val_fraction: float, seed: int = 42, what: str = "data") -> BlockSplit:
    """Hold out ``max(1, round(val_fraction * num_blocks))`` blocks (none if ``val_fraction == 0``)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"{what}: val_split_fraction must be in [0, 1), got {val_fraction}")
    num_val = 0 if val_fraction == 0 else max(1, round(val_fraction * num_blocks))
    if num_blocks - num_val < 1:
        raise ValueError(f"{what}: {num_blocks} block(s) are too few to hold out {num_val} for validation")
    return BlockSplit(num_blocks, num_val, seed)


class TokenBlocks(Dataset):
    """Map-style dataset of ``T + 1``-token blocks of a :class:`TokenFile` as ``LongTensor``.

    ``part`` selects ``"all"`` blocks, or the ``"train"`` / ``"val"`` part of ``split``. The
    memory map is opened lazily in each process (the dataset pickles without the data).
    """

    def __init__(
        self, token_file: TokenFile, block_size: int, split: BlockSplit | None = None, part: str = "all"
    ) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if part not in ("all", "train", "val"):
            raise ValueError(f"part must be 'all', 'train' or 'val', got {part!r}")
        if part != "all" and split is None:
            raise ValueError(f"part={part!r} needs a split")
        num_blocks = token_file.num_blocks(block_size)
        if split is not None and split.num_blocks != num_blocks:
            raise ValueError(f"{token_file.source}: split is for {split.num_blocks} blocks, file has {num_blocks}")
        self.token_file = token_file
        self.block_size = block_size
        self.split = split
        self.part = part
        self._length = {
            "all": num_blocks,
            "train": split.num_train if split else 0,
            "val": split.num_val if split else 0,
        }[part]
        self._mm: np.memmap | None = None

    def __len__(self) -> int:
        return self._length

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_mm"] = None
        return state

    def block_ids(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """Block ids in the token file of dataset items ``indices``."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self._length):
            raise IndexError(f"block index out of range [0, {self._length})")
        if self.part == "train":
            return self.split.train_blocks(idx)  # type: ignore[union-attr]
        if self.part == "val":
            return self.split.val_blocks(idx)  # type: ignore[union-attr]
        return idx

    def read(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """Items ``indices`` as an int64 array ``[len(indices), T + 1]``."""
        if self._mm is None:
            self._mm = self.token_file.memmap()
        blocks = self.block_ids(indices)
        T = self.block_size
        out = np.empty((len(blocks), T + 1), dtype=np.int64)
        for row, b in enumerate(blocks.tolist()):
            out[row] = self._mm[b * T : b * T + T + 1]
        return out

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -self._length <= index < self._length:
            raise IndexError(f"block index {index} out of range [0, {self._length})")
        return torch.from_numpy(self.read([index % self._length])[0])


@functools.lru_cache(maxsize=1)
def _chunked_index() -> Any:
    """litdata's ``ChunkedIndex`` (item + chunk: skips litdata's per-read search over all chunks), or ``None``."""
    try:
        from litdata.streaming.sampler import ChunkedIndex
    except ImportError:  # pragma: no cover - other litdata layouts: plain int index
        return None
    return ChunkedIndex


class LitdataBlocks(TokenBlocks):
    """:class:`TokenBlocks` of a streamed :class:`LitdataTokens`: block ``b`` is ``dataset[b]`` of a
    ``litdata.StreamingDataset`` with ``TokensLoader(block_size=T + 1)``, opened lazily in each
    process (litdata fetches and caches the chunks; the block order is decided by the caller).
    Every read checks that the ids are below the tokenizer's vocabulary size.
    """

    def __init__(
        self, tokens: LitdataTokens, block_size: int, split: BlockSplit | None = None, part: str = "all"
    ) -> None:
        super().__init__(tokens, block_size, split, part)  # type: ignore[arg-type]
        self._ds: Any = None
        self._pid: int | None = None
        self._chunk_ends: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_ds"] = state["_pid"] = None
        return state

    def _dataset(self) -> Any:
        if self._ds is None or self._pid != os.getpid():  # never reuse a dataset across a fork
            self._ds = self.token_file.dataset(self.block_size)  # type: ignore[attr-defined]
            self._pid = os.getpid()
        return self._ds

    def read(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """Items ``indices`` as an int64 array ``[len(indices), T + 1]`` (read in block order)."""
        blocks = self.block_ids(indices)
        ds = self._dataset()
        T = self.block_size
        if self._chunk_ends is None:  # O(number of chunks); saves litdata a linear chunk search per read
            self._chunk_ends = np.cumsum(self.token_file.chunk_blocks(T))  # type: ignore[attr-defined]
        chunks = np.searchsorted(self._chunk_ends, blocks, side="right").tolist()
        chunked_index = _chunked_index()
        out = np.empty((len(blocks), T + 1), dtype=np.int64)
        for row in np.argsort(blocks, kind="stable").tolist():  # consecutive reads stay in a chunk
            b = int(blocks[row])
            item = ds[chunked_index(index=b, chunk_index=chunks[row])] if chunked_index is not None else ds[b]
            ids = np.asarray(item.numpy() if hasattr(item, "numpy") else item).reshape(-1)
            if ids.size != T + 1:
                raise ValueError(f"{self.token_file.source}: block {b} has {ids.size} tokens, expected {T + 1}")
            out[row] = ids
        check_ids(out, self.token_file.id_space, f"{self.token_file.source}")  # type: ignore[attr-defined]
        return out


def make_blocks(
    tokens: TokenFile | LitdataTokens, block_size: int, split: BlockSplit | None = None, part: str = "all"
) -> TokenBlocks:
    """:class:`TokenBlocks` of a token file, or :class:`LitdataBlocks` of a streamed litdata dataset."""
    if isinstance(tokens, LitdataTokens):
        return LitdataBlocks(tokens, block_size, split, part)
    return TokenBlocks(tokens, block_size, split, part)


def concat_round_robin(datasets: Sequence[Dataset]) -> list[tuple[int, int]]:
    """Index ``(dataset, item)`` pairs interleaving ``datasets`` one item at a time until all are used."""
    sizes = [len(d) for d in datasets]  # type: ignore[arg-type]
    order: list[tuple[int, int]] = []
    for i in range(max(sizes, default=0)):
        order.extend((k, i) for k, n in enumerate(sizes) if i < n)
    return order


class RoundRobinBlocks(Dataset):
    """Map-style dataset interleaving several block datasets (for single-loader validation)."""

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        self.datasets = list(datasets)
        self.order = np.asarray(concat_round_robin(self.datasets), dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> torch.Tensor:
        k, i = self.order[index].tolist()
        return self.datasets[k][i]
