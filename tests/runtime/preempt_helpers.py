"""Callbacks that a test's recipe adds (``callbacks: [{class_path: tests.runtime.preempt_helpers.SignalAt, ...}]``)
to send a real signal to the run's own process at a chosen micro-batch."""

from __future__ import annotations

import os
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class SignalAt(Callback):
    """Send ``signum`` to this process at the end of training micro-batch ``batch`` (counted from the start of this
    fit) on rank ``rank``; never in a run resumed from a checkpoint unless ``resumed_too`` (``litcpt anneal`` always
    resumes: from the source run's checkpoint). With ``once`` (a file path), fire only if that file does not exist,
    and create it first: a run killed before its first checkpoint restarts from scratch under ``--resume auto``
    (no checkpoint to resume from) and must not be killed again (in-process, that would kill the test's worker)."""

    def __init__(self, batch: int, signum: int = 15, rank: int = 0, resumed_too: bool = False,
                 once: str | None = None) -> None:
        self.batch, self.signum, self.rank, self.resumed_too, self.once = batch, signum, rank, resumed_too, once
        self._seen = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._seen += 1
        if self._seen == self.batch and trainer.global_rank == self.rank and (
                self.resumed_too or trainer.ckpt_path is None):
            if self.once is not None:
                if os.path.exists(self.once):
                    return
                with open(self.once, "x"):
                    pass
            os.kill(os.getpid(), self.signum)
