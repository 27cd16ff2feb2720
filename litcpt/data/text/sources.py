"""Where a text corpus comes from: :func:`resolve_source` turns a data path (file, directory, ``hf:``, ``litdata:``,
token directory) into a :class:`SourceRef`, and :func:`iter_documents` streams its documents.

Inputs are listed in :mod:`litcpt.data.text`. Rows of ``.jsonl``/``.json``/``.parquet`` files are read by
:mod:`litcpt.data.rows` (the reader preference data uses too), so both accept the same files with the same errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litcpt.data.rows import BadRow, import_datasets, iter_file_rows
from litcpt.data.text.token_files import FORMAT
from litcpt.data.textio import DEFAULT_ENCODING, iter_lines

__all__ = ["LITDATA_PREFIX", "LITDATA_REMOTE_PREFIXES", "SUPPORTED_SUFFIXES", "SourceRef", "iter_documents",
           "iter_txt", "litdata_index", "resolve_source"]

TEXT_SUFFIXES = (".txt",)
JSON_SUFFIXES = (".jsonl", ".json")
SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet", ".txt.gz", ".jsonl.gz", ".json.gz")
_TXT_CHUNK_CHARS = 1 << 20
LITDATA_PREFIX = "litdata:"
LITDATA_REMOTE_PREFIXES = ("s3://", "gs://", "r2://", "azure://", "local:")


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


def litdata_index(path: Path, what: str) -> dict[str, Any]:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{what}: unreadable litdata index {path} ({type(err).__name__}: {err})") from None
    if not isinstance(index, dict):
        raise ValueError(f"{what}: {path} is not a litdata index (expected a JSON object)")
    return index


def _litdata_item_loader(path: Path, what: str) -> str | None:
    """``config.item_loader`` of a litdata ``index.json`` (``None`` if not recorded)."""
    config = litdata_index(path, what).get("config")
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
            raise ValueError(
                f"{what} {text!r}: no index.json, not a litdata-optimised dataset (run litdata.optimize first)"
            )
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


def iter_txt(
    path: Path, chunk_chars: int = _TXT_CHUNK_CHARS, encoding: str = DEFAULT_ENCODING
) -> Iterator[tuple[str, bool]]:
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


def _iter_json_rows(path: Path, text_field: str, encoding: str = DEFAULT_ENCODING) -> Iterator[tuple[str, bool]]:
    """Texts of a ``.jsonl``/``.json`` file, read by :func:`litcpt.data.rows.iter_file_rows`."""
    for where, row in iter_file_rows(path, encoding):
        at = f"{path}:{where.number}" if where.kind == "line" else f"{path}: element {where.number - 1}"
        if isinstance(row, BadRow):
            raise ValueError(f"{at}: {row.message}")
        yield _row_text(row, text_field, at), True


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
                raise ValueError(
                    f"{path}: row {row}: column {text_field!r} must be a string, got {type(value).__name__}"
                )
            yield value, True


def _load_hf(ref: SourceRef, hf_kwargs: dict[str, Any] | None) -> Any:
    datasets = import_datasets("HF datasets sources")
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
    except Exception as err:
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
                raise ValueError(
                    f"{ref.spec}: row {row}: field {text_field!r} must be a string, got {type(value).__name__}"
                )
            yield value, True


def iter_documents(
    ref: SourceRef,
    text_field: str = "text",
    hf_kwargs: dict[str, Any] | None = None,
    encoding: str = DEFAULT_ENCODING,
) -> Iterator[tuple[str, bool]]:
    """Stream ``(text piece, ends_document)`` pairs of a corpus (a ``.txt`` file is one document
    split into several pieces; every other row is one piece that ends its document)."""
    if ref.kind == "files":
        for path in ref.files:
            name = path.name.lower()
            if name.endswith((".txt", ".txt.gz")):
                yield from iter_txt(path, encoding=encoding)
            elif name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
                yield from _iter_json_rows(path, text_field, encoding)
            elif name.endswith(".parquet"):
                yield from _iter_parquet(path, text_field)
            else:  # pragma: no cover - filtered by resolve_source
                raise ValueError(f"{path}: unsupported file type")
    elif ref.kind in ("hf_disk", "hf_hub"):
        yield from _iter_hf(ref, text_field, hf_kwargs)
    else:
        raise ValueError(f"{ref.spec}: pre-tokenised data has no documents to read")
