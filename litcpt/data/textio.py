"""The one reader of text files for every litcpt data source (text corpora and preference files).

Lines are read as bytes and decoded one by one, so a byte that is not valid in the file's encoding is reported
with the file, the line and the column (``data/a.jsonl: line 12: not valid utf-8 (byte 0xff at column 6)``)
instead of Python's ``'utf-8' codec can't decode byte 0xff in position 5946``. A UTF-8 byte-order mark at the
start of the file is dropped; ``.gz`` files are decompressed on the fly. Encodings must be ASCII-compatible
(``utf-8``, ``latin-1``, ``cp1252``, ...): lines are split at ``\\n`` bytes.
"""

from __future__ import annotations

import codecs
import gzip
from collections.abc import Iterator
from pathlib import Path

DEFAULT_ENCODING = "utf-8"


def check_encoding(encoding: str, field: str = "encoding") -> str:
    """``encoding`` if Python knows it and it splits lines at ``\\n`` bytes, else a one-line ``ValueError``."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"{field}: unknown encoding {encoding!r} (e.g. utf-8, latin-1, cp1252)") from None
    if "\n".encode(info.name) != b"\n":
        raise ValueError(f"{field}: {encoding!r} is not ASCII-compatible; re-encode the file as UTF-8")
    return encoding


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def decode_error(path: Path | str, lineno: int, raw: bytes, err: UnicodeDecodeError, encoding: str) -> ValueError:
    """The one-line error for a line that does not decode."""
    hint = ("; if the file is in another encoding, set `encoding:` of its data module (TextFiles, Preference:"
            " latin-1, cp1252, ...) or convert it to UTF-8" if codecs.lookup(encoding).name == "utf-8" else "")
    return ValueError(f"{path}: line {lineno}: not valid {encoding} (byte 0x{raw[err.start]:02x} at column "
                      f"{err.start + 1}){hint}")


def iter_lines(path: Path | str, encoding: str = DEFAULT_ENCODING) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` pairs (1-based, line endings kept) of a text file, BOM dropped."""
    path = Path(path)
    utf8 = codecs.lookup(encoding).name == "utf-8"
    with _open_binary(path) as fp:
        for lineno, raw in enumerate(fp, start=1):
            if lineno == 1 and utf8 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield lineno, raw.decode(encoding)
            except UnicodeDecodeError as err:
                raise decode_error(path, lineno, raw, err, encoding) from None


def read_text(path: Path | str, encoding: str = DEFAULT_ENCODING) -> str:
    """The whole file as one string (see :func:`iter_lines` for errors and the BOM)."""
    return "".join(line for _, line in iter_lines(path, encoding))
