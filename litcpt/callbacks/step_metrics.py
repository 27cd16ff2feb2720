"""Step metrics written once per optimizer step: the learning rate the optimizer used, and throughput.

* :class:`OptimizerLR` logs one ``lr`` column: the LR of the first optimizer's first parameter group right before
  each optimizer step (what the step really used, whichever callback set it). LR-schedule callbacks that log their
  own ``lr`` are told not to (``log_lr = False``), so there is no duplicate ``lr`` / ``lr-AdamW`` pair.
* :class:`RowsBeforeCheckpoint` writes ``metrics.csv`` up to the current step's row before a checkpoint is saved:
  a run resumed from that checkpoint starts at the next step, so a row not yet in the file would never be written.
* :class:`StepThroughputMonitor` is Lightning's ``ThroughputMonitor`` with validation throughput logged at the
  run's step (Lightning logs it against a validation-batch counter of its own) and without the warning for modules
  that do not define ``flops_per_batch`` (throughput is still logged, FLOP/s is not).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from litcpt._private import ThroughputMonitorAdapter, log_step_metrics_now
from litcpt.report.metrics_csv import StepCSVLogger


class OptimizerLR(Callback):
    """Log ``lr`` (float64) once per optimizer step, from ``optimizer.param_groups[0]["lr"]``."""

    def __init__(self, name: str = "lr") -> None:
        self.name = name

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for callback in trainer.callbacks:
            if callback is not self and getattr(callback, "log_lr", False) is True:
                callback.log_lr = False  # one LR column: this one

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        lr = optimizer.param_groups[0]["lr"]
        lr = float(lr.item() if isinstance(lr, torch.Tensor) else lr)
        pl_module.log(self.name, torch.tensor(lr, dtype=torch.float64), on_step=True, on_epoch=False,
                      prog_bar=False, logger=bool(trainer.loggers), batch_size=1)


class RowsBeforeCheckpoint(Callback):
    """Before a checkpoint is written: the metrics of the step it saves go to the loggers (Lightning sends them after
    ``on_train_batch_end``, where step checkpoints are saved) and :class:`StepCSVLogger` writes every row it holds."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        log_step_metrics_now(trainer)
        for logger in trainer.loggers:
            if isinstance(logger, StepCSVLogger):
                logger.write_rows()


class StepThroughputMonitor(ThroughputMonitorAdapter):
    """``ThroughputMonitor`` whose rows share the ``step`` of every other metric (validation included)."""

    def update_throughput(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, iter_num: int) -> None:
        if self.module_has_flops is None:  # decided at the first batch: the module's setup may measure its FLOPs
            self.module_has_flops = getattr(pl_module, "flops_per_batch", None) is not None
        super().update_throughput(trainer, pl_module, batch, iter_num)

    def compute_throughput(self, trainer: L.Trainer, iter_num: int | None) -> None:
        super().compute_throughput(trainer, None)  # None: the logger connector's step, i.e. the run's optimizer step
