"""Helper script of tests/callbacks/test_skip_spikes_ranks.py: 2 CPU ranks (gloo) train a tiny model with
``SkipSpikes``;
the loss of rank 1 only is multiplied by 1000 at one step. Each rank saves what it saw to ``OUT/rank{r}.pt``.

Usage: ``python tests/callbacks/skip_spikes_ranks.py STRATEGY OUT`` (STRATEGY: ``ddp`` or ``fsdp2``); Lightning starts
rank 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from litcpt.callbacks import SkipSpikes
from litcpt.runtime.strategies import make_strategy

SPIKE_STEP, SPIKE_RANK, MAX_STEPS = 8, 1, 12


def _full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().clone()


def _local(t: torch.Tensor) -> torch.Tensor:
    return (t.to_local() if hasattr(t, "to_local") else t).detach().clone()


class Spiky(LightningModule):
    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        self.x, self.y = torch.randn(64, 4, generator=gen), torch.randn(64, 1, generator=gen)

    def configure_model(self):
        from lightning.pytorch.strategies import ModelParallelStrategy

        if isinstance(self.trainer.strategy, ModelParallelStrategy):
            from torch.distributed.fsdp import fully_shard
            mesh = self.device_mesh["data_parallel"]
            for layer in (self.net[0], self.net[2]):
                fully_shard(layer, mesh=mesh)
            fully_shard(self.net, mesh=mesh)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x, self.y), batch_size=8)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        if self.global_step == SPIKE_STEP and self.global_rank == SPIKE_RANK:
            loss = loss * 1000
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2, weight_decay=0.1)


class Record(Callback):
    """Parameters (this rank's shard and the full tensor) and AdamW's step count after every optimizer step."""

    def __init__(self):
        self.local, self.full, self.opt_steps, self.logged = [], [], [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.local.append([_local(p) for p in pl_module.parameters()])
        self.full.append([_full(p) for p in pl_module.parameters()])
        state = trainer.optimizers[0].state
        self.opt_steps.append(max((int(s["step"]) for s in state.values()), default=0))
        self.logged.append(float(trainer.callback_metrics["train/skipped_steps"]))


def main(strategy_name: str, out: Path) -> None:
    seed_everything(0)
    strategy = make_strategy(strategy_name, accelerator="cpu", world_size=2)
    skip, record = SkipSpikes(sigma=6, window=8, min_history=4), Record()
    trainer = Trainer(max_steps=MAX_STEPS, accelerator="cpu", devices=2, strategy=strategy, callbacks=[skip, record],
                      logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=out)
    trainer.fit(Spiky())
    torch.save({"skipped_at": skip.skipped_at, "skipped_steps": skip.skipped_steps, "losses": skip.losses,
                "grad_norms": skip.grad_norms, "local": record.local, "full": record.full,
                "opt_steps": record.opt_steps, "logged": record.logged},
               out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
