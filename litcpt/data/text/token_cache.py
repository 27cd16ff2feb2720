"""The token cache: ``<cache_dir>/<name>-<key>/`` per corpus, tokenizer and reading settings, so a re-run with the
same inputs skips tokenisation (see :mod:`litcpt.data.text`). :func:`open_tokens` is the entry point of the data
modules."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from litcpt.data.text.litdata_source import LitdataTokens, litdata_chunks, open_litdata
from litcpt.data.text.sources import SourceRef, iter_documents, resolve_source
from litcpt.data.text.token_files import (
    FORMAT,
    FORMAT_VERSION,
    TokenFile,
    tokenizer_fingerprint,
    write_token_chunks,
    write_tokens,
)
from litcpt.data.textio import DEFAULT_ENCODING

__all__ = ["cache_entry", "default_cache_dir", "ensure_tokens", "open_tokens"]

def default_cache_dir() -> Path:
    """``$LITCPT_CACHE_DIR/tokens`` if set, else ``~/.cache/litcpt/tokens``."""
    root = os.environ.get("LITCPT_CACHE_DIR")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "litcpt") / "tokens"


def _check_tokenizer(tf: TokenFile, tokenizer: Any, what: str) -> None:
    if tokenizer is None:
        return
    fp = tokenizer_fingerprint(tokenizer)
    if tf.tokenizer != fp or tf.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"{what}: tokens in {tf.path} were made with another tokenizer "
            f"(fingerprint {tf.tokenizer}, vocab {tf.vocab_size}; current {fp}, vocab {tokenizer.vocab_size})"
        )


def _only_txt(ref: SourceRef) -> bool:
    return bool(ref.files) and all(f.name.lower().endswith((".txt", ".txt.gz")) for f in ref.files)


def cache_entry(
    ref: SourceRef,
    tokenizer: Any,
    cache_dir: str | Path | None = None,
    text_field: str = "text",
    hf_kwargs: dict[str, Any] | None = None,
    encoding: str = DEFAULT_ENCODING,
) -> Path:
    """Directory where the tokens of ``ref`` under ``tokenizer`` and settings are cached."""
    if ref.kind == "tokens":
        assert ref.path is not None
        return ref.path
    key_data = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "source": ref.cache_key(),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "text_field": None if _only_txt(ref) else text_field,
        "hf_kwargs": hf_kwargs if ref.kind == "hf_hub" else None,
    }
    if encoding != DEFAULT_ENCODING:  # only then: UTF-8 caches made before `encoding` existed stay valid
        key_data["encoding"] = encoding
    digest = hashlib.sha256(json.dumps(key_data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / f"{ref.label}-{digest}"


def ensure_tokens(
    spec: str | Path,
    tokenizer: Any,
    cache_dir: str | Path | None = None,
    text_field: str = "text",
    hf_kwargs: dict[str, Any] | None = None,
    what: str = "data path",
    create: bool = True,
    encoding: str = DEFAULT_ENCODING,
) -> TokenFile:
    """Tokenise ``spec`` (see :func:`resolve_source`) unless cached; return its :class:`TokenFile`.

    With ``create=False`` a missing cache entry is a ``ValueError`` (ranks that must not write).
    """
    ref = resolve_source(spec, what)
    if ref.kind == "litdata_stream":
        raise ValueError(
            f"{what} {str(spec)!r}: a TokensLoader litdata dataset is streamed, not tokenised (use open_tokens)"
        )
    if ref.kind == "tokens":
        tf = TokenFile.load(ref.path)  # type: ignore[arg-type]
        _check_tokenizer(tf, tokenizer, f"{what} {str(spec)!r}")
        return tf
    if tokenizer is None:
        raise ValueError(f"{what} {str(spec)!r}: a tokenizer is needed (pass --tokenizer_dir / connect(tokenizer=...))")
    entry = cache_entry(ref, tokenizer, cache_dir, text_field, hf_kwargs, encoding)
    if (entry / "meta.json").is_file():
        tf = TokenFile.load(entry)
    elif create and ref.kind == "litdata":
        tf = write_token_chunks(litdata_chunks(ref, tokenizer), tokenizer, entry, source=str(spec))
    elif create:
        tf = write_tokens(iter_documents(ref, text_field, hf_kwargs, encoding), tokenizer, entry, source=str(spec))
    else:
        raise ValueError(f"{what} {str(spec)!r}: not tokenised yet (expected {entry}); call prepare_data() first")
    _check_tokenizer(tf, tokenizer, f"{what} {str(spec)!r}")
    return tf


def open_tokens(
    spec: str | Path,
    tokenizer: Any,
    block_size: int,
    cache_dir: str | Path | None = None,
    text_field: str = "text",
    hf_kwargs: dict[str, Any] | None = None,
    litdata_kwargs: dict[str, Any] | None = None,
    what: str = "data path",
    create: bool = True,
    encoding: str = DEFAULT_ENCODING,
) -> TokenFile | LitdataTokens:
    """The tokens of ``spec``: a streamed :class:`LitdataTokens` for a ``TokensLoader`` litdata
    dataset, else the (cached) :class:`TokenFile` of :func:`ensure_tokens`."""
    ref = resolve_source(spec, what)
    if ref.kind == "litdata_stream":
        return open_litdata(ref, tokenizer, block_size, litdata_kwargs, what)
    return ensure_tokens(spec, tokenizer, cache_dir, text_field, hf_kwargs, what, create, encoding)
