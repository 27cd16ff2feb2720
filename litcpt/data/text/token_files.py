"""Token files: a corpus's token ids in ``tokens.bin`` plus ``meta.json`` (format in :mod:`litcpt.data.text`).

:func:`write_tokens` encodes streamed ``(text, ends_document)`` pieces in batches and writes them in chunks to a
temporary file moved into place (memory does not grow with the corpus); :class:`TokenFile` reads the metadata back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from litcpt.runtime.atomic import atomic_file, write_json
from litcpt.runtime.encoding import encode_many

__all__ = ["FORMAT", "FORMAT_VERSION", "ENCODE_BATCH_CHARS", "DocumentCounter", "TokenFile",
           "token_chunks",
           "tokenizer_fingerprint", "tokenizer_id_space", "write_token_chunks",
           "write_tokens"]

FORMAT = "litcpt-tokens"
FORMAT_VERSION = 1
ENCODE_BATCH_CHARS = 1 << 21


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Stable hash of a ``litgpt.Tokenizer`` (vocabulary/merges/normaliser and BOS/EOS settings)."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend", None)
    processor = getattr(tokenizer, "processor", None)
    if backend == "huggingface":
        h.update(processor.to_str().encode("utf-8"))
    elif backend == "sentencepiece":
        h.update(processor.serialized_model_proto())
    else:
        raise ValueError(f"tokenizer: unsupported litgpt tokenizer backend {backend!r}")
    h.update(repr((tokenizer.bos_id, tokenizer.eos_id, bool(tokenizer.use_bos))).encode())
    return h.hexdigest()[:16]


def tokenizer_id_space(tokenizer: Any) -> int:
    """Upper bound on token ids the tokenizer can produce (added tokens included)."""
    if tokenizer.backend == "huggingface":
        return int(tokenizer.processor.get_vocab_size(with_added_tokens=True))
    return int(tokenizer.vocab_size)


def token_chunks(
    pieces: Iterable[tuple[str, bool]], tokenizer: Any, batch_chars: int = ENCODE_BATCH_CHARS
) -> Iterator[np.ndarray]:
    """Encode streamed pieces in batches; EOS after every document, BOS before if ``use_bos``."""
    eos, bos = tokenizer.eos_id, tokenizer.bos_id
    if eos is None:
        raise ValueError("tokenizer: has no EOS token (needed to separate documents); check its tokenizer_config.json")
    if tokenizer.use_bos and bos is None:
        raise ValueError("tokenizer: add_bos_token is set but the tokenizer has no BOS token")
    batch: list[tuple[str, bool]] = []
    size = 0
    at_doc_start = True

    def flush() -> np.ndarray:
        nonlocal at_doc_start
        out: list[int] = []
        for (_text, ends), ids in zip(batch, encode_many(tokenizer, [t for t, _ in batch])):
            if at_doc_start and tokenizer.use_bos:
                out.append(bos)
            out.extend(ids)
            if ends:
                out.append(eos)
            at_doc_start = ends
        return np.asarray(out, dtype=np.int64)

    for piece in pieces:
        batch.append(piece)
        size += len(piece[0])
        if size >= batch_chars:
            yield flush()
            batch, size = [], 0
    if batch:
        yield flush()


@dataclass(frozen=True)
class TokenFile:
    """Metadata of a token file (``meta.json``) plus where it lives."""

    path: Path
    dtype: str
    num_tokens: int
    vocab_size: int
    tokenizer: str
    num_documents: int
    source: str

    @property
    def bin_path(self) -> Path:
        return self.path / "tokens.bin"

    def num_blocks(self, block_size: int) -> int:
        """Number of ``T + 1``-token blocks (consecutive blocks share one token)."""
        return max(0, (self.num_tokens - 1) // block_size)

    def memmap(self) -> np.memmap:
        return np.memmap(self.bin_path, dtype=np.dtype(self.dtype), mode="r", shape=(self.num_tokens,))

    @classmethod
    def load(cls, path: str | Path) -> TokenFile:
        """Read ``meta.json`` of a token directory."""
        path = Path(path)
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a litcpt token directory ({err})") from None
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}/meta.json: expected format {FORMAT} v{FORMAT_VERSION}")
        expected = int(meta["num_tokens"]) * np.dtype(meta["dtype"]).itemsize
        if (path / "tokens.bin").stat().st_size != expected:
            raise ValueError(f"{path}/tokens.bin: size does not match meta.json (truncated or corrupt)")
        return cls(
            path=path,
            dtype=meta["dtype"],
            num_tokens=int(meta["num_tokens"]),
            vocab_size=int(meta["vocab_size"]),
            tokenizer=meta["tokenizer"],
            num_documents=int(meta["num_documents"]),
            source=meta.get("source", ""),
        )


def write_tokens(
    pieces: Iterable[tuple[str, bool]], tokenizer: Any, out_dir: str | Path, source: str = ""
) -> TokenFile:
    """Tokenise streamed ``(text, ends_document)`` pieces into ``out_dir/tokens.bin`` + ``meta.json``.

    Written in chunks to a temporary file then moved into place; raises ``ValueError`` if the
    corpus yields no tokens.
    """
    documents = DocumentCounter()
    return write_token_chunks(token_chunks(documents.wrap(pieces), tokenizer), tokenizer, out_dir, source, documents)


class DocumentCounter:
    """Counts the document ends of a ``(text, ends_document)`` stream passed through :meth:`wrap`; calling the
    counter returns the count so far (the ``num_documents`` callable of :func:`write_token_chunks`)."""

    def __init__(self) -> None:
        self.count = 0

    def wrap(self, stream: Iterable[tuple[str, bool]]) -> Iterator[tuple[str, bool]]:
        for text, ends in stream:
            self.count += int(ends)
            yield text, ends

    def __call__(self) -> int:
        return self.count


def write_token_chunks(
    chunks: Iterable[np.ndarray],
    tokenizer: Any,
    out_dir: str | Path,
    source: str = "",
    num_documents: Any = None,
) -> TokenFile:
    """Write streamed token-id arrays (documents already separated) as a token file.

    ``num_documents`` is an int or a callable evaluated after the stream ends (default: the
    number of EOS tokens). Raises ``ValueError`` if there is no content token at all.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    id_space = tokenizer_id_space(tokenizer)
    dtype = np.dtype(np.uint16 if id_space <= 65536 else np.uint32)
    num_tokens = content_tokens = eos_count = 0
    with atomic_file(out_dir / "tokens.bin", "wb") as fp:  # whole or absent, whatever happens in the loop
        for chunk in chunks:
            chunk = np.asarray(chunk, dtype=np.int64).reshape(-1)
            if chunk.size and (chunk.min() < 0 or chunk.max() >= id_space):
                raise ValueError(f"{source}: token ids outside the tokenizer's range [0, {id_space})")
            is_eos = int(np.count_nonzero(chunk == tokenizer.eos_id))
            special = is_eos
            if tokenizer.bos_id is not None and tokenizer.bos_id != tokenizer.eos_id:
                special += int(np.count_nonzero(chunk == tokenizer.bos_id))
            content_tokens += chunk.size - special
            eos_count += is_eos
            fp.write(chunk.astype(dtype).tobytes())
            num_tokens += chunk.size
        if content_tokens == 0:
            raise ValueError(f"{source or out_dir}: empty corpus (no text to tokenise)")
    docs = num_documents() if callable(num_documents) else num_documents
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "dtype": dtype.name,
        "num_tokens": num_tokens,
        "num_documents": int(eos_count if docs is None else docs),
        "vocab_size": int(tokenizer.vocab_size),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "source": source,
    }
    write_json(out_dir / "meta.json", meta)
    return TokenFile.load(out_dir)
