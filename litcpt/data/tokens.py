"""Tokenise text corpora into cached, memory-mapped token files, and read fixed-length blocks.

A token file is a flat array of token ids (``uint16`` if the tokenizer has fewer than 65536
ids, else ``uint32``), documents separated by the tokenizer's EOS token (``BOS`` is also put in
front of each document when the tokenizer's config says ``add_bos_token``). It lives in a cache
directory ``<cache_dir>/<name>-<key>/`` with ``tokens.bin`` and ``meta.json``; the key hashes the
source (files with their sizes and mtimes, or the HF dataset name), the tokenizer fingerprint and
the reading settings, so a re-run with the same inputs skips tokenisation. Files are written to a
temporary name and moved into place (``os.replace``); ``meta.json`` is written last, so a cache
entry without it is ignored and rebuilt. Documents are streamed and written in chunks: memory does
not grow with the corpus.

Inputs (see :func:`resolve_source`):

* ``.txt`` (optionally ``.gz``): **one document per file**, read in chunks cut at line boundaries.
* ``.jsonl`` / ``.json`` (optionally ``.gz``): one document per row / per element of a top-level
  list, text under ``text_field``.
* ``.parquet``: one document per row, column ``text_field`` (read in record batches).
* a directory: all supported files below it, recursively, sorted by path (hidden files skipped);
  a directory written by ``datasets.Dataset.save_to_disk`` is loaded with ``load_from_disk``; a
  litcpt cache entry (``meta.json`` + ``tokens.bin``) is used as is (pre-tokenised).
* ``"litdata:<dir or URL>"``: a litdata-optimised dataset of token tensors. Written with
  ``item_loader=TokensLoader()`` (``index.json`` config ``"item_loader": "TokensLoader"``, what
  litgpt's own ``TextFiles``/``TinyStories`` write), it is **streamed**: no token file is written,
  blocks are read by index through ``litdata.StreamingDataset(..., item_loader=TokensLoader(T + 1))``
  (see :class:`LitdataTokens`, :class:`LitdataBlocks`); remote URLs (``s3://``, ``gs://``,
  ``r2://``, ``azure://``, litdata's ``local:``) must be of this kind. A local dataset written
  without ``TokensLoader`` (one token tensor per item) is imported once into a token file, with
  the current tokenizer's EOS after each item. Needs the optional ``litdata`` package.
* ``"hf:<name or path>[@split]"``: ``datasets.load_dataset(<name>, split=<split or "train">,
  **hf_kwargs)`` (e.g. ``"hf:json"`` with ``hf_kwargs={"data_files": "x.jsonl"}``). A
  ``save_to_disk`` directory also accepts ``@split`` to pick a split of a ``DatasetDict``.

Blocks: block ``i`` of a token file with block size ``T`` is ``tokens[i*T : i*T + T + 1]`` (``T + 1``
tokens: input ``[:T]``, target ``[1:]``), so there are ``(num_tokens - 1) // T`` blocks. A streamed
litdata dataset uses litdata's own ``TokensLoader`` blocks instead: ``T + 1`` tokens that do not
overlap, cut within each chunk (``chunk_tokens // (T + 1)`` per chunk; a chunk's tail is unused).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from litcpt.data.sampling import derive_key, permute
from litcpt.data.textio import DEFAULT_ENCODING, iter_lines, read_text

__all__ = [
    "BlockSplit",
    "LitdataBlocks",
    "LitdataTokens",
    "SourceRef",
    "TokenBlocks",
    "TokenFile",
    "default_cache_dir",
    "ensure_tokens",
    "iter_documents",
    "make_blocks",
    "open_litdata",
    "open_tokens",
    "resolve_source",
    "split_blocks",
    "tokenizer_fingerprint",
    "write_token_chunks",
    "write_tokens",
]

FORMAT = "litcpt-tokens"
FORMAT_VERSION = 1
TEXT_SUFFIXES = (".txt",)
JSON_SUFFIXES = (".jsonl", ".json")
SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet", ".txt.gz", ".jsonl.gz", ".json.gz")
_TXT_CHUNK_CHARS = 1 << 20
_ENCODE_BATCH_CHARS = 1 << 21
LITDATA_PREFIX = "litdata:"
LITDATA_REMOTE_PREFIXES = ("s3://", "gs://", "r2://", "azure://", "local:")


# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class SourceRef:
    """A resolved corpus: ``kind`` is ``"files"``, ``"hf_disk"``, ``"hf_hub"``, ``"litdata"`` (imported
    into a token file), ``"litdata_stream"`` (streamed, see :func:`open_litdata`) or ``"tokens"``."""

    kind: str
    spec: str
    files: tuple[Path, ...] = ()
    path: Path | None = None
    split: str | None = None

    def cache_key(self) -> list[Any]:
        """JSON-able description of the exact inputs (paths, sizes, mtimes / dataset name)."""
        if self.kind == "files":
            return ["files", [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in self.files]]
        if self.kind in ("hf_disk", "litdata"):
            assert self.path is not None
            stats = [
                [str(f.relative_to(self.path)), f.stat().st_size, f.stat().st_mtime_ns]
                for f in sorted(self.path.rglob("*"))
                if f.is_file()
            ]
            return [self.kind, str(self.path), self.split, stats]
        return [self.kind, self.spec, self.split]

    @property
    def litdata_uri(self) -> str:
        """Local directory or remote URL of a ``litdata:`` source."""
        return str(self.path) if self.path is not None else self.spec[len(LITDATA_PREFIX) :]

    @property
    def label(self) -> str:
        """Short human-readable name for cache directory names and messages."""
        base = self.path.name if self.path is not None else self.spec.split("/")[-1]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in base)
        return safe[:40] or "corpus"


def _has_supported_suffix(path: Path) -> bool:
    return path.name.lower().endswith(SUPPORTED_SUFFIXES)


def _is_hf_disk_dir(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def _is_token_dir(path: Path) -> bool:
    if not (path / "meta.json").is_file() or not (path / "tokens.bin").is_file():
        return False
    try:
        return json.loads((path / "meta.json").read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, json.JSONDecodeError):
        return False


def _litdata_index(path: Path, what: str) -> dict[str, Any]:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{what}: unreadable litdata index {path} ({type(err).__name__}: {err})") from None
    if not isinstance(index, dict):
        raise ValueError(f"{what}: {path} is not a litdata index (expected a JSON object)")
    return index


def _litdata_item_loader(path: Path, what: str) -> str | None:
    """``config.item_loader`` of a litdata ``index.json`` (``None`` if not recorded)."""
    config = _litdata_index(path, what).get("config")
    return config.get("item_loader") if isinstance(config, dict) else None


def resolve_source(spec: str | Path, what: str = "data path") -> SourceRef:
    """Resolve a path / ``hf:`` spec into a :class:`SourceRef`; one-line ``ValueError`` if invalid."""
    text = str(spec)
    if text.startswith(LITDATA_PREFIX):
        target = text[len(LITDATA_PREFIX) :]
        if target.startswith(LITDATA_REMOTE_PREFIXES):
            return SourceRef("litdata_stream", text)  # checked when opened (index.json is remote)
        local = Path(target).expanduser()
        if not target or not local.is_dir():
            raise ValueError(
                f"{what} {text!r}: directory does not exist (expected 'litdata:<directory with index.json>' or 'litdata:s3://...')"
            )
        if not (local / "index.json").is_file():
            raise ValueError(f"{what} {text!r}: no index.json, not a litdata-optimised dataset (run litdata.optimize first)")
        loader = _litdata_item_loader(local / "index.json", f"{what} {text!r}")
        kind = "litdata_stream" if loader == "TokensLoader" else "litdata"
        return SourceRef(kind, text, path=local.resolve())
    if text.startswith("hf:"):
        name = text[3:]
        split = None
        if "@" in name and not Path(name).expanduser().exists():
            name, split = name.rsplit("@", 1)
        if not name:
            raise ValueError(f"{what} {text!r}: expected 'hf:<dataset name or path>[@split]'")
        local = Path(name).expanduser()
        if local.is_dir() and _is_hf_disk_dir(local):
            return SourceRef("hf_disk", text, path=local.resolve(), split=split)
        return SourceRef("hf_hub", name, split=split or "train")
    path = Path(text).expanduser()
    split = None
    if not path.exists() and "@" in path.name:
        base, split = text.rsplit("@", 1)
        if Path(base).expanduser().is_dir() and _is_hf_disk_dir(Path(base).expanduser()):
            return SourceRef("hf_disk", text, path=Path(base).expanduser().resolve(), split=split)
    if not path.exists():
        raise ValueError(f"{what} {text!r} does not exist (expected a file, a directory or 'hf:<dataset>')")
    path = path.resolve()
    if path.is_file():
        if not _has_supported_suffix(path):
            raise ValueError(f"{what} {text!r}: unsupported file type, expected one of {', '.join(SUPPORTED_SUFFIXES)}")
        return SourceRef("files", text, files=(path,))
    if _is_token_dir(path):
        return SourceRef("tokens", text, path=path)
    if _is_hf_disk_dir(path):
        return SourceRef("hf_disk", text, path=path)
    files = tuple(
        sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and _has_supported_suffix(p)
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    )
    if not files:
        raise ValueError(f"{what} {text!r}: directory has no {', '.join(SUPPORTED_SUFFIXES)} files")
    return SourceRef("files", text, files=files, path=path)


def _iter_txt(path: Path, chunk_chars: int = _TXT_CHUNK_CHARS,
              encoding: str = DEFAULT_ENCODING) -> Iterator[tuple[str, bool]]:
    """One document per file, yielded as pieces cut at line boundaries (blank lines preferred)."""
    buffer: list[str] = []
    size = 0
    for _, line in iter_lines(path, encoding):
        buffer.append(line)
        size += len(line)
        if size >= chunk_chars and (not line.strip() or size >= 4 * chunk_chars):
            yield "".join(buffer), False
            buffer, size = [], 0
    yield "".join(buffer), True


def _row_text(row: Any, text_field: str, where: str) -> str:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object with field {text_field!r}, got {type(row).__name__}")
    if text_field not in row:
        raise ValueError(f"{where}: missing text field {text_field!r} (fields: {', '.join(sorted(map(str, row)))})")
    value = row[text_field]
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {text_field!r} must be a string, got {type(value).__name__}")
    return value


def _iter_jsonl(path: Path, text_field: str, encoding: str = DEFAULT_ENCODING) -> Iterator[tuple[str, bool]]:
    for lineno, line in iter_lines(path, encoding):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
        yield _row_text(row, text_field, f"{path}:{lineno}"), True


def _iter_json(path: Path, text_field: str, encoding: str = DEFAULT_ENCODING) -> Iterator[tuple[str, bool]]:
    first = next((line for _, line in iter_lines(path, encoding) if line.strip()), "")
    if not first.lstrip().startswith("["):  # JSON lines saved as .json
        yield from _iter_jsonl(path, text_field, encoding)
        return
    try:
        rows = json.loads(read_text(path, encoding))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from None
    for i, row in enumerate(rows):
        yield _row_text(row, text_field, f"{path}: element {i}"), True


def _iter_parquet(path: Path, text_field: str) -> Iterator[tuple[str, bool]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if text_field not in pf.schema_arrow.names:
        raise ValueError(f"{path}: missing text column {text_field!r} (columns: {', '.join(pf.schema_arrow.names)})")
    row = 0
    for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
        for value in batch.column(0).to_pylist():
            row += 1
            if not isinstance(value, str):
                raise ValueError(f"{path}: row {row}: column {text_field!r} must be a string, got {type(value).__name__}")
            yield value, True


def _import_datasets() -> Any:
    try:
        import datasets
    except Exception as err:  # noqa: BLE001 - a broken install raises AttributeError etc.
        raise ValueError(f"HF datasets sources need a working `datasets` package (import failed: {err})") from None
    return datasets


def _load_hf(ref: SourceRef, hf_kwargs: dict[str, Any] | None) -> Any:
    datasets = _import_datasets()
    if ref.kind == "hf_disk":
        ds = datasets.load_from_disk(str(ref.path))
        if isinstance(ds, datasets.DatasetDict):
            split = ref.split or "train"
            if split not in ds:
                raise ValueError(f"{ref.spec}: split {split!r} not found (splits: {', '.join(ds)})")
            ds = ds[split]
        elif ref.split is not None and ref.split != "train":
            raise ValueError(f"{ref.spec}: is a single Dataset, it has no split {ref.split!r}")
        return ds
    kwargs = dict(hf_kwargs or {})
    kwargs.setdefault("split", ref.split)
    try:
        return datasets.load_dataset(ref.spec, **kwargs)
    except Exception as err:  # noqa: BLE001 - surface as a one-line error
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"hf:{ref.spec}: datasets.load_dataset failed: {first}") from None


def _iter_hf(ref: SourceRef, text_field: str, hf_kwargs: dict[str, Any] | None) -> Iterator[tuple[str, bool]]:
    ds = _load_hf(ref, hf_kwargs)
    columns = list(getattr(ds, "column_names", None) or [])
    if text_field not in columns:
        raise ValueError(f"{ref.spec}: missing text field {text_field!r} (columns: {', '.join(columns)})")
    row = 0
    for batch in ds.iter(batch_size=1024):
        for value in batch[text_field]:
            row += 1
            if not isinstance(value, str):
                raise ValueError(f"{ref.spec}: row {row}: field {text_field!r} must be a string, got {type(value).__name__}")
            yield value, True


def iter_documents(
    ref: SourceRef, text_field: str = "text", hf_kwargs: dict[str, Any] | None = None,
    encoding: str = DEFAULT_ENCODING,
) -> Iterator[tuple[str, bool]]:
    """Stream ``(text piece, ends_document)`` pairs of a corpus (a ``.txt`` file is one document
    split into several pieces; every other row is one piece that ends its document)."""
    if ref.kind == "files":
        for path in ref.files:
            name = path.name.lower()
            if name.endswith((".txt", ".txt.gz")):
                yield from _iter_txt(path, encoding=encoding)
            elif name.endswith((".jsonl", ".jsonl.gz")):
                yield from _iter_jsonl(path, text_field, encoding)
            elif name.endswith((".json", ".json.gz")):
                yield from _iter_json(path, text_field, encoding)
            elif name.endswith(".parquet"):
                yield from _iter_parquet(path, text_field)
            else:  # pragma: no cover - filtered by resolve_source
                raise ValueError(f"{path}: unsupported file type")
    elif ref.kind in ("hf_disk", "hf_hub"):
        yield from _iter_hf(ref, text_field, hf_kwargs)
    else:
        raise ValueError(f"{ref.spec}: pre-tokenised data has no documents to read")


# ----------------------------------------------------------------------------- tokenisation


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


def _id_space(tokenizer: Any) -> int:
    """Upper bound on token ids the tokenizer can produce (added tokens included)."""
    if tokenizer.backend == "huggingface":
        return int(tokenizer.processor.get_vocab_size(with_added_tokens=True))
    return int(tokenizer.vocab_size)


def _encode_many(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Raw ids of ``texts`` with no special tokens added."""
    if tokenizer.backend == "huggingface":
        processor = tokenizer.processor
        fast = getattr(processor, "encode_batch_fast", None) or processor.encode_batch
        return [enc.ids for enc in fast(texts, add_special_tokens=False)]
    return [list(tokenizer.processor.encode(t)) for t in texts]


def _token_chunks(
    pieces: Iterable[tuple[str, bool]], tokenizer: Any, batch_chars: int = _ENCODE_BATCH_CHARS
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
        for (text, ends), ids in zip(batch, _encode_many(tokenizer, [t for t, _ in batch])):
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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_tokens(
    pieces: Iterable[tuple[str, bool]], tokenizer: Any, out_dir: str | Path, source: str = ""
) -> TokenFile:
    """Tokenise streamed ``(text, ends_document)`` pieces into ``out_dir/tokens.bin`` + ``meta.json``.

    Written in chunks to a temporary file then moved into place; raises ``ValueError`` if the
    corpus yields no tokens.
    """
    documents = DocumentCounter()
    return write_token_chunks(_token_chunks(documents.wrap(pieces), tokenizer), tokenizer, out_dir, source, documents)


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
    id_space = _id_space(tokenizer)
    dtype = np.dtype(np.uint16 if id_space <= 65536 else np.uint32)
    tmp = out_dir / f".tokens.bin.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    num_tokens = content_tokens = eos_count = 0
    try:
        with open(tmp, "wb") as fp:
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
        os.replace(tmp, out_dir / "tokens.bin")
    finally:
        if tmp.exists():
            tmp.unlink()
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
    _atomic_write_text(out_dir / "meta.json", json.dumps(meta, indent=2) + "\n")
    return TokenFile.load(out_dir)


LITDATA_HINT = "pip install --no-deps litdata lightning-utilities boto3 filelock"


def _import_litdata() -> Any:
    try:
        import litdata
    except Exception as err:  # noqa: BLE001 - any import failure means "not usable here"
        raise ValueError(
            f"litdata sources need the optional `litdata` package ({err}); install it without touching torch: {LITDATA_HINT}"
        ) from None
    return litdata


def _litdata_chunks(ref: SourceRef, tokenizer: Any) -> Iterator[np.ndarray]:
    """Documents of a litdata-optimised directory (items = 1-D token tensors, as written by
    litgpt's ``TextFiles``/``TinyStories`` ``prepare_data``), EOS appended to each."""
    litdata = _import_litdata()
    dataset = litdata.StreamingDataset(input_dir=str(ref.path), shuffle=False)
    for i in range(len(dataset)):
        item = dataset[i]
        ids = np.asarray(item.numpy() if hasattr(item, "numpy") else item, dtype=np.int64).reshape(-1)
        if ids.size and ids[-1] != tokenizer.eos_id:
            ids = np.append(ids, tokenizer.eos_id)
        yield ids


_LITDATA_RESERVED = ("input_dir", "item_loader", "shuffle", "subsample", "transform", "drop_last", "seed")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _streaming_dataset(uri: str, block_size: int, litdata_kwargs: dict[str, Any] | None, what: str) -> Any:
    """``litdata.StreamingDataset`` serving ``block_size + 1``-token blocks of ``uri`` by index."""
    litdata = _import_litdata()
    from litdata.streaming import TokensLoader

    kwargs = dict(litdata_kwargs or {})
    bad = sorted(set(kwargs) & set(_LITDATA_RESERVED))
    if bad:
        raise ValueError(f"{what}: litdata_kwargs may not set {', '.join(bad)} (litcpt decides the block order)")
    try:
        loader = TokensLoader(block_size=block_size + 1)
        return litdata.StreamingDataset(input_dir=uri, item_loader=loader, shuffle=False, **kwargs)
    except Exception as err:  # noqa: BLE001 - surface as a one-line error
        raise ValueError(f"{what}: cannot open litdata dataset {uri} ({_first_line(err)})") from None


@dataclass(frozen=True)
class LitdataTokens:
    """A litdata-optimised token dataset (written with ``TokensLoader``), streamed, not copied.

    The counterpart of :class:`TokenFile` for :func:`open_litdata`: only the per-chunk token counts
    of ``index.json`` are held (O(number of chunks) memory). ``tokenizer`` is the fingerprint of the
    tokenizer the data was *checked* against (token ids below its vocabulary size); litdata stores
    no tokenizer, so using the same tokenizer as at ``optimize`` time is the user's responsibility.
    """

    uri: str
    chunk_tokens: tuple[int, ...]
    dtype: str
    vocab_size: int
    id_space: int
    tokenizer: str
    source: str
    litdata_kwargs: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def num_tokens(self) -> int:
        return int(sum(self.chunk_tokens))

    @property
    def path(self) -> Path | None:
        return None if self.uri.startswith(LITDATA_REMOTE_PREFIXES) else Path(self.uri)

    def chunk_blocks(self, block_size: int) -> np.ndarray:
        """Blocks of ``block_size + 1`` tokens in each chunk (int64 array, one entry per chunk)."""
        return np.asarray(self.chunk_tokens, dtype=np.int64) // (block_size + 1)

    def num_blocks(self, block_size: int) -> int:
        """Number of non-overlapping ``T + 1``-token blocks (litdata ``TokensLoader`` layout)."""
        return int(self.chunk_blocks(block_size).sum())

    def dataset(self, block_size: int) -> Any:
        """A fresh ``litdata.StreamingDataset`` serving block ``i`` as ``dataset[i]``."""
        return _streaming_dataset(self.uri, block_size, self.litdata_kwargs, self.source)


def open_litdata(
    ref: SourceRef,
    tokenizer: Any,
    block_size: int,
    litdata_kwargs: dict[str, Any] | None = None,
    what: str = "data path",
) -> LitdataTokens:
    """Open a ``litdata:`` token dataset for streaming (nothing is written).

    Checks that ``index.json`` says ``TokensLoader``, that there is at least one block of
    ``block_size + 1`` tokens and that the ids of the first block are below the tokenizer's
    vocabulary size; every later read checks its ids too (see :class:`LitdataBlocks`).
    """
    where = f"{what} {ref.spec!r}"
    if tokenizer is None:
        raise ValueError(f"{where}: a tokenizer is needed (pass --tokenizer_dir / connect(tokenizer=...))")
    uri = ref.litdata_uri
    ds = _streaming_dataset(uri, block_size, litdata_kwargs, where)
    index_dir = Path(getattr(getattr(ds, "input_dir", None), "path", None) or uri)
    if not (index_dir / "index.json").is_file():
        raise ValueError(f"{where}: no index.json found (not a litdata-optimised dataset?)")
    index = _litdata_index(index_dir / "index.json", where)
    config = index.get("config") if isinstance(index.get("config"), dict) else {}
    if config.get("item_loader") != "TokensLoader":
        raise ValueError(
            f"{where}: items were not written with TokensLoader (index.json item_loader={config.get('item_loader')!r}); "
            "streaming needs litdata.optimize(..., item_loader=TokensLoader())"
        )
    try:
        chunk_tokens = tuple(int(c["dim"]) for c in index["chunks"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: index.json has no token counts per chunk ('dim'); re-run litdata.optimize") from None
    id_space = _id_space(tokenizer)
    tokens = LitdataTokens(
        uri=uri,
        chunk_tokens=chunk_tokens,
        dtype="",
        vocab_size=int(tokenizer.vocab_size),
        id_space=id_space,
        tokenizer=tokenizer_fingerprint(tokenizer),
        source=where,
        litdata_kwargs=dict(litdata_kwargs or {}),
    )
    if tokens.num_blocks(block_size) < 1:
        raise ValueError(
            f"{where}: {tokens.num_tokens} tokens in {len(chunk_tokens)} chunk(s) are too few for one block of {block_size}+1"
        )
    try:
        first = ds[0]
    except Exception as err:  # noqa: BLE001 - surface as a one-line error
        raise ValueError(f"{where}: cannot read the first block ({_first_line(err)})") from None
    ids = np.asarray(first.numpy() if hasattr(first, "numpy") else first).reshape(-1)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"{where}: items are {ids.dtype}, expected integer token ids")
    _check_ids(ids, id_space, f"{where}: first block")
    return replace(tokens, dtype=ids.dtype.name)


def _check_ids(ids: np.ndarray, id_space: int, where: str) -> None:
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= id_space):
        bad = int(ids.max()) if int(ids.max()) >= id_space else int(ids.min())
        raise ValueError(
            f"{where}: token id {bad} is outside the tokenizer's vocabulary [0, {id_space}); "
            "the dataset must be tokenised with the same tokenizer as the model"
        )


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
        raise ValueError(f"{what} {str(spec)!r}: a TokensLoader litdata dataset is streamed, not tokenised (use open_tokens)")
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
        tf = write_token_chunks(_litdata_chunks(ref, tokenizer), tokenizer, entry, source=str(spec))
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


# ----------------------------------------------------------------------------- blocks


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

    def __init__(self, token_file: TokenFile, block_size: int, split: BlockSplit | None = None, part: str = "all") -> None:
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
        self._length = {"all": num_blocks, "train": split.num_train if split else 0, "val": split.num_val if split else 0}[part]
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

    def __init__(self, tokens: LitdataTokens, block_size: int, split: BlockSplit | None = None, part: str = "all") -> None:
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
        _check_ids(out, self.token_file.id_space, f"{self.token_file.source}")  # type: ignore[attr-defined]
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

