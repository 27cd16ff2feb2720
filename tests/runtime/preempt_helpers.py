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
    resumes: from the source run's checkpoint)."""

    def __init__(self, batch: int, signum: int = 15, rank: int = 0, resumed_too: bool = False) -> None:
        self.batch, self.signum, self.rank, self.resumed_too = batch, signum, rank, resumed_too
        self._seen = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._seen += 1
        if self._seen == self.batch and trainer.global_rank == self.rank and (
                self.resumed_too or trainer.ckpt_path is None):
            os.kill(os.getpid(), self.signum)
