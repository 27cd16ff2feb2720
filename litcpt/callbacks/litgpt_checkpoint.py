"""Save the model in LitGPT's checkpoint layout during and after training.

Lightning's ``ModelCheckpoint`` writes ``.ckpt`` files for exact resume; this callback writes what the rest of the
ecosystem loads: ``lit_model.pth`` + ``model_config.yaml`` + tokenizer files, so ``litgpt generate
--checkpoint_dir out/final`` works. Sharded models (FSDP1, FSDP2) are gathered into one full state dict on rank 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from litcpt.runtime.checkpoint import clean_state_dict, save_litgpt_dir


def full_state_dict(trainer: L.Trainer) -> dict[str, torch.Tensor]:
    """The full (unsharded) state dict of the LightningModule on CPU, on rank 0 (other ranks get ``{}``).

    Keys are the LightningModule's own (``model.transformer...``), free of DDP/FSDP/compile wrapper prefixes.
    Must be called on every rank: FSDP gathers shards collectively.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    wrapped = trainer.strategy.model if trainer.strategy.model is not None else trainer.lightning_module
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        on_gpu = trainer.strategy.root_device.type != "cpu"
        state = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=on_gpu))
    else:
        state = {k: v.detach().cpu() for k, v in wrapped.state_dict().items()}
    return clean_state_dict(state) if trainer.global_rank == 0 else {}


def export_litgpt(pl_module: L.LightningModule, state: dict[str, torch.Tensor]) -> tuple[dict, dict[str, Any]]:
    """Map a LightningModule state dict to (``GPT`` state dict, extra files): the module's ``litgpt_export`` hook
    if it has one, else the ``model.`` sub-dict."""
    if hasattr(pl_module, "litgpt_export"):
        return pl_module.litgpt_export(state)
    return clean_state_dict(state, prefix="model."), {}


class LitGPTCheckpoint(Callback):
    """Write ``<out_dir>/step-XXXXXXXX/`` every ``save_interval`` optimizer steps and ``<out_dir>/final/`` at the end.

    Args:
        out_dir: the run directory.
        save_interval: optimizer steps between periodic saves (None: only the final one).
        tokenizer_dir: tokenizer files to copy next to the weights.
        extra_files: more files copied into every checkpoint dir (e.g. the run's ``config.yaml``).

    The LightningModule may define ``litgpt_export(state_dict) -> (gpt_state_dict, {filename: object})`` to decide
    what goes into ``lit_model.pth`` and which extra files (e.g. a reward head) are written beside it.
        save_final: write ``final/`` when training ends.
    """

    def __init__(self, out_dir: Path, *, save_interval: int | None = None, tokenizer_dir: Path | None = None,
                 extra_files: list[Path] | None = None, save_final: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.save_interval = save_interval
        self.tokenizer_dir = tokenizer_dir
        self.extra_files = list(extra_files or [])
        self.save_final = save_final
        self._last_saved_step = -1

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str) -> Path:
        """Gather and write ``<out_dir>/<name>/`` (collective: call on every rank)."""
        state = full_state_dict(trainer)
        target = self.out_dir / name
        if trainer.global_rank == 0:
            weights, extra = export_litgpt(pl_module, state)
            save_litgpt_dir(weights, pl_module.config, target, tokenizer_dir=self.tokenizer_dir,
                            extra_files=[f for f in self.extra_files if Path(f).is_file()], extra_objects=extra)
        trainer.strategy.barrier("litgpt_checkpoint")
        self._last_saved_step = trainer.global_step
        return target

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed run starts at a step whose checkpoint already exists: don't write it again.
        self._last_saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self.save_interval and step > 0 and step % self.save_interval == 0 and step != self._last_saved_step:
            self.save(trainer, pl_module, f"step-{step:08d}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.save_final:
            self.save(trainer, pl_module, "final")
