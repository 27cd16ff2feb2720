"""Online weight averaging (EMA, SWA) saved as LitGPT checkpoints next to the raw ones.

Built on Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging` (``torch.optim.swa_utils.AveragedModel``
underneath), with four changes for pretraining runs:

* the average is written as its own LitGPT checkpoint dir next to the raw one: ``final-ema/`` beside ``final/``,
  ``step-XXXXXXXX-ema/`` beside ``step-XXXXXXXX/`` (``-swa`` for :class:`SWA`);
* the raw weights stay the model: training ends with the raw weights in ``final/`` (Lightning would copy the average
  into the model), and validation runs on the raw weights unless ``validate_average=True``;
* Lightning ``.ckpt`` files keep the raw weights in ``state_dict`` (so ``resume``, ``litcpt anneal`` and any other
  reader of the checkpoint get the model that was trained) and the average under ``averaged_state_dict``;
* only parameters are averaged (litgpt's buffers are the RoPE cache).

Resume is exact: the averaged parameters, the number of averaged steps and the last update step are restored from the
checkpoint, and the EMA update (``lerp``) is deterministic.

Sharded runs: each rank averages its own shards, so the average costs 1/world_size of a model per rank (Lightning's
``WeightAveraging`` would ``deepcopy`` the model: FSDP2 modules refuse that, and under FSDP1 it would be a full copy
on every rank). FSDP2 (``fsdp2``): :class:`litcpt.averaging.sharded.ShardedAverage` replaces ``AveragedModel`` and
averages the local shard of each DTensor. FSDP1 (``fsdp``): :class:`litcpt.averaging.sharded.FlatShardedAverage`
averages this rank's pieces of FSDP's flat parameters (the ``use_orig_params`` views). The full average is gathered
only to write it (LitGPT dir, ``.ckpt``) and a resumed run takes back its shards of the checkpoint's average.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging

from litcpt._private import WeightAveragingAdapter
from litcpt.callbacks.litgpt_checkpoint import LitGPTCheckpoint, export_litgpt
from litcpt.runtime.checkpoint import clean_state_dict, save_litgpt_dir

__all__ = ["EMA", "SWA"]


class _LitGPTAveraging:
    """What EMA and SWA share on top of ``WeightAveraging`` (see the module docstring). Mixed in first."""

    suffix = "-avg"

    def _init_litgpt(self, save: bool, validate_average: bool) -> None:
        self.save = save
        self.validate_average = validate_average
        self._last_saved_step = -1

    # -------------------------------------------------------------- setup
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

        self._sharded = stage == "fit" and isinstance(trainer.strategy, (ModelParallelStrategy, FSDPStrategy))
        self._strategy = trainer.strategy
        if self._sharded:
            return  # the average is made of the shards once the model is sharded (_sharded_average)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*WeightAveraging callback with a model that overrides")
            super().setup(trainer, pl_module, stage)  # type: ignore[misc]

    # -------------------------------------------------------------- FSDP1/FSDP2: an average of this rank's shards
    def _sharded_average(self, pl_module: L.LightningModule) -> Any:
        from lightning.pytorch.strategies import FSDPStrategy
        from torch.optim.swa_utils import get_swa_avg_fn

        from litcpt.averaging.sharded import FlatShardedAverage, ShardedAverage

        if self.average_model is None:
            avg_fn = self.averaging_kwargs.get("avg_fn") or get_swa_avg_fn()  # type: ignore[attr-defined]
            device = self.averaging_device
            if isinstance(self._strategy, FSDPStrategy):  # the root FSDP wrapper gathers and loads full tensors
                self.average_model = FlatShardedAverage(pl_module, avg_fn, self._strategy.model, device=device)
            else:
                self.average_model = ShardedAverage(pl_module, avg_fn, device=device)
        return self.average_model

    def swap_weights(self, pl_module: L.LightningModule) -> None:
        if getattr(self, "_sharded", False):
            self._sharded_average(pl_module).swap(pl_module)
        else:
            super().swap_weights(pl_module)  # type: ignore[misc]

    # -------------------------------------------------------------- validation and end of training
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.validate_average:
            super().on_validation_epoch_start(trainer, pl_module)  # type: ignore[misc]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.validate_average:
            super().on_validation_epoch_end(trainer, pl_module)  # type: ignore[misc]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if getattr(self, "_sharded", False):
            self._sharded_average(pl_module)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)  # type: ignore[misc]
        writer = self._writer(trainer)
        step = trainer.global_step
        interval = writer.save_interval if writer is not None else None
        if self.save and interval and step > 0 and step % interval == 0 and step != self._last_saved_step:
            self.save_litgpt(trainer, pl_module, f"step-{step:08d}{self.suffix}")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_saved_step = trainer.global_step  # a resumed run does not rewrite its checkpoint step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write ``final<suffix>/``; the model keeps its raw weights (no copy of the average into it)."""
        if self.save and self.average_model is not None:
            self.save_litgpt(trainer, pl_module, f"final{self.suffix}")

    # -------------------------------------------------------------- LitGPT dirs
    @staticmethod
    def _writer(trainer: L.Trainer) -> LitGPTCheckpoint | None:
        callbacks = trainer.callbacks  # type: ignore[attr-defined]
        return next((c for c in callbacks if isinstance(c, LitGPTCheckpoint)), None)

    def averaged_state_dict(self) -> dict[str, Any]:
        """The averaged LightningModule's state dict (keys as the module's own, wrapper prefixes removed). Under FSDP a
        collective (every rank gathers the full average; FSDP1 with CPU offload: rank 0 only)."""
        assert self.average_model is not None
        if getattr(self, "_sharded", False):
            return clean_state_dict(self.average_model.full())
        return clean_state_dict({k: v.detach().cpu() for k, v in self.average_model.module.state_dict().items()})

    def save_litgpt(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str) -> Path:
        """Write the average as a LitGPT dir ``<out_dir>/<name>/`` (rank 0; out_dir and tokenizer as the raw ones)."""
        writer = self._writer(trainer)
        out_dir = writer.out_dir if writer is not None else Path(trainer.default_root_dir)
        target = out_dir / name
        sharded = self.averaged_state_dict() if getattr(self, "_sharded", False) else None  # all ranks gather
        if trainer.global_rank == 0:
            weights, extra = export_litgpt(pl_module, sharded if sharded is not None else self.averaged_state_dict())
            extra_files = [f for f in (writer.extra_files if writer else []) if Path(f).is_file()]
            save_litgpt_dir(weights, pl_module.config, target, tokenizer_dir=writer.tokenizer_dir if writer else None,
                            extra_files=extra_files, extra_objects=extra)
        trainer.strategy.barrier("litcpt_weight_average")
        self._last_saved_step = trainer.global_step
        return target

    # -------------------------------------------------------------- Lightning checkpoints
    @property
    def _ckpt_key(self) -> str:
        """Where the average goes in a ``.ckpt``: ``averaged_state_dict`` (EMA), ``averaged_state_dict-swa`` (SWA), so
        that an EMA and an SWA in one run do not overwrite each other."""
        return "averaged_state_dict" if self.suffix == "-ema" else f"averaged_state_dict{self.suffix}"

    def _saved_key(self, checkpoint: dict[str, Any]) -> str:
        """The key to load from (an older checkpoint kept any average under ``averaged_state_dict``)."""
        return self._ckpt_key if self._ckpt_key in checkpoint else "averaged_state_dict"

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Keep the raw weights in ``state_dict``; the average goes to ``averaged_state_dict``."""
        if self.average_model is not None and getattr(self, "_sharded", False):
            full = self.average_model.full()  # a collective (rank 0 writes the checkpoint's metadata)
            checkpoint[self._ckpt_key] = {**{"module." + k: v for k, v in full.items()},
                                                 "n_averaged": torch.tensor(self.average_model.n_averaged)}
        elif self.average_model is not None:
            checkpoint[self._ckpt_key] = {k: v.detach().clone()
                                                 for k, v in self.average_model.state_dict().items()}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if getattr(self, "_sharded", False):
            saved = checkpoint.get(self._saved_key(checkpoint))
            if saved is not None:  # else: the average starts from the loaded weights at its first update
                full = {k[len("module."):]: v for k, v in saved.items() if k.startswith("module.")}
                self._sharded_average(pl_module).load_full(full, int(saved.get("n_averaged", 1)))
            return
        if self.average_model is not None and self._saved_key(checkpoint) in checkpoint:
            self.average_model.load_state_dict(checkpoint[self._saved_key(checkpoint)])
            return
        # Lightning's own layout, or a checkpoint without an average (the average starts from its weights)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*was not created with WeightAveraging")
            super().on_load_checkpoint(trainer, pl_module, checkpoint)  # type: ignore[misc]


class EMA(_LitGPTAveraging, WeightAveragingAdapter, EMAWeightAveraging):
    """Exponential moving average of the weights, ``avg <- decay * avg + (1 - decay) * w`` after every optimizer step.

    Args:
        decay: the EMA decay (``0.999``: an average over roughly the last 1000 steps).
        every_n_steps: update every n optimizer steps.
        start_step: first optimizer step (0-based) that enters the average (its first update copies the weights).
        save: write ``step-XXXXXXXX-ema/`` (at the run's ``train.save_interval``) and ``final-ema/``.
        validate_average: validate the average instead of the raw weights (Lightning's behaviour); default False.
        device: where the average lives (default: the model's device; ``cpu`` saves accelerator memory).

    Example (a recipe of ``litcpt pretrain``)::

        callbacks:
          - class_path: litcpt.callbacks.EMA
            init_args: {decay: 0.99}
    """

    suffix = "-ema"

    def __init__(self, decay: float = 0.999, every_n_steps: int = 1, start_step: int | None = None, save: bool = True,
                 validate_average: bool = False, device: str | None = None) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay={decay!r} must be in (0, 1)")
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps!r} must be >= 1")
        super().__init__(device=device, use_buffers=False, decay=decay, update_every_n_steps=every_n_steps,
                         update_starting_at_step=start_step)
        self.decay = decay
        self._init_litgpt(save, validate_average)


class SWA(_LitGPTAveraging, WeightAveragingAdapter):
    """Equal-weight (stochastic) weight average of the weights after every optimizer step from ``start_step`` on, e.g.
    over the constant-LR phase of an infinite or WSD schedule (Hägele et al. 2024).

    Args:
        start_step: first optimizer step (0-based) that enters the average. Default 0.
        every_n_steps: update every n optimizer steps.
        save, validate_average, device: as :class:`EMA` (dirs ``step-XXXXXXXX-swa/``, ``final-swa/``).
    """

    suffix = "-swa"

    def __init__(self, start_step: int = 0, every_n_steps: int = 1, save: bool = True, validate_average: bool = False,
                 device: str | None = None) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps!r} must be >= 1")
        super().__init__(device=device, use_buffers=False)
        self.start_step = int(start_step)
        self.every_n_steps = int(every_n_steps)
        self._init_litgpt(save, validate_average)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx >= self.start_step and \
            (step_idx - self.start_step) % self.every_n_steps == 0
