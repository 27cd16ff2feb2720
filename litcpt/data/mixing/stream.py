"""The resumable training stream: :class:`BlockStream` slices the global stream of samples (source picked by
:class:`~litcpt.data.mixing.blend.Mixer`, block by a per-epoch :func:`~litcpt.data.mixing.permutation.permute`) for
ranks and
dataloader workers; :class:`StreamLoader` counts what it hands out and resumes exactly (see
:mod:`litcpt.data.mixing`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from litcpt.data.mixing.blend import Mixer
from litcpt.data.mixing.permutation import derive_key, permute
from litcpt.runtime.ranks import group_rank_world

__all__ = ["BlockSource", "BlockStream", "SourceExhaustedError", "StreamLoader", "resolve_rank"]

class BlockSource(Protocol):
    """What the stream needs from a source: its number of training blocks and a batched reader."""

    def __len__(self) -> int: ...

    def read(self, indices: np.ndarray) -> np.ndarray: ...


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the explicit values if given, else ``torch.distributed``'s, else (0, 1)."""
    if rank is None or world_size is None:
        group_rank, group_world = group_rank_world()
        rank = group_rank if rank is None else rank
        world_size = group_world if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid rank {rank} for world size {world_size}")
    return rank, world_size


class SourceExhaustedError(RuntimeError):
    """A source configured with ``on_exhausted="error"`` ran out of training blocks."""


class BlockStream(IterableDataset):
    """Infinite stream of micro-batches (``LongTensor[B, T + 1]``) from a :class:`Mixer` of sources.

    Args:
        sources: one map-style block source per mixer source (``len()`` = training blocks,
            ``read(idx) -> ndarray[len(idx), T + 1]``).
        mixer: decides which source each global position comes from.
        batch_size: micro-batch size ``B`` (per rank).
        seed: shuffling seed; source ``k`` in epoch ``e`` uses ``derive_key(seed, k, e)``.
        names: one name per source (error messages).
        strict: per source, raise :class:`SourceExhaustedError` instead of starting a 2nd epoch.
        chunk_batches: micro-batches computed per vectorised step of a worker.

    Set the start position (global samples already consumed) and, for tests, an explicit
    rank/world size with :meth:`configure`; otherwise the rank is read from ``torch.distributed``
    when iteration starts.
    """

    def __init__(
        self,
        sources: Sequence[BlockSource],
        mixer: Mixer,
        batch_size: int,
        seed: int = 42,
        names: Sequence[str] | None = None,
        strict: Sequence[bool] | None = None,
        chunk_batches: int = 16,
    ) -> None:
        if len(sources) != mixer.num_sources:
            raise ValueError(f"BlockStream: {len(sources)} sources for a mixer of {mixer.num_sources}")
        if batch_size < 1:
            raise ValueError(f"BlockStream: batch_size must be >= 1, got {batch_size}")
        for k, source in enumerate(sources):
            if len(source) < 1:
                name = names[k] if names else k
                raise ValueError(f"BlockStream: source {name!r} has no training blocks")
        self.sources = list(sources)
        self.mixer = mixer
        self.batch_size = batch_size
        self.seed = seed
        self.names = list(names) if names is not None else [f"source{k}" for k in range(len(sources))]
        self.strict = list(strict) if strict is not None else [False] * len(sources)
        self.chunk_batches = max(1, chunk_batches)
        self.start = 0
        self.rank: int | None = None
        self.world_size: int | None = None

    def configure(self, start: int = 0, rank: int | None = None, world_size: int | None = None) -> None:
        """Set the global start position and (optionally) an explicit rank / world size."""
        if start < 0:
            raise ValueError(f"BlockStream: start must be >= 0, got {start}")
        self.start, self.rank, self.world_size = int(start), rank, world_size

    def positions(self, batch_indices: np.ndarray, rank: int, world_size: int) -> np.ndarray:
        """Global positions ``[len(batch_indices), B]`` of this rank's micro-batches."""
        b = np.arange(self.batch_size, dtype=np.int64)
        j = np.asarray(batch_indices, dtype=np.int64)[:, None]
        return self.start + (j * self.batch_size + b) * world_size + rank

    def plan(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(source id, source-local index, block index within the source)`` per global position."""
        flat = np.asarray(positions, dtype=np.int64).reshape(-1)
        sources, local = self.mixer.locate(flat)
        blocks = np.empty_like(flat)
        for k in np.unique(sources).tolist():
            mask = sources == k
            n = len(self.sources[k])
            epochs, within = np.divmod(local[mask], n)
            out = np.empty_like(within)
            for e in np.unique(epochs).tolist():
                sel = epochs == e
                out[sel] = permute(within[sel], n, derive_key(self.seed, k, e))
            blocks[mask] = out
        shape = np.shape(positions)
        return sources.reshape(shape), local.reshape(shape), blocks.reshape(shape)

    def _exhausted(self, sources: np.ndarray, local: np.ndarray) -> np.ndarray:
        """Mask of samples that would start a 2nd epoch of a ``strict`` source."""
        sizes = np.asarray([len(s) for s in self.sources], dtype=np.int64)
        strict = np.asarray(self.strict, dtype=bool)
        return strict[sources] & (local >= sizes[sources])

    def _exhausted_error(self, sources: np.ndarray, mask: np.ndarray) -> SourceExhaustedError:
        k = int(sources[mask].reshape(-1)[0])
        return SourceExhaustedError(
            f"source {self.names[k]!r} is exhausted: all {len(self.sources[k])} of its training blocks were used "
            "and on_exhausted='error' (use on_exhausted='cycle' to reshuffle and repeat it)"
        )

    def _read(self, sources: np.ndarray, blocks: np.ndarray) -> torch.Tensor:
        flat_src, flat_blocks = sources.reshape(-1), blocks.reshape(-1)
        rows: np.ndarray | None = None
        for k in np.unique(flat_src).tolist():
            mask = flat_src == k
            data = self.sources[k].read(flat_blocks[mask])
            if rows is None:
                rows = np.empty((flat_src.size, data.shape[1]), dtype=np.int64)
            rows[mask] = data
        assert rows is not None
        return torch.from_numpy(rows.reshape(*np.shape(sources), rows.shape[1]))

    def read_batches(self, positions: np.ndarray) -> torch.Tensor:
        """Token blocks at ``positions`` (any shape), as ``LongTensor[*positions.shape, T + 1]``."""
        sources, local, blocks = self.plan(positions)
        mask = self._exhausted(sources, local)
        if mask.any():
            raise self._exhausted_error(sources, mask)
        return self._read(sources, blocks)

    def __iter__(self) -> Iterator[torch.Tensor]:
        rank, world_size = resolve_rank(self.rank, self.world_size)
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        first = worker
        while True:
            js = first + num_workers * np.arange(self.chunk_batches, dtype=np.int64)
            sources, local, blocks = self.plan(self.positions(js, rank, world_size))
            bad = self._exhausted(sources, local).any(axis=1)
            good = int(np.argmax(bad)) if bad.any() else len(js)
            if good:
                yield from self._read(sources[:good], blocks[:good])
            if good < len(js):  # raise only when the offending batch is due
                raise self._exhausted_error(sources[good:], self._exhausted(sources[good:], local[good:]))
            first += num_workers * self.chunk_batches


class StreamLoader(DataLoader):
    """``DataLoader`` over a :class:`BlockStream` that resumes exactly.

    It counts the global samples handed to its consumer (``batch_size * world_size`` per batch)
    and starts every new iteration where the stream was left. ``position_fn`` (set by the data
    modules when attached to a Lightning ``Trainer``) overrides that count: Lightning fetches one
    batch ahead, so the trainer's optimizer-step count is the reliable position there.
    ``on_position`` is called in the main process after each batch with the new global position.
    """

    def __init__(
        self,
        dataset: BlockStream,
        num_workers: int = 0,
        position_fn: Callable[[], int | None] | None = None,
        on_position: Callable[[int], None] | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=False,
            prefetch_factor=2 if num_workers > 0 else None,
        )
        self.position_fn = position_fn
        self.on_position = on_position
        self._consumed = 0

    def position(self) -> int:
        """Global stream position (samples consumed by all ranks) to resume from."""
        if self.position_fn is not None:
            value = self.position_fn()
            if value is not None:
                return int(value)
        return self._consumed

    def __iter__(self) -> Iterator[torch.Tensor]:  # type: ignore[override]
        stream: BlockStream = self.dataset  # type: ignore[assignment]
        rank, world_size = resolve_rank(stream.rank, stream.world_size)
        start = self.position()
        stream.configure(start, rank, world_size)  # copied into the workers when they start
        self._consumed = start
        per_batch = stream.batch_size * world_size
        for batch in super().__iter__():
            self._consumed += per_batch
            if self.on_position is not None:
                self.on_position(self._consumed)
            yield batch

    def state_dict(self) -> dict[str, int]:
        """``{"consumed_samples": global position}``."""
        return {"consumed_samples": self.position()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from a :meth:`state_dict` (the next iteration starts at that position)."""
        if "consumed_samples" not in state_dict:
            raise ValueError(f"StreamLoader.load_state_dict: expected key 'consumed_samples', got {sorted(state_dict)}")
        self._consumed = int(state_dict["consumed_samples"])
