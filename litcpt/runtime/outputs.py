"""Output paths, checked before any work, and the run's ``config.yaml``, written only once the run is known to start.

Every command's ``out_dir`` / ``out_file`` is checked by the CLI before anything is loaded (:func:`check_out_dir`,
:func:`check_out_file`): a file where a directory is expected, a directory where a file is expected, or a parent that
cannot be written is one line, not a traceback after the work. A training command into a directory that already holds
a run is refused unless it resumes (:func:`check_no_previous_run`).

``config.yaml`` (the resolved recipe) of a training command is *pending* until the run starts: the CLI hands it over
with :func:`pending_config` and the harness writes it (:func:`write_pending_config`) just before training, after every
check; a run refused at start-up, or a dry run, leaves an existing ``out_dir`` byte-identical. The hand-over is a
context variable set by the CLI around the one command it runs (nothing to set up for the Python API, which writes no
``config.yaml``).

This module imports nothing heavy (no torch), so the CLI can use it at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["check_no_previous_run", "check_out_dir", "check_out_file", "pending_config", "previous_run",
           "write_pending_config"]


def _writable_ancestor(path: Path, field: str) -> None:
    """The nearest existing ancestor of ``path`` must be a writable directory."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"{field}: {str(path)!r} cannot be created: {str(parent)!r} is a file, not a directory")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{field}: {str(path)!r} cannot be created: {str(parent)!r} is not writable")


def check_out_dir(path: Path | str, field: str = "out_dir") -> None:
    """``path`` can be (or is) a directory this process writes into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{field}: {str(path)!r} is a file, expected a directory (or a path that does not exist)")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{field}: {str(path)!r} is not writable")
        return
    _writable_ancestor(path, field)


def check_out_file(path: Path | str, field: str = "out_file") -> None:
    """``path`` can be (or is) a file this process writes."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{field}: {str(path)!r} is a directory, expected a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{field}: {str(path)!r} is not writable")
    _writable_ancestor(path, field)


def previous_run(out_dir: Path | str) -> list[str]:
    """What in ``out_dir`` shows that a run trained there: ``final/``, ``checkpoints/*.ckpt``, ``step-*/`` dirs."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = []
    if (out_dir / "final").exists():
        found.append("final/")
    ckpt_dir = out_dir / "checkpoints"
    if ckpt_dir.is_dir() and any(p.name.endswith(".ckpt") for p in ckpt_dir.iterdir()):
        found.append("checkpoints/*.ckpt")
    if any(p.is_dir() and p.name.startswith("step-") for p in out_dir.iterdir()):
        found.append("step-*/")
    return found


def check_no_previous_run(out_dir: Path | str, resume: Any, field: str = "out_dir") -> None:
    """Refuse to train from scratch into a directory that holds a run (its ``final/`` and checkpoints would be
    overwritten) unless ``resume`` is given."""
    if resume not in (False, None):
        return
    found = previous_run(out_dir)
    if found:
        raise ValueError(f"{field}: {str(out_dir)!r} already holds a run ({', '.join(found)}): --resume auto "
                         "continues it; to train again from scratch remove it or choose another out_dir")


@dataclass
class _Pending:
    out_dir: Path
    text: str
    written: bool = False


_PENDING: ContextVar[_Pending | None] = ContextVar("litcpt_pending_config", default=None)


@contextmanager
def pending_config(out_dir: Path | str, text: str) -> Iterator[None]:
    """Within the block, ``config.yaml`` with ``text`` is due in ``out_dir``: :func:`write_pending_config` writes it
    when the run starts."""
    token = _PENDING.set(_Pending(Path(out_dir), text))
    try:
        yield
    finally:
        _PENDING.reset(token)


def write_pending_config(out_dir: Path | str) -> bool:
    """Write the pending ``config.yaml`` of ``out_dir`` (once, on global rank zero); ``True`` if one is due there."""
    pending = _PENDING.get()
    if pending is None or Path(out_dir).resolve() != pending.out_dir.resolve():
        return False
    from litcpt.runtime.ranks import is_global_zero

    if not pending.written and is_global_zero():
        from litcpt.runtime.atomic import write_text

        write_text(pending.out_dir / "config.yaml", pending.text)
    pending.written = True
    return True
