"""Atomic file writes: every file litcpt writes is whole or absent, whatever the filesystem and wherever a kill lands.

One rule for all writers (checkpoints, ``config.yaml``, JSON results, scores, figures, token caches): write a
temporary file *in the destination directory* (so the final rename never crosses filesystems, whatever ``TMPDIR``
is), flush and fsync it, ``os.replace`` it onto the destination and fsync the directory so the rename itself is
durable. A kill before the rename leaves the old file untouched plus a hidden ``.<name>.<8 chars>.tmp`` that
:func:`litcpt.runtime.resume.clean_stale_saves` recognises and removes on the next start. The file gets the mode any
new file gets (``0o666`` less the process umask), not ``mkstemp``'s ``0o600``.

This module imports nothing heavy (no torch), so the CLI can use it at start-up.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["NoSpaceError", "is_no_space", "atomic_file", "write_atomic", "write_text", "write_json", "write_yaml",
           "write_lines", "fsync_dir"]


def process_umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status`` on Linux; elsewhere set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fp:
            for line in fp:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: Path | str) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: Path | str, mode: str = "w", *, encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on a clean exit it replaces ``path``, on an error it is
    removed and ``path`` keeps its old content. ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # mkstemp's 0600 -> what open() would give: teammates may read a shared run dir
            os.fchmod(fd, 0o666 & ~process_umask())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fp:
            yield fp
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except Exception as err:
        if not is_no_space(err):
            raise
        written = os.path.getsize(tmp) if os.path.exists(tmp) else 0
        raise NoSpaceError(path, written) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class NoSpaceError(OSError):
    """A write that filled the disk, in one line: the file, "no space left on device", the bytes free and the bytes
    written before the write failed (the file needs at least that many). The file keeps its old content."""

    def __init__(self, path: Path, written: int) -> None:
        import shutil

        try:
            free = f"{shutil.disk_usage(path.parent).free:,} bytes free"
        except OSError:
            free = "free space unknown"
        super().__init__(errno.ENOSPC, f"{path}: no space left on device ({free}; the write needs more than "
                                       f"the {written:,} bytes it wrote); the previous files are intact")

    def __str__(self) -> str:
        return str(self.strerror)


def is_no_space(err: BaseException | None) -> bool:
    """``err`` or an error it was raised from or during is ``ENOSPC`` (torch's writer wraps it in a RuntimeError)."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(err):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def write_atomic(path: Path | str, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(binary_file)`` on a temporary sibling of ``path`` and move it into place (``torch.save``,
    ``fig.savefig(fp, format="png")``...)."""
    with atomic_file(path, "wb") as fp:
        write(fp)
    return Path(path)


def write_text(path: Path | str, text: str, *, encoding: str = "utf-8") -> Path:
    with atomic_file(path, "w", encoding=encoding) as fp:
        fp.write(text)
    return Path(path)


def write_lines(path: Path | str, lines: Iterator[str] | list[str]) -> Path:
    """Write each string of ``lines`` followed by a newline (JSON lines, CSV rows)."""
    with atomic_file(path, "w") as fp:
        for line in lines:
            fp.write(line + "\n")
    return Path(path)


def write_json(path: Path | str, obj: Any, *, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


def write_yaml(path: Path | str, data: Any) -> Path:
    import yaml

    return write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
