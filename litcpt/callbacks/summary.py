"""The model summary printed at the start of training, with the FLOPs litcpt knows instead of Lightning's 0.

Lightning's summary measures FLOPs by running ``example_input_array`` through the model; litcpt modules have none
(a forward of the real model just to print a table), so its FLOPs column and ``Total FLOPs`` read 0. The training
FLOPs of one micro-batch are measured on the meta device by the module (``flops_per_batch``, as ``litgpt
pretrain`` does); this summary drops the empty column and prints that number instead, or nothing if unknown.
"""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count

from litcpt._private import summary_table

log = logging.getLogger("lightning.pytorch.callbacks.model_summary")


class RunSummary(ModelSummary):
    """``ModelSummary`` without the FLOPs column; ends with the training FLOPs per micro-batch when known."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._max_depth or not trainer.is_global_zero:
            return
        summary = self._summary(trainer, pl_module)
        columns = [(name, values) for name, values in summary._get_summary_data() if name != "FLOPs"]
        table = summary_table(summary.total_parameters, summary.trainable_parameters, summary.model_size,
                              summary.total_training_modes, *columns)
        lines = table.splitlines()[:-1]  # the last line is Lightning's "Total Flops" (0 here)
        flops = getattr(pl_module, "flops_per_batch", None)
        if flops:
            count = get_human_readable_count(int(flops))
            lines.append(f"{count:<10}Training FLOPs per micro-batch (forward + backward)")
        log.info("\n" + "\n".join(lines))
