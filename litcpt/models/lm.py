"""The language-model LightningModule for (continued) pretraining: next-token cross-entropy on token blocks."""

from __future__ import annotations

from typing import Any

import torch
from litgpt.utils import chunked_cross_entropy
from torchmetrics import MeanMetric

from litcpt._private import attached_trainer
from litcpt.models.base import GPTModule


def split_block(batch: torch.Tensor, seq_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, T+1]`` token blocks -> (inputs ``[B, T]``, targets ``[B, T]``), as ``litgpt pretrain`` slices them."""
    batch = batch.long()
    return batch[:, :seq_length].contiguous(), batch[:, 1:seq_length + 1].contiguous()


def derive_tokens_per_step(trainer: Any, micro_batch_size: int | None, seq_length: int) -> int | None:
    """Global tokens per optimizer step: ``micro_batch_size x seq_length x accumulate_grad_batches x world_size``
    (None without a micro-batch size, e.g. dataloaders given to ``fit`` without a datamodule)."""
    if not micro_batch_size:
        return None
    return int(micro_batch_size) * int(seq_length) * int(trainer.accumulate_grad_batches) * int(trainer.world_size)


class LanguageModel(GPTModule):
    """Pretraining / continued pretraining of a ``litgpt.GPT``.

    Batches are ``[B, T+1]`` token blocks (LitGPT's pretraining format). Logged metrics:

    - ``train/loss`` (per optimizer step: the mean over its micro-batches on every rank, see
      :meth:`~litcpt.models.base.GPTModule.log_step_mean`), ``train/tokens`` (tokens seen so far);
    - ``val/loss/<name>`` per validation dataloader (names from the datamodule's ``val_names``) and ``val/loss``,
      their average — the paper's "final validation loss per dataset and average".

    ``tokens_per_step`` (global tokens per optimizer step) is read by the LR schedule callbacks (``unit="tokens"``)
    and used for ``train/tokens``. Unless given, :meth:`setup` derives it from the trainer and the datamodule:
    ``batch_size x seq_length x accumulate_grad_batches x world_size``.

    Args: see :class:`litcpt.models.base.GPTModule`, plus
        seq_length: training block length T (default: the config's ``block_size``).
        tokens_per_step: global tokens per optimizer step (global batch size x T); default: derived in ``setup``.
        z_loss: weight of the z-loss (0: none).
    """

    def __init__(self, config, *, seq_length: int | None = None, tokens_per_step: int | None = None,
                 z_loss: float = 0.0, **kwargs) -> None:
        super().__init__(config, **kwargs)
        config = self.config
        self.z_loss_weight = float(z_loss or 0.0)
        self.seq_length = seq_length or config.block_size
        if self.seq_length > config.block_size:
            raise ValueError(f"train.max_seq_length={self.seq_length} exceeds the model's block_size "
                             f"{config.block_size}")
        self.model.max_seq_length = self.seq_length
        self.tokens_per_step = tokens_per_step
        self._given_tokens_per_step = tokens_per_step  # None: derived from the trainer in every setup("fit")
        self._val_means: torch.nn.ModuleList = torch.nn.ModuleList()

    def setup(self, stage: str) -> None:
        """Derive ``tokens_per_step`` (unless given) and measure the FLOPs of one training micro-batch on the meta
        device (as ``litgpt pretrain`` does), so Lightning's ``ThroughputMonitor`` reports FLOP/s and MFU."""
        if stage != "fit":
            return
        micro_batch = getattr(getattr(self.trainer, "datamodule", None), "batch_size", None)
        if self._given_tokens_per_step is None:
            self.tokens_per_step = derive_tokens_per_step(self.trainer, micro_batch, self.seq_length)
        if getattr(self, "flops_per_batch", None) is not None:
            return
        from lightning.fabric.utilities.throughput import measure_flops
        from litgpt import GPT

        micro_batch = micro_batch or 1
        with torch.device("meta"):
            meta = GPT(self.config)
            x = torch.randint(0, 1, (int(micro_batch), self.seq_length))
            self.flops_per_batch = measure_flops(meta, lambda: meta(x), lambda y: chunked_cross_entropy(y, x))

    # ---------------------------------------------------------------- training
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)

    def _uses_fused_head(self) -> bool:
        from litcpt.models.logprobs import supports_fused_head

        return self.fused_head and supports_fused_head(self.model)

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """The cross-entropy of a batch (validation); with the fused head the logits are never materialised."""
        inputs, targets = split_block(batch, self.seq_length)
        if self._uses_fused_head():
            from litcpt.models.logprobs import fused_lm_loss

            return fused_lm_loss(self.model, inputs, targets)[1]
        return chunked_cross_entropy(self.model(inputs), targets)

    def training_loss(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(loss to train on, cross-entropy, weighted z-loss or None): the loss to train on is their sum."""
        inputs, targets = split_block(batch, self.seq_length)
        if self._uses_fused_head():
            from litcpt.models.logprobs import fused_lm_loss

            total, ce, z = fused_lm_loss(self.model, inputs, targets, z_weight=self.z_loss_weight)
            return total, ce, (self.z_loss_weight * z if self.z_loss_weight else None)
        logits = self.model(inputs)
        ce = chunked_cross_entropy(logits, targets)
        if not self.z_loss_weight:
            return ce, ce, None
        from litcpt.losses.stability import z_loss

        z = self.z_loss_weight * z_loss(logits, targets)
        return ce + z, ce, z

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        total, loss, z = self.training_loss(batch)
        if z is not None:
            self.log_step_mean("train/z_loss", z)
        self.log_step_mean("train/loss", loss, prog_bar=True)
        if self.tokens_per_step:
            self.log("train/tokens", float((self.global_step + 1) * self.tokens_per_step), on_step=True,
                     on_epoch=False)
        return total

    # -------------------------------------------------------------- validation
    def val_names(self) -> list[str]:
        dm = getattr(self.trainer, "datamodule", None)
        names = list(getattr(dm, "val_names", None) or [])
        loaders = self.trainer.num_val_batches if attached_trainer(self) is not None else []
        while len(names) < len(loaders):
            names.append(f"val{len(names)}")
        return names or ["val"]

    def on_validation_epoch_start(self) -> None:
        n = len(self.val_names())
        if len(self._val_means) != n:
            self._val_means = torch.nn.ModuleList(MeanMetric() for _ in range(n)).to(self.device)
        for metric in self._val_means:
            metric.reset()

    def validation_step(self, batch: torch.Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        loss = self.loss(batch)
        self._val_means[dataloader_idx].update(loss.detach(), weight=batch.shape[0])

    def on_validation_epoch_end(self) -> None:
        values = {}
        for name, metric in zip(self.val_names(), self._val_means):
            if metric.update_count:
                values[f"val/loss/{name}"] = metric.compute()
        if values:
            values["val/loss"] = torch.stack(list(values.values())).mean()
            if self.tokens_per_step:
                values["val/tokens"] = torch.tensor(float(self.global_step * self.tokens_per_step))
            self.log_dict(values, prog_bar=False, sync_dist=False, add_dataloader_idx=False)
