"""What a new stage carries over from the run it continues, beyond the weights (resume semantics made explicit).

``litcpt pretrain --initial_checkpoint_dir <run>/final`` starts a new stage from the run's weights only: fresh
optimizer, new LR schedule (re-warm), data stream from the start. :class:`CarryArgs` (the recipe's ``carry.*`` keys)
adds, each independently, from the run's Lightning checkpoint:

* ``carry.optimizer``: the optimizer state (AdamW moments and step counts; the new optimizer's hyperparameters --
  lr, betas, weight decay -- are kept);
* ``carry.schedule``: the checkpoint's LR schedule, continued where it was (instead of ``lr_schedule`` starting a new
  stage);
* ``carry.data``: the position in the data stream (instead of restarting it).

All three together carry everything a ``resume`` would, into a new run dir with its own step count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

__all__ = ["apply_carry", "CarryArgs", "CarryOptimizerState", "find_carry_checkpoint", "load_carry_checkpoint",
           "lr_state", "shifted_lr_state"]


@dataclass
class CarryArgs:
    """What a new stage (``initial_checkpoint_dir``) carries over from the run's Lightning checkpoint."""

    optimizer: bool = False
    """Carry the optimizer state (AdamW moments, step counts); the new optimizer's lr/betas/weight decay stay."""
    schedule: bool = False
    """Continue the checkpoint's LR schedule where it was (``lr_schedule`` is then only a fallback); false: a new
    stage of ``lr_schedule`` (re-warm)."""
    data: bool = False
    """Continue the data stream at the checkpoint's position; false: start it again."""
    checkpoint: Path | None = None
    """The ``.ckpt`` to carry from. Default: the one of the same step as ``initial_checkpoint_dir``
    (``<run>/step-N`` -> ``<run>/checkpoints/step-N.ckpt``; ``<run>/final`` -> ``<run>/checkpoints/last.ckpt``)."""

    @property
    def any(self) -> bool:
        return self.optimizer or self.schedule or self.data


def find_carry_checkpoint(initial_checkpoint_dir: Path | None, given: Path | None) -> Path:
    """The Lightning checkpoint to carry from (``given``, or the one next to the LitGPT dir); one-line errors."""
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise FileNotFoundError(f"carry.checkpoint: {str(path)!r} is not a Lightning .ckpt file")
        return path
    if initial_checkpoint_dir is None:
        raise ValueError("carry.optimizer/schedule/data need the run to continue: give initial_checkpoint_dir (its "
                         "weights) and, if it is not <run>/step-N or <run>/final, carry.checkpoint (a .ckpt)")
    directory = Path(initial_checkpoint_dir)
    name = "last.ckpt" if directory.name == "final" else f"{directory.name}.ckpt"
    path = directory.parent / "checkpoints" / name
    if not path.is_file():
        raise FileNotFoundError(f"carry: no Lightning checkpoint {str(path)!r} next to initial_checkpoint_dir "
                                f"{str(directory)!r}: give carry.checkpoint")
    return path


def load_carry_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict, on CPU (:func:`litcpt.runtime.checkpoint.load_lightning_checkpoint`)."""
    from litcpt.runtime.checkpoint import load_lightning_checkpoint

    return load_lightning_checkpoint(path, field="carry.checkpoint")


def lr_state(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The state of the litcpt LR-schedule callback stored in ``ckpt`` (None: none)."""
    for value in (ckpt.get("callbacks") or {}).values():
        if isinstance(value, dict) and "stage_start_step" in value and isinstance(value.get("schedule"), dict):
            return value
    return None


def shifted_lr_state(state: dict[str, Any], from_step: int, *, stage_name: str | None) -> dict[str, Any]:
    """``state`` for a run whose global step restarts at 0 where the checkpoint was at ``from_step``: the same
    progress ``t`` (``last_step - stage_start_step``) and tokens seen, under the new callback's ``stage_name``."""
    out = dict(state)
    out["stage_name"] = stage_name
    for key in ("stage_start_step", "last_step"):
        if out.get(key) is not None:
            out[key] = int(out[key]) - int(from_step)
    return out


class CarryOptimizerState(Callback):
    """Load a checkpoint's optimizer state into the fresh optimizer in ``on_fit_start`` (before the first step).

    Only the per-parameter state (moments, step counts) is carried; the new optimizer's hyperparameters stay.
    """

    def __init__(self, optimizer_states: list[dict[str, Any]], source: str = "checkpoint") -> None:
        self.optimizer_states = optimizer_states
        self.source = source
        self.loaded = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

        if self.loaded:
            return
        if isinstance(trainer.strategy, (FSDPStrategy, ModelParallelStrategy)):
            raise ValueError("carry.optimizer is not supported with sharded strategies (fsdp, fsdp2) yet")
        if len(self.optimizer_states) != len(trainer.optimizers):
            raise ValueError(f"carry.optimizer: {self.source} has {len(self.optimizer_states)} optimizer states, the "
                             f"run has {len(trainer.optimizers)} optimizers")
        for optimizer, saved in zip(trainer.optimizers, self.optimizer_states):
            fresh = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
            try:
                optimizer.load_state_dict(saved)
            except (ValueError, KeyError) as err:
                raise ValueError(f"carry.optimizer: the optimizer state in {self.source} does not fit this model's "
                                 f"optimizer ({err})") from None
            for group, hyper in zip(optimizer.param_groups, fresh):
                for key in [k for k in group if k != "params" and k not in hyper]:
                    del group[key]  # e.g. the old run's initial_lr
                group.update(hyper)
        self.loaded = True
        self.optimizer_states = []  # free the copy


def apply_carry(carry: CarryArgs, initial_checkpoint_dir: Path | None, lr_schedule: Callback,
                data: Any) -> list[Callback]:
    """Load what ``carry`` asks for from the run's ``.ckpt`` into ``lr_schedule`` and ``data`` (now) and the optimizer
    (a callback, when it exists); returns the callbacks to add."""
    import re
    import warnings

    path = find_carry_checkpoint(initial_checkpoint_dir, carry.checkpoint)
    ckpt = load_carry_checkpoint(path)
    step = int(ckpt["global_step"])
    match = re.match(r"^step-(\d+)$", Path(initial_checkpoint_dir).name) if initial_checkpoint_dir else None
    if match and int(match.group(1)) != step:
        raise ValueError(f"carry.checkpoint: {path} is from global step {step} but initial_checkpoint_dir "
                         f"{initial_checkpoint_dir} from step {int(match.group(1))}: weights and carried state must "
                         "come from the same step")
    added: list[Callback] = []
    if carry.optimizer:
        if not ckpt.get("optimizer_states"):
            raise ValueError(f"carry.optimizer: {path} holds no optimizer state")
        added.append(CarryOptimizerState(ckpt["optimizer_states"], source=str(path)))
    if carry.schedule:
        from litcpt.callbacks import LRScheduleCallback

        state = lr_state(ckpt)
        if state is None:
            raise ValueError(f"carry.schedule: {path} holds no litcpt LR-schedule state to continue")
        if not isinstance(lr_schedule, LRScheduleCallback):
            raise ValueError("carry.schedule needs a litcpt lr_schedule callback to continue the schedule with")
        if state.get("unit") != lr_schedule.unit:
            raise ValueError(f"carry.schedule: the checkpoint's schedule counts {state.get('unit')}, lr_schedule "
                             f"counts {lr_schedule.unit}: set lr_schedule.init_args.unit: {state.get('unit')}")
        lr_schedule.load_state_dict(shifted_lr_state(state, step, stage_name=lr_schedule.stage_name))
        warnings.filterwarnings("ignore", message=r".*the checkpoint's schedule .* differs from the one resolved")
    if carry.data:
        key = type(data).__qualname__
        saved = ckpt.get(key)
        if not isinstance(saved, dict) or not hasattr(data, "load_state_dict"):
            raise ValueError(f"carry.data: {path} holds no data-stream state for {key} (its data module differs)")
        data.load_state_dict({**saved, "global_step": 0})
    return added
