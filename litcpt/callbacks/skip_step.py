"""Skip the optimizer update of a step whose loss or gradient norm spikes (OLMo-core's skip-step, as a callback).

A step is skipped when its loss or its (pre-clipping) global gradient norm lies more than ``sigma`` standard deviations
above the mean of the previous ``window`` steps (:func:`litcpt.losses.stability.is_spike`). Skipping means the optimizer
does not touch the parameters *or its state*: the callback sets every gradient to ``None`` in
``on_before_optimizer_step``, and torch optimizers leave parameters without a gradient alone (no update, no weight
decay, no moment update, no step count). The global step still advances, as in OLMo-core, so the LR schedule and the
data stream go on.

Consistent across ranks: the loss is averaged over ranks and the gradient norm is that of the full (DDP: reduced;
FSDP: sharded, summed over ranks) gradient, so every rank takes the same decision. Exact under resume: the windows and
counters are the callback's ``state_dict`` (checkpoints are written between optimizer steps).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from litcpt.losses.stability import default_min_history, is_spike

__all__ = ["SkipSpikes", "global_grad_norm"]

Watch = Literal["loss", "grad_norm", "both"]


def global_grad_norm(pl_module: L.LightningModule, trainer: L.Trainer) -> torch.Tensor:
    """The L2 norm of all gradients of ``pl_module`` (float32), summed over shards for FSDP/FSDP2."""
    from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

    total = torch.zeros((), dtype=torch.float32, device=pl_module.device)
    for p in pl_module.parameters():
        grad = p.grad
        if grad is None:
            continue
        if hasattr(grad, "to_local"):  # DTensor (FSDP2): this rank's shard
            grad = grad.to_local()
        total += grad.detach().float().pow(2).sum().to(total.device)
    sharded = isinstance(trainer.strategy, (FSDPStrategy, ModelParallelStrategy))
    if sharded and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
    return total.sqrt()


class SkipSpikes(Callback):
    """Skip optimizer updates on loss / gradient-norm spikes; count and log them.

    Args:
        sigma: a step is skipped when its value is more than ``sigma`` sample standard deviations above the mean of the
            previous ``window`` steps (OLMo-core: 6).
        window: how many previous steps the mean and deviation are taken over (OLMo-core: 128).
        min_history: steps needed before any step can be skipped (default ``max(20, window // 2)``, as OLMo-core).
        watch: ``both`` (default, as OLMo-core), ``loss`` or ``grad_norm``.
        log: log ``train/skipped_steps`` (running count) and ``train/grad_norm`` every step.

    The loss of a step is the mean of its micro-batch losses (what is backpropagated, so with ``train.z_loss`` it
    includes the z-loss), averaged over ranks. OLMo-core compares ``|z|``; here only spikes *above* the window count
    (a sudden drop of the loss is not a reason to skip).

    Example (a recipe of ``litcpt pretrain``)::

        callbacks:
          - class_path: litcpt.callbacks.SkipSpikes
            init_args: {sigma: 6, window: 128}
    """

    def __init__(self, sigma: float = 6.0, window: int = 128, min_history: int | None = None, watch: Watch = "both",
                 log: bool = True) -> None:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"sigma={sigma!r} must be a positive number")
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise ValueError(f"window={window!r} must be an integer >= 2")
        if min_history is not None and (not isinstance(min_history, int) or not 2 <= min_history <= window):
            raise ValueError(f"min_history={min_history!r} must be an integer in [2, window={window}]")
        if watch not in ("loss", "grad_norm", "both"):
            raise ValueError(f"watch={watch!r} must be one of 'loss', 'grad_norm', 'both'")
        self.sigma = float(sigma)
        self.window = window
        self.min_history = min_history if min_history is not None else default_min_history(window)
        self.watch = watch
        self.log = log
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.skipped_steps = 0
        self.skipped_at: list[int] = []  # global steps (0-based index of the optimizer step) that were skipped
        self._step_loss: torch.Tensor | None = None

    # ------------------------------------------------------------------ decision
    def decide(self, loss: float, grad_norm: float) -> bool:
        """Whether to skip a step with this loss and gradient norm; then record both in the windows."""
        skip = False
        if self.watch in ("loss", "both"):
            skip |= is_spike(self.losses, loss, sigma=self.sigma, min_history=self.min_history)
        if self.watch in ("grad_norm", "both"):
            skip |= is_spike(self.grad_norms, grad_norm, sigma=self.sigma, min_history=self.min_history)
        for values, value in ((self.losses, loss), (self.grad_norms, grad_norm)):
            values.append(value)
            del values[:-self.window]
        return skip

    # ------------------------------------------------------------------ hooks
    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        """Add up the micro-batch losses of this optimizer step (Lightning divides each by the accumulation)."""
        value = loss.detach().float()
        self._step_loss = value if self._step_loss is None else self._step_loss + value

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        """Decide (the same on every rank) and, on a spike, drop every gradient so the optimizer skips the update."""
        loss = self._step_loss if self._step_loss is not None else torch.zeros((), device=pl_module.device)
        self._step_loss = None
        loss = trainer.strategy.reduce(loss.to(pl_module.device), reduce_op="mean")
        grad_norm = global_grad_norm(pl_module, trainer)
        skip = self.decide(float(loss), float(grad_norm))
        if skip:
            for p in pl_module.parameters():
                p.grad = None
            self.skipped_steps += 1
            self.skipped_at.append(int(trainer.global_step))
        if self.log:
            pl_module.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False,
                          batch_size=1)
            pl_module.log("train/grad_norm", float(grad_norm), on_step=True, on_epoch=False, batch_size=1)

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "grad_norms": list(self.grad_norms), "skipped_steps": self.skipped_steps,
                "skipped_at": list(self.skipped_at)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.losses = [float(x) for x in state_dict.get("losses", [])][-self.window:]
        self.grad_norms = [float(x) for x in state_dict.get("grad_norms", [])][-self.window:]
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))
        self.skipped_at = [int(x) for x in state_dict.get("skipped_at", [])]
