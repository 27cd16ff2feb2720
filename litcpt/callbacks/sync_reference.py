"""TR-DPO reference syncing (Gorbatovski et al., 2024, "Learn Your Reference Model for Real Good Alignment",
arXiv 2404.09656): every ``sync_steps`` optimizer steps the frozen reference becomes
``π_ref ← α·π_θ + (1 − α)·π_ref`` (α = 1: hard update to the current policy).

As TRL's ``SyncRefModelCallback``: the update happens after optimizer step ``k`` when ``k % sync_steps == 0``. The
reference weights are part of the module, so they are saved in every ``.ckpt`` and a resumed run continues from the
synced reference. Parameters are mixed shard by shard, which is exact on one device, under DDP (replicated) and under
FSDP2 (the reference is sharded like the policy). A synced reference cannot come from precomputed log-probs.

Example::

    >>> from litcpt.callbacks.sync_reference import SyncReference
    >>> callback = SyncReference(alpha=0.6, sync_steps=512)
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch


@torch.no_grad()
def mix_into(target: torch.nn.Module, source: torch.nn.Module, alpha: float) -> None:
    """``target ← α·source + (1 − α)·target`` for every parameter (same names, same shapes)."""
    src = dict(source.named_parameters())
    for name, param in target.named_parameters():
        if name not in src:
            raise ValueError(f"sync_ref_model: the reference has a parameter {name!r} the policy lacks")
        param.mul_(1.0 - alpha).add_(src[name].detach().to(param.dtype), alpha=alpha)


class SyncReference(pl.Callback):
    """Mix the policy into ``pl_module.ref_model`` every ``sync_steps`` optimizer steps (see the module docstring).

    Args:
        alpha: mixing weight α in (0, 1] (TRL's ``ref_model_mixup_alpha``, default 0.6).
        sync_steps: optimizer steps between syncs (TRL's ``ref_model_sync_steps``, default 512).
    """

    def __init__(self, alpha: float = 0.6, sync_steps: int = 512) -> None:
        alpha, sync_steps = float(alpha), int(sync_steps)
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"ref_model_mixup_alpha: expected a number in (0, 1], got {alpha}")
        if sync_steps < 1:
            raise ValueError(f"ref_model_sync_steps: expected an integer >= 1, got {sync_steps}")
        self.alpha, self.sync_steps = alpha, sync_steps
        self.syncs = 0
        self._step_at_batch_start: int | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The module must hold a reference model (not precomputed log-probs)."""
        if getattr(pl_module, "ref_model", None) is None:
            raise ValueError("sync_ref_model: needs a reference model in memory; it cannot be used with precomputed "
                             "reference log-probs (precompute_ref: true) or a reference-free loss")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._step_at_batch_start = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """After the optimizer step that makes ``global_step`` a multiple of ``sync_steps``."""
        if trainer.global_step == self._step_at_batch_start:  # accumulating: no optimizer step in this batch
            return
        step = trainer.global_step
        if step > 0 and step % self.sync_steps == 0:
            mix_into(pl_module.ref_model, pl_module.model, self.alpha)
            self.syncs += 1
