"""Pre-emption: a signal asks a training run to stop; it saves a resumable checkpoint at the next optimizer-step
boundary, says so in one line and exits non-zero (or requeues its SLURM job).

Clusters send ``SIGTERM`` some time before they kill a job; SLURM sends the signal of ``#SBATCH --signal=USR1@90``
(``SIGUSR1``, Lightning's convention) before the time limit. Lightning 2.6 on its own turns ``SIGTERM`` into a
``SIGTERMException``, a ``SystemExit`` without a code: the run stops after the current micro-batch (in the middle of
an accumulated step), saves nothing and the process exits 0, so a pre-empted job looks successful. Under SLURM with
auto-requeue it saves an ``hpc_ckpt_N.ckpt`` from inside the ``SIGUSR1`` handler, wherever the step is.

Here the handlers only record the signal (:class:`PreemptionSignals`); :class:`litcpt.runtime.resume.StepCheckpoint`
asks at the end of every optimizer step (after that step's validation) whether any rank got one (one all-reduce of
two numbers per step when there are several ranks), saves ``checkpoints/last.ckpt`` there, and raises
:class:`Preempted`. Which signal requeues comes from Lightning's ``SLURMEnvironment`` (``auto_requeue``,
``requeue_signal``); the requeue itself is Lightning's ``scontrol requeue <job id>``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from typing import Any

import torch

__all__ = ["Preempted", "PreemptionSignals", "requeue_slurm_job"]


class Preempted(SystemExit):
    """The run stopped on a pre-emption signal; its exit status is ``128 + signal`` (as a shell reports a process
    ended by that signal), never 0."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)
        self.message = message


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class PreemptionSignals:
    """Handlers for ``SIGTERM`` and the requeue signal (``SIGUSR1``, or the one SLURM's environment names) that only
    record which arrived; :meth:`agreed` is the same answer on every rank."""

    def __init__(self) -> None:
        self.received: set[int] = set()
        self.requeue_signal: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self, cluster_environment: Any = None) -> None:
        """Replace the current handlers (Lightning's) until :meth:`restore`; on Windows or off the main thread this
        does nothing, as Lightning's own connector."""
        from lightning.fabric.plugins.environments import SLURMEnvironment

        if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
            return
        slurm = isinstance(cluster_environment, SLURMEnvironment) and cluster_environment.auto_requeue
        requeue = (cluster_environment.requeue_signal if slurm else None) or signal.SIGUSR1
        self.requeue_signal = int(requeue) if slurm else None
        for signum in {int(signal.SIGTERM), int(requeue)}:
            if signum not in self._previous:
                self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._record)

    def _record(self, signum: int, frame: Any) -> None:
        self.received.add(int(signum))  # nothing else in a handler: no I/O, no collective

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            if handler is not None:
                signal.signal(signum, handler)
        self._previous.clear()

    def agreed(self, strategy: Any = None, world_size: int = 1) -> int | None:
        """The signal to stop on if any rank received one (the requeue signal first), else ``None``; with several
        ranks every rank must call this at the same point (one all-reduce)."""
        requeue = self.requeue_signal or int(signal.SIGUSR1)
        flags = [int(requeue in self.received), int(bool(self.received - {requeue}))]
        if world_size > 1 and strategy is not None:
            summed = strategy.reduce(torch.tensor(flags, device=strategy.root_device), reduce_op="sum")
            flags = [int(v) for v in summed.tolist()]
        if flags[0]:
            return requeue
        return int(signal.SIGTERM) if flags[1] else None


def requeue_slurm_job() -> str:
    """``scontrol requeue`` this SLURM job (Lightning's ``_slurm_sigusr_handler_fn`` does the same); returns what
    happened, in a few words."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ.get("SLURM_JOB_ID", "")
    if not re.fullmatch(r"[0-9_-]+", job):
        return f"not requeued (SLURM job id {job!r})"
    try:
        result = subprocess.call(["scontrol", "requeue", job])
    except FileNotFoundError:
        return f"not requeued (no scontrol to requeue SLURM job {job})"
    return f"requeued SLURM job {job}" if result == 0 else f"requeue of SLURM job {job} failed ({result})"
