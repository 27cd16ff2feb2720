"""Two long-lived rank processes that run ``litcpt`` commands with ``--devices 2`` (or Lightning scripts with
``devices=2``) for the tests.

A 2-rank command started the usual way costs two fresh interpreters (~5 s of imports each, one after the other:
Lightning starts rank 1 once rank 0 has set up). Here both ranks are started once per test worker, as ``torchrun``
would start them (``TORCHELASTIC_RUN_ID``, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``), so Lightning
finds its processes already created; each command then runs in both of them through the CLI's own ``main``, on a
fresh ``MASTER_PORT`` (the CLI tears its process group down at the end). That is the launcher path
``tests/runtime/test_launchers.py`` checks against real ``torchrun``; tests that check a launcher itself start their
own processes.

Run as ``python -m tests.rank_pool RANK``: a rank server reading one JSON command per line on stdin and answering
with one result line on stdout.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORLD = 2
_RESULT = "@@litcpt-rank-result@@ "


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RankPool:
    """The two rank servers (started on first use, stopped at exit or after a command that did not finish)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def _start(self) -> None:
        base = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
                "TORCHELASTIC_RUN_ID": "litcpt-tests", "WORLD_SIZE": str(WORLD), "LOCAL_WORLD_SIZE": str(WORLD),
                "GROUP_RANK": "0", "NODE_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
        base.pop("PYTEST_XDIST_WORKER", None)
        self.procs = [subprocess.Popen([sys.executable, "-m", "tests.rank_pool", str(rank)], cwd=REPO, text=True,
                                       env={**base, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                      for rank in range(WORLD)]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.procs = []

    def run(self, argv: list[str], *, cwd: Path, timeout: float, program: str = "litcpt") -> tuple[int, str, str]:
        """``(exit status, stdout, stderr)`` of ``litcpt ARGV`` (``program``: a script to run as ``__main__`` instead)
        on both ranks (rank 0's output first; the status is rank 0's, or rank 1's if rank 0 succeeded)."""
        if not self.procs or any(p.poll() is not None for p in self.procs):
            self.stop()
            self._start()
        line = json.dumps({"argv": argv, "cwd": str(cwd), "port": _free_port(), "program": program}) + "\n"
        for proc in self.procs:
            proc.stdin.write(line)
            proc.stdin.flush()
        results = self._collect(time.monotonic() + timeout)
        if results is None:
            self.stop()
            raise subprocess.TimeoutExpired(["litcpt", *argv], timeout)
        codes = [r["code"] for r in results]
        code = codes[0] or codes[1]
        return code, "".join(r["out"] for r in results), "".join(r["err"] for r in results)

    def _collect(self, deadline: float) -> list[dict] | None:
        results: dict[int, dict] = {}
        selector = selectors.DefaultSelector()
        for rank, proc in enumerate(self.procs):
            selector.register(proc.stdout, selectors.EVENT_READ, rank)
        try:
            while len(results) < WORLD:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                for key, _ in selector.select(timeout=left):
                    text = key.fileobj.readline()
                    if not text:  # the rank died
                        code = self.procs[key.data].wait()
                        results[key.data] = {"code": 1, "out": "", "err": f"rank {key.data} died ({code})\n"}
                        selector.unregister(key.fileobj)
                    elif text.startswith(_RESULT):
                        results[key.data] = json.loads(text[len(_RESULT):])
        finally:
            selector.close()
        if any(p.poll() is not None for p in self.procs):
            self.stop()
        return [results[rank] for rank in range(WORLD)]


_POOL: RankPool | None = None


def pool() -> RankPool:
    """This process's pool (one per test worker)."""
    global _POOL
    if _POOL is None:
        _POOL = RankPool()
        atexit.register(_POOL.stop)
    return _POOL


def _serve() -> None:
    import torch

    torch.set_num_threads(1)
    from tests.helpers import run_in_process

    out = sys.stdout
    for line in sys.stdin:
        command = json.loads(line)
        os.environ["MASTER_PORT"] = str(command["port"])
        code, stdout, stderr = run_in_process(command["argv"], cwd=Path(command["cwd"]), program=command["program"])
        out.write(_RESULT + json.dumps({"code": code, "out": stdout, "err": stderr}) + "\n")
        out.flush()


if __name__ == "__main__":
    _serve()
