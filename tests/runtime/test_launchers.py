"""Multi-node launches simulated on one machine (gloo, CPU): ``srun`` (SLURM_* variables, 2 tasks on 2 "nodes") and
``torchrun --nnodes 2`` (two launcher processes) train exactly as 1 node x 2 ranks and write every file once."""

from __future__ import annotations

import collections
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests import forked
from tests.helpers import REPO, patience, read_metrics, series, tiny_recipe

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

STEPS = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(trace: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK",
                                "WORLD_SIZE", "MASTER_"))}
    env.update(PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               LITCPT_TRACE_DIR=str(trace), **extra)
    return env


def _wait(procs: list, timeout: int = 600) -> None:
    outputs = [p.communicate(timeout=patience(timeout)) for p in procs]
    for p, (_out, err) in zip(procs, outputs):
        assert p.returncode == 0, f"{p.args} failed ({p.returncode}):\n{err[-4000:]}"


def _recipe(tmp_path: Path) -> Path:
    return tiny_recipe(tmp_path, **{"train.max_steps": STEPS, "train.save_interval": 2, "eval.interval": 2})


def _writes(trace: Path) -> tuple[collections.Counter, dict[str, set[str]]]:
    """How often each path was replaced, and by which processes (one trace file per process)."""
    counts: collections.Counter = collections.Counter()
    writers: dict[str, set[str]] = collections.defaultdict(set)
    for path in trace.glob("writes-*.txt"):
        lines = [line for line in path.read_text().splitlines() if line]
        counts.update(lines)
        for line in lines:
            writers[line].add(path.name)
    return counts, writers


def _assert_written_once(trace: Path, out: Path) -> None:
    """Every file is written by one process, once; ``last.ckpt`` is rewritten (atomically) at each of the
    ``STEPS / save_interval`` saves, by that one process."""
    counts, writers = _writes(trace)
    mine = {path: n for path, n in counts.items() if path.startswith(str(out.resolve()))}
    assert str((out / "config.yaml").resolve()) in mine, sorted(mine)
    assert str((out / "final").resolve()) in mine, sorted(mine)
    assert all(len(writers[p]) == 1 for p in mine), {p: sorted(writers[p]) for p in mine if len(writers[p]) > 1}
    last = str((out / "checkpoints" / "last.ckpt").resolve())
    assert mine.pop(last, 0) == STEPS // 2, counts[last]
    assert all(n == 1 for n in mine.values()), {p: n for p, n in mine.items() if n > 1}


def _run_baseline(tmp_path: Path) -> Path:
    """1 node x 2 ranks, launched by Lightning itself."""
    recipe, trace = _recipe(tmp_path), tmp_path / "trace"
    cmd = [str(REPO / "tests/runtime/trace_writes.py"), "pretrain", "--config", str(recipe), "--devices", "2",
           "--strategy", "ddp", "--accelerator", "cpu"]
    _wait([forked.start(cmd, env=_env(trace), cwd=REPO)])  # rank 1: a new process that Lightning starts
    _assert_written_once(trace, tmp_path / "out")
    return tmp_path / "out"


def _same_training(out: Path, baseline: Path) -> None:
    ours, theirs = series(read_metrics(out), "train/loss"), series(read_metrics(baseline), "train/loss")
    assert len(ours) == STEPS and [s for s, _ in ours] == [s for s, _ in theirs]
    for (_, a), (_, b) in zip(ours, theirs):
        assert abs(a - b) < 1e-4, (ours, theirs)
    a = torch.load(out / "final/lit_model.pth", weights_only=True)
    b = torch.load(baseline / "final/lit_model.pth", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    return _run_baseline(tmp_path_factory.mktemp("baseline"))


def test_srun_two_nodes(tmp_path, baseline):
    """What ``srun --nodes 2 --ntasks-per-node 1 litcpt pretrain --devices 1 --num_nodes 2`` sets in each task."""
    recipe, trace, port = _recipe(tmp_path), tmp_path / "trace", _free_port()
    procs = []
    for rank in range(2):
        env = _env(
            trace,
            SLURM_NTASKS="2",
            SLURM_NTASKS_PER_NODE="1",
            SLURM_NNODES="2",
            SLURM_PROCID=str(rank),
            SLURM_LOCALID="0",
            SLURM_NODEID=str(rank),
            SLURM_JOB_NAME="litcpt-test",
            SLURM_JOB_ID="4242",
            SLURM_NODELIST="127.0.0.1",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
        cmd = [str(REPO / "tests/runtime/trace_writes.py"), "pretrain", "--config", str(recipe), "--devices", "1",
               "--num_nodes", "2", "--strategy", "ddp", "--accelerator", "cpu"]
        procs.append(forked.start(cmd, env=env, cwd=REPO))  # a task: a process of its own (tests/forked.py)
    _wait(procs)
    _assert_written_once(trace, tmp_path / "out")
    _same_training(tmp_path / "out", baseline)


def test_torchrun_two_nodes(tmp_path, baseline):
    """``torchrun --nnodes 2 --nproc_per_node 1 --node_rank N`` started twice, as on two nodes."""
    recipe, trace, port = _recipe(tmp_path), tmp_path / "trace", _free_port()
    procs = []
    for node in range(2):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "2",
            "--nproc_per_node",
            "1",
            "--node_rank",
            str(node),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            str(REPO / "tests/runtime/trace_writes.py"),
            "pretrain",
            "--config",
            str(recipe),
            "--devices",
            "1",
            "--num_nodes",
            "2",
            "--strategy",
            "ddp",
            "--accelerator",
            "cpu",
        ]
        procs.append(
            subprocess.Popen(cmd, env=_env(trace), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    _wait(procs)
    _assert_written_once(trace, tmp_path / "out")
    _same_training(tmp_path / "out", baseline)
