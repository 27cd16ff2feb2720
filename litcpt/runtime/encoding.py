"""Raw token ids of texts, in this process or in the worker processes of ``litcpt prepare-data``.

Kept apart from :mod:`litcpt.data` on purpose: a worker process started with ``spawn`` imports only this module
(``tokenizers`` for a ``tokenizer.json``), ~0.1 s, where importing anything under :mod:`litcpt.data` brings torch,
Lightning and LitGPT along (~6 s per worker).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_worker_tokenizer: Any = None
"""The tokenizer of a worker process (set by :func:`init_worker`, the pool's initializer)."""


def encode_many(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Raw ids of ``texts`` with no special tokens added (``tokenizer``: a ``litgpt.Tokenizer``)."""
    if tokenizer.backend == "huggingface":
        processor = tokenizer.processor
        fast = getattr(processor, "encode_batch_fast", None) or processor.encode_batch
        return [enc.ids for enc in fast(texts, add_special_tokens=False)]
    return [list(tokenizer.processor.encode(t)) for t in texts]


def init_worker(tokenizer_dir: str) -> None:
    """A worker's tokenizer: the ``tokenizers`` library alone for ``tokenizer.json`` (fast to import), else litgpt's."""
    global _worker_tokenizer
    path = Path(tokenizer_dir) / "tokenizer.json"
    if path.is_file():
        from tokenizers import Tokenizer as Fast

        _worker_tokenizer = Fast.from_file(str(path))
    else:
        from litgpt import Tokenizer

        _worker_tokenizer = Tokenizer(tokenizer_dir)


def encode_batch(texts: list[str]) -> list[list[int]]:
    """Raw ids without special tokens, in a worker, as :func:`encode_many` computes them."""
    tok = _worker_tokenizer
    if hasattr(tok, "encode_batch"):
        fast = getattr(tok, "encode_batch_fast", None) or tok.encode_batch
        return [enc.ids for enc in fast(texts, add_special_tokens=False)]
    return encode_many(tok, texts)
