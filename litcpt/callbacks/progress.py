"""A training progress bar that counts optimizer steps of the run (and tokens), right after a resume too.

Lightning's bar counts micro-batches of the current epoch against ``max_steps`` (``160/80`` with 2 accumulation
steps, ``Epoch 0/-2`` with ``max_epochs=-1``, ``160/40`` after a resume). Here the bar's position is
``trainer.global_step`` and its total ``trainer.max_steps``, counted from the first step of the run's LR stage when
that starts later (``litcpt anneal`` branches at the source's step 16 of 20: ``0/4``, not ``16/20``); the rate counts
the steps this process trained (a resumed run does not start at ``100000 it/s``). The postfix shows the training
tokens seen so far (``train/tokens`` when the module logs it) and the progress-bar metrics (the loss).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


def _human(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


class StepProgressBar(TQDMProgressBar):
    """TQDM bar over optimizer steps: ``train 37/80 [tokens=1.2M, train/loss=5.31]``."""

    def __init__(self, refresh_rate: int = 1) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self._shown_step = -1
        self._first_step = 0

    def on_train_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_start(trainer, *args)
        self._position(trainer)  # a resumed run starts mid-epoch: no on_train_epoch_start before its first step

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        self._position(trainer)

    def _position(self, trainer: L.Trainer) -> None:
        from litcpt.callbacks.lr_schedule import LRScheduleCallback

        starts = [c.stage_start_step for c in trainer.callbacks if isinstance(c, LRScheduleCallback)]
        start = (trainer.global_step if starts[0] is None else starts[0]) if starts else 0  # None: a stage starts now
        self._first_step = max(0, min(trainer.global_step, start))
        bar = self.train_progress_bar
        total = trainer.max_steps - self._first_step if trainer.max_steps and trainer.max_steps > 0 else None
        bar.reset(total=total)
        bar.n = bar.initial = bar.last_print_n = trainer.global_step - self._first_step  # the rate: steps from here
        bar.set_description("train")
        self._shown_step = trainer.global_step
        bar.refresh()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step == self._shown_step or self.train_progress_bar.disable:
            return  # still accumulating: nothing new to show
        self._shown_step = step
        if step % self.refresh_rate == 0 or step == trainer.max_steps:
            self.train_progress_bar.n = step - self._first_step
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            self.train_progress_bar.refresh()

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        tokens = trainer.callback_metrics.get("train/tokens")
        if tokens is not None:
            metrics = {"tokens": _human(float(tokens)), **metrics}
        return metrics
