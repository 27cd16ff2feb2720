"""Quality guards of generated samples, as pure functions of token ids.

A sample is *degenerate* (a repetition loop) when too many of its token n-grams repeat an n-gram seen earlier in the
same sample: :func:`repeated_ngram_fraction` is ``1 - distinct n-grams / n-grams`` (0 for a sample without any
repeated n-gram, close to 1 for a loop such as ``"the the the ..."``), and :func:`is_degenerate` compares it with a
threshold. The default, 4-grams above 0.5, drops loops and leaves ordinary text: in natural text few 4-grams of one
document repeat (well under 10 % for the bundled corpora), a sample stuck in a loop of period ``p`` repeats all but
``p`` of them. Exact duplicates are found by :func:`sample_key`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

__all__ = ["DEFAULT_NGRAM", "DEFAULT_THRESHOLD", "is_degenerate", "repeated_ngram_fraction", "sample_key"]

DEFAULT_NGRAM = 4
"""Token n-gram length of the repetition filter."""
DEFAULT_THRESHOLD = 0.5
"""Largest share of repeated n-grams a kept sample may have."""


def repeated_ngram_fraction(tokens: Sequence[int] | np.ndarray, n: int = DEFAULT_NGRAM) -> float:
    """``1 - distinct / total`` over the token ``n``-grams of ``tokens`` (0.0 when it has no n-gram)."""
    if n < 1:
        raise ValueError(f"repetition n-gram length must be >= 1, got {n}")
    ids = [int(t) for t in tokens]
    total = len(ids) - n + 1
    if total <= 0:
        return 0.0
    distinct = len({tuple(ids[i:i + n]) for i in range(total)})
    return 1.0 - distinct / total


def is_degenerate(tokens: Sequence[int] | np.ndarray, *, n: int = DEFAULT_NGRAM,
                  threshold: float = DEFAULT_THRESHOLD) -> bool:
    """True when more than ``threshold`` of the ``n``-grams of ``tokens`` repeat (``threshold >= 1``: never)."""
    return threshold < 1.0 and repeated_ngram_fraction(tokens, n) > threshold


def sample_key(tokens: Sequence[int] | np.ndarray) -> str:
    """A digest of the token ids: two samples with the same key are exact duplicates."""
    return hashlib.sha256(np.asarray(tokens, dtype=np.int64).tobytes()).hexdigest()[:20]
