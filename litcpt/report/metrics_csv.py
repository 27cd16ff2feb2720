"""``metrics.csv`` with one row per step: Lightning's ``CSVLogger`` writes a row per ``log_metrics`` call, so one
optimizer step becomes several rows (loss, LR, throughput and validation each on their own). Here every call for
the same step is merged into one row; a row is written when a later step starts, when Lightning saves (only the
finished rows), before a checkpoint is saved (every row, the current step's too: a run resumed from that checkpoint
starts at the next step; more metrics of that step later rewrite its row) and when the logger is finalized."""

from __future__ import annotations

import csv
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_only


class StepMergingWriter(ExperimentWriter):
    """``ExperimentWriter`` that merges metrics logged for the same step into one row."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self._pending: dict[str, Any] | None = None
        self._written_step: int | None = None  # step of the last row already in the file

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        before = len(self.metrics)
        super().log_metrics(metrics_dict, step)
        row = self.metrics.pop(before)  # the row Lightning just recorded (values as plain numbers, "step" set)
        if self._pending is not None and self._pending["step"] == row["step"]:
            self._pending.update(row)
            return
        if self._pending is not None:
            self.metrics.append(self._pending)
        self._pending = row

    def save(self) -> None:
        """Write the finished rows (the current step may still get metrics)."""
        if self.metrics and self._written_step is not None and self.metrics[0]["step"] == self._written_step:
            self._merge_into_last_row(self.metrics.pop(0))
        if self.metrics:
            self._written_step = self.metrics[-1]["step"]
        super().save()

    def flush(self) -> None:
        """Write everything, the current step's row included (end of fit / validate)."""
        if self._pending is not None:
            self.metrics.append(self._pending)
            self._pending = None
        self.save()

    def _merge_into_last_row(self, row: dict[str, Any]) -> None:
        """A step whose row is already in the file got more metrics (e.g. a final validation): rewrite that row."""
        with self._fs.open(self.metrics_file_path, "r", newline="") as fp:
            rows = list(csv.DictReader(fp))
        if rows:
            rows[-1].update(dict(row.items()))
        else:
            rows = [row]
        self.metrics_keys = sorted(set(self.metrics_keys) | set(row))
        with self._fs.open(self.metrics_file_path, "w", newline="") as fp:
            writer = csv.DictWriter(fp, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)


class StepCSVLogger(CSVLogger):
    """``CSVLogger`` writing one ``metrics.csv`` row per step (see :class:`StepMergingWriter`)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> StepMergingWriter:  # type: ignore[override]
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = StepMergingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def write_rows(self) -> None:
        """Write every row, the current step's included (before a checkpoint is saved)."""
        if self._experiment is not None:
            self._experiment.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is None:
            return
        self._experiment.flush()
        super().finalize(status)
