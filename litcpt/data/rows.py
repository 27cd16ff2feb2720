"""The one reader of row data for every litcpt data source: preference pairs, best-of-N and listwise rows, text
corpora and ``litcpt score`` read their ``.jsonl``/``.json``/``.parquet`` files, ``save_to_disk`` directories, hub
names and in-memory rows here, so a file that one of them accepts the others accept too, with the same errors.

Text files are decoded by :mod:`litcpt.data.textio` (a byte that does not decode names the file and line, a UTF-8
byte-order mark is dropped, ``.gz`` is decompressed). File rules:

* ``.jsonl`` (``.gz``): one JSON value per non-blank line; location ``line N``.
* ``.json`` (``.gz``): a JSON list of rows (location ``row N``), or JSON lines saved as ``.json`` (one row per line,
  location ``line N``). A single JSON value that is not a list is an error.
* ``.parquet``: one row per record (pyarrow, else pandas, else ``datasets``); location ``row N``.

A line that is not valid JSON is yielded as a :class:`BadRow` (reason ``"invalid_json"``), so that a caller can skip
it or raise a located error; any other problem with a source is a one-line ``ValueError`` naming it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from litcpt.data.textio import DEFAULT_ENCODING, iter_lines, read_text

__all__ = ["ROW_SUFFIXES", "BadRow", "Where", "check_choice", "import_datasets", "iter_file_rows", "read_source_rows",
           "type_name"]

ROW_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class BadRow(Exception):
    """A row-level problem (``reason`` a short key, ``field_name`` the field or ``None``), turned into a located
    ``ValueError`` (or a skipped row) by the loader that reads the rows."""

    def __init__(self, reason: str, field_name: str | None, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.field_name = field_name
        self.message = message


class Where(NamedTuple):
    """Location of a row: ``kind`` is ``"line"`` (a line of a text file) or ``"row"`` (1-based ``number``)."""

    kind: str
    number: int

    def __str__(self) -> str:
        return f"{self.kind} {self.number}"


Row = tuple[Where, Any]  # (location, row or BadRow)


def type_name(value: Any) -> str:
    """``"null"`` or the type's name, for "expected X, got Y" messages."""
    return "null" if value is None else type(value).__name__


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """A one-line ``ValueError`` unless ``value`` is one of ``choices`` (an option such as ``format``)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def import_datasets(purpose: str) -> Any:
    """The ``datasets`` package, or a one-line ``ValueError`` saying what needed it."""
    try:
        import datasets
    except Exception as exc:
        raise ValueError(f"{purpose} needs the `datasets` package, which failed to import: {exc}") from None
    return datasets


def _numbered(rows: Iterable[Any]) -> Iterator[Row]:
    for number, row in enumerate(rows, start=1):
        yield Where("row", number), row


def _jsonl_rows(path: Path, encoding: str) -> Iterator[Row]:
    for number, line in iter_lines(path, encoding):
        if not line.strip():
            continue
        try:
            yield Where("line", number), json.loads(line)
        except json.JSONDecodeError as exc:
            yield Where("line", number), BadRow("invalid_json", None, f"invalid JSON ({exc.msg} at column {exc.colno})")


def _json_rows(path: Path, encoding: str) -> Iterator[Row]:
    text = read_text(path, encoding)
    if not text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:  # several values: JSON lines saved as .json
            yield from _jsonl_rows(path, encoding)
            return
        raise ValueError(f"{path}: expected a JSON list of row objects (or JSON lines), got {type_name(data)}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, list):  # pragma: no cover - text starting with "[" that parses is a list
        raise ValueError(f"{path}: expected a JSON list of row objects, got {type_name(data)}")
    yield from _numbered(data)


def _parquet_records(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    except ImportError:
        pass
    try:
        import pandas as pd

        return pd.read_parquet(path).to_dict("records")
    except ImportError:
        pass
    datasets = import_datasets(f"reading {path}")
    return list(datasets.load_dataset("parquet", data_files=str(path), split="train"))


def iter_file_rows(path: Path | str, encoding: str = DEFAULT_ENCODING) -> Iterator[Row]:
    """``(location, row or BadRow)`` of a ``.jsonl``/``.json``/``.parquet`` file (``.gz`` for the first two)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return _jsonl_rows(path, encoding)
    if name.endswith((".json", ".json.gz")):
        return _json_rows(path, encoding)
    if name.endswith(".parquet"):
        return _numbered(_parquet_records(path))
    raise ValueError(f"{path}: unsupported file type, expected one of {list(ROW_SUFFIXES)}")


def _arrow_dir_records(path: Path) -> list[dict[str, Any]]:
    """Read one split written by ``Dataset.save_to_disk`` with pyarrow alone."""
    import pyarrow as pa

    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    records: list[dict[str, Any]] = []
    for entry in state.get("_data_files", []):
        with pa.memory_map(str(path / entry["filename"])) as source:
            records.extend(pa.ipc.open_stream(source).read_all().to_pylist())
    return records


def _saved_dataset_records(path: Path, split: str | None) -> list[dict[str, Any]]:
    """Rows of a ``save_to_disk`` directory (a Dataset, or a DatasetDict with ``split``)."""
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        if split is None:
            if len(splits) != 1:
                raise ValueError(f"{path}: a dataset dict with splits {splits}; pass split=")
            split = splits[0]
        if split not in splits:
            raise ValueError(f"{path}: no split {split!r}, expected one of {splits}")
        path = path / split
    elif split is not None:
        raise ValueError(f"{path}: a single dataset has no splits, got split={split!r}")
    try:
        datasets = import_datasets("load_from_disk")
    except ValueError:
        return _arrow_dir_records(path)
    return list(datasets.load_from_disk(str(path)))


def _is_dataset_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(hasattr(v, "column_names") for v in obj.values())


def read_source_rows(source: Any, split: str | None = None,
                     encoding: str = DEFAULT_ENCODING) -> tuple[str, Iterator[Row]]:
    """``(label, rows)`` of a source, before parsing: ``rows`` yields ``(location, row)`` (see :class:`Where`); a
    line that is not JSON is yielded as a :class:`BadRow` (raise a located error for it, or skip it).

    ``source``: a ``.jsonl``/``.jsonl.gz``/``.json``/``.json.gz``/``.parquet`` file, a ``save_to_disk`` directory,
    a ``datasets`` Dataset or DatasetDict, a list of row dicts, or a hub dataset name (``datasets.load_dataset(name,
    split=split or "train")``). ``split`` picks a split of a dataset dict or a hub dataset."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = str(source)
        if path.is_dir():
            if not ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
                raise ValueError(f"{label}: not a `save_to_disk` directory (no state.json or dataset_dict.json)")
            return label, _numbered(_saved_dataset_records(path, split))
        name = path.name.lower()
        if path.is_file():
            if split is not None:
                raise ValueError(f"{label}: split={split!r} only applies to dataset dicts and hub names")
            if not name.endswith(ROW_SUFFIXES):
                raise ValueError(f"{label}: unsupported file type, expected one of {list(ROW_SUFFIXES)}")
            return label, iter_file_rows(path, encoding)
        if isinstance(source, str) and not name.endswith(ROW_SUFFIXES) and _HUB_NAME.match(source):
            datasets = import_datasets(f"loading hub dataset {source!r}")
            return label, _numbered(datasets.load_dataset(source, split=split or "train"))
        raise ValueError(f"{label}: no such file or directory")
    if _is_dataset_dict(source):
        if split is None:
            if len(source) != 1:
                raise ValueError(f"<dataset dict>: splits {sorted(source)}; pass split=")
            split = next(iter(source))
        if split not in source:
            raise ValueError(f"<dataset dict>: no split {split!r}, expected one of {sorted(source)}")
        return f"<dataset dict[{split}]>", _numbered(source[split])
    if isinstance(source, Iterable) and not isinstance(source, (Mapping, bytes)):
        if split is not None:
            raise ValueError(f"<{type(source).__name__}>: split={split!r} only applies to dataset dicts and hub names")
        return f"<{type(source).__name__}>", _numbered(source)
    raise ValueError(
        f"unsupported preference source of type {type(source).__name__}: expected a path, a hub name, "
        "a datasets Dataset/DatasetDict or a list of row dicts"
    )
