"""Processes forked from the test worker, for the tests whose point is what happens *to* a process (a kill -9 in the
middle of a save, a SIGTERM, a task among several that a launcher starts), not what a fresh interpreter prints while
it imports.

A ``python -m litcpt`` process spends ~6 s importing torch, Lightning and LitGPT (and, through torchmetrics,
transformers) before it reads its first argument; the test worker has imported them already. :func:`start` forks
the worker and runs the program in the child with its own environment, working directory, signal handlers and output
files, so the child is a real process (its own pid, killed by a real signal, its files written by its own calls) that
starts in milliseconds. What the child inherits beyond that (the imported modules, one torch thread) is what every
rank of :mod:`tests.rank_pool` inherits too. Only where :func:`forkable` holds (one OpenMP/MKL thread since torch
loaded, as in each xdist worker); elsewhere the child is spawned as ``python ARGS``. Tests of what a fresh process
prints (e.g. tests/runtime/test_quiet.py) keep using :func:`tests.helpers.run_litcpt` with ``fresh_process=True``.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

RESET = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGHUP)
"""The signals whose handlers the child resets to the default (pytest and pytest-timeout install some)."""


def forkable() -> bool:
    """Whether this process can be forked safely: OpenMP and MKL were held to one thread before torch loaded
    (tests/conftest.py does so in each xdist worker). A child forked from a process whose OpenMP thread pool exists
    hangs in its first parallel op (libgomp waits at a barrier for threads the child does not have)."""
    if os.environ.get("OMP_NUM_THREADS") != "1" or os.environ.get("MKL_NUM_THREADS") != "1":
        return False
    torch = sys.modules.get("torch")
    return torch is None or torch.get_num_threads() == 1


class Forked:
    """A child (forked, or spawned where :func:`forkable` says no) with the part of :class:`subprocess.Popen`'s
    interface the tests use."""

    def __init__(self, pid: int, args: list[str], out: Path, err: Path, text: bool,
                 spawned: subprocess.Popen | None = None) -> None:
        self.pid, self.args, self._out, self._err, self._text = pid, args, out, err, text
        self._spawned = spawned
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self._spawned is not None:
            self.returncode = self._spawned.poll()
        elif self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _read(self, path: Path):
        data = path.read_bytes() if path.exists() else b""
        return data.decode(errors="replace") if self._text else data

    def communicate(self, timeout: float | None = None):
        self.wait(timeout)
        return self._read(self._out), self._read(self._err)

    def __del__(self) -> None:  # never leave a zombie or a paused child behind
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ChildProcessError, ProcessLookupError, OSError):
                pass


def start(args: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
          text: bool = True) -> Forked:
    """Fork; the child runs ``args``, which is ``["-m", "litcpt", ...]`` (the CLI) or ``[script.py, ...]`` (run as
    ``__main__``), the way ``python ARGS`` would, with ``env`` (the whole environment; default this one's) and
    ``cwd``; its stdout and stderr go to files that :meth:`Forked.communicate` returns."""
    logs = Path(tempfile.mkdtemp(prefix="litcpt-forked-"))
    out, err = logs / "stdout", logs / "stderr"
    if not forkable():  # e.g. `pytest -n 0`: torch runs with 2 threads there
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            spawned = subprocess.Popen([sys.executable, *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                       stdout=stdout, stderr=stderr)
        return Forked(spawned.pid, list(args), out, err, text, spawned)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return Forked(pid, list(args), out, err, text)
    code = 1
    try:  # the child: never returns into pytest
        _become(args, dict(os.environ if env is None else env), cwd, out, err)
        code = _run(args)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if not isinstance(done.code, int) and done.code is not None:
            print(done.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _become(args: list[str], env: dict[str, str], cwd: str | Path | None, out: Path, err: Path) -> None:
    for signum in RESET:
        signal.signal(signum, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, 0)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # the worker's stdin is pytest-xdist's channel: never read by the child
    os.close(null)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # $TMPDIR of the child's environment
    if cwd is not None:
        os.chdir(cwd)


def _run(args: list[str]) -> int:
    import runpy

    if args[:2] == ["-m", "litcpt"]:
        from litcpt.cli.main import main

        sys.argv = ["litcpt", *args[2:]]
        main(args[2:])
        return 0
    sys.argv = list(args)
    runpy.run_path(args[0], run_name="__main__")
    return 0
