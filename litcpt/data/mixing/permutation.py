"""Keyed permutations of ``range(n)`` in O(1) memory (a Feistel network with cycle walking), and stable keys.

Used to shuffle every epoch of a source (:mod:`litcpt.data.mixing.stream`) and to pick validation blocks
(:mod:`litcpt.data.text.blocks`): position ``i`` maps to ``permute(i, n, key)`` without materialising the permutation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["derive_key", "permute"]

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_ROUNDS = 6


def derive_key(*parts: Any) -> int:
    """A 64-bit key derived (stably, across processes and Python versions) from ``parts``."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _round_keys(key: int) -> list[np.uint64]:
    return [np.uint64(derive_key("feistel-round", key, r)) for r in range(_ROUNDS)]


def _feistel(x: np.ndarray, half_bits: int, round_keys: list[np.uint64]) -> np.ndarray:
    mask = np.uint64((1 << half_bits) - 1)
    shift = np.uint64(half_bits)
    left, right = x >> shift, x & mask
    for k in round_keys:
        left, right = right, left ^ (_mix64(right ^ k) & mask)
    return (left << shift) | right


def permute(indices: np.ndarray | Sequence[int] | int, n: int, key: int) -> np.ndarray:
    """Apply a keyed pseudo-random permutation of ``range(n)`` to ``indices`` (vectorised).

    A balanced Feistel network on the smallest even number of bits covering ``n``, with
    cycle-walking, so it is a bijection of ``range(n)`` computed in O(1) memory; different
    ``key`` values give unrelated permutations.
    """
    idx = np.asarray(indices, dtype=np.int64)
    if n < 1:
        raise ValueError(f"permute: n must be >= 1, got {n}")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"permute: indices must be in [0, {n})")
    if n == 1:
        return np.zeros_like(idx)
    bits = max(2, (n - 1).bit_length())
    bits += bits % 2
    keys = _round_keys(key)
    y = _feistel(idx.astype(np.uint64), bits // 2, keys)
    limit = np.uint64(n)
    out_of_range = y >= limit
    while out_of_range.any():  # cycle-walking: expected < 4 passes (domain < 4n)
        y[out_of_range] = _feistel(y[out_of_range], bits // 2, keys)
        out_of_range = y >= limit
    return y.astype(np.int64)
