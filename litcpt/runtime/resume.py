"""Crash-safe Lightning checkpoints: atomic ``.ckpt`` writes, picking a loadable checkpoint to resume from, and
removing what an interrupted save left behind.

Lightning's own save goes through fsspec: a temporary file in ``TMPDIR`` then ``shutil.move``, which becomes a
*copy* when ``TMPDIR`` is on another filesystem than the run (``/dev/shm``, node-local scratch): a kill mid-copy
leaves a truncated ``last.ckpt``. :class:`AtomicCheckpointIO` writes into the destination directory itself
(temporary file, fsync, rename, fsync of the directory), so a ``.ckpt`` is always whole or absent.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from litcpt._private import cluster_environment_of, validates_after_this_batch
from litcpt.runtime.checkpoint import (
    UntrustedFileError,
    atomic_torch_save,
    check_sharded_metadata,
    load_torch_file,
    restore_replaced_dirs,
)
from litcpt.runtime.preemption import PreemptionSignals

_STEP_CKPT = re.compile(r"^step-(\d+)(?:-v\d+)?\.ckpt$")
# What interrupted saves leave: atomic_torch_save's `.<name>.<8 random chars>.tmp` files (checkpoints, DPO's
# reference log-probs), the CLI's `.config.yaml.<pid>.tmp` (before litcpt.runtime.atomic) and save_litgpt_dir's
# `.<name>.tmp-<hex>` /
# `.<name>.old-<hex>` directories.
_STALE_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$|^\.config\.yaml\.\d+\.tmp$")
_STALE_DIR = re.compile(r"^\..+\.(tmp|old)-[0-9a-f]{8}$")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes local ``.ckpt`` files atomically in their own directory (remote URLs keep
    Lightning's fsspec path)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, Path(path))


class StepCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` for step checkpoints of a resumable run, saved when an optimizer step is complete.

    * A step's checkpoint is saved at its end: after its validation when it has one (Lightning saves before it, and a
      run resumed from there skips that validation, whose ``val/*`` were lost with a kill before they were written),
      and after the logger has the step's row (see :class:`litcpt.callbacks.step_metrics.RowsBeforeCheckpoint`).
    * A redone step overwrites its checkpoint (no ``step-N-v1.ckpt`` beside ``step-N.ckpt``).
    * A resumed run does not save again at the step it resumed from. Lightning does not restore which step it
      saved last, so with gradient accumulation the first micro-batch after a resume re-saved ``step-N.ckpt`` and
      ``last.ckpt`` in the middle of step N+1, and resuming from those failed.
    * Pre-emption (:mod:`litcpt.runtime.preemption`): after ``SIGTERM`` or the requeue signal (``SIGUSR1``) on any
      rank, the next step end saves ``last.ckpt``, prints one line, requeues the SLURM job when the signal was
      SLURM's requeue signal, and raises :class:`~litcpt.runtime.preemption.Preempted` (exit status 128 + signal).
    * ``save_top_k`` above 1 keeps the latest ``save_top_k`` step checkpoints (ranked by step: Lightning refuses a
      top-k of more than one without a monitored quantity).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("enable_version_counter", False)
        if kwargs.get("save_top_k", 1) > 1 and kwargs.get("monitor") is None:
            kwargs.update(monitor="step", mode="max")
        super().__init__(*args, **kwargs)
        self.preemption = PreemptionSignals()
        self._ended_step: int | None = None  # global step of the last step end handled
        self.start_step = 0
        """The global step this fit started from (the resumed checkpoint's, else 0)."""
        self._after_validation = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_global_step_saved = trainer.global_step
        self._ended_step = self.start_step = trainer.global_step
        self.preemption.install(cluster_environment_of(trainer))  # after Lightning's own handlers

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == self._ended_step:
            return  # accumulating: the step is not done
        if validates_after_this_batch(trainer):
            self._after_validation = True  # the step ends with its validation
            return
        self._step_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._after_validation and not trainer.sanity_checking:
            self._after_validation = False
            self._step_end(trainer, pl_module)
        super().on_validation_end(trainer, pl_module)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.preemption.restore()
        super().teardown(trainer, pl_module, stage)

    def _step_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ended_step = trainer.global_step
        super().on_train_batch_end(trainer, pl_module, None, None, 0)  # the periodic save, if one is due
        signum = self.preemption.agreed(trainer.strategy, trainer.world_size)
        if signum is not None and trainer.global_step < trainer.max_steps:  # the last step: the run ends now anyway
            self._preempted(trainer, signum)

    def _preempted(self, trainer: L.Trainer, signum: int) -> None:
        from litcpt.runtime.preemption import Preempted, requeue_slurm_job, signal_name

        last = Path(self.dirpath or ".") / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        if not (self._last_global_step_saved == trainer.global_step and last.exists()):
            self._last_global_step_saved = trainer.global_step
            self.last_model_path = str(last)
            trainer.save_checkpoint(last)
        message = (f"pre-empted by {signal_name(signum)}: saved step {trainer.global_step} of {trainer.max_steps} to "
                   f"{last}")
        if signum == self.preemption.requeue_signal and trainer.is_global_zero:
            message += f"; {requeue_slurm_job()}"
        _say(message + "; run the same command with --resume auto to continue")
        raise Preempted(signum, message)


def _say(message: str) -> None:
    from litcpt.runtime.ranks import is_global_zero

    if is_global_zero():
        print(f"litcpt: {message}", file=sys.stderr, flush=True)


def clean_stale_saves(out_dir: Path) -> list[Path]:
    """Remove temporary files and directories that a killed save left in ``out_dir`` and ``out_dir/checkpoints``;
    returns what was removed. A LitGPT checkpoint dir that a kill left moved aside (between the two renames of
    :func:`litcpt.runtime.checkpoint.save_litgpt_dir`) is put back first, never removed. Call on one process only,
    before training starts."""
    removed: list[Path] = []
    for directory in (Path(out_dir), Path(out_dir) / "checkpoints"):
        if not directory.is_dir():
            continue
        for restored in restore_replaced_dirs(directory):
            _say(f"restored {restored} (an interrupted save had moved it aside)")
        for child in directory.iterdir():
            if child.is_dir() and not child.is_symlink() and _STALE_DIR.match(child.name):
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
            elif child.is_file() and _STALE_FILE.match(child.name):
                child.unlink(missing_ok=True)
                removed.append(child)
    if removed:
        _say(f"removed {len(removed)} temporary file(s)/dir(s) left by an interrupted save in {out_dir}")
    return removed


def read_step(path: Path) -> int:
    """Load a Lightning checkpoint (mmap, no tensor data read, nothing unpickled but tensors and plain data:
    :func:`litcpt.runtime.checkpoint.load_torch_file`) and return its ``global_step``; raises on a
    truncated, corrupt or untrusted file. A sharded (FSDP) checkpoint is a directory: its ``meta.pt`` is read."""
    path = Path(path)
    if path.is_dir():
        check_sharded_metadata(path, field="resume")
        path = path / "meta.pt"
    ckpt = load_torch_file(path, field="resume", mmap=path.name != "meta.pt")
    if not isinstance(ckpt, dict) or "global_step" not in ckpt:
        raise ValueError("not a Lightning checkpoint (no global_step)")
    return int(ckpt["global_step"])


def _why(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def pick_resume_checkpoint(ckpt_dir: Path) -> Path | None:
    """``last.ckpt`` in ``ckpt_dir`` if it loads, else the newest ``step-*.ckpt`` that loads (a failed one is
    reported in one line, with the one used instead); ``None`` if there is no checkpoint at all; a one-line
    ``ValueError`` if checkpoints exist but none loads.

    ``last.ckpt`` wins even when a newer ``step-*.ckpt`` exists (a kill between the two saves of one step): it is
    whole, and the steps after it are redone exactly, overwriting their checkpoints.
    """
    ckpt_dir = Path(ckpt_dir)
    last = ckpt_dir / "last.ckpt"
    steps = []
    if ckpt_dir.is_dir():
        for child in ckpt_dir.iterdir():
            match = _STEP_CKPT.match(child.name)
            if match:
                steps.append((int(match.group(1)), child))
    steps.sort(key=lambda item: (item[0], item[1].stat().st_mtime), reverse=True)
    candidates = ([last] if last.exists() else []) + [path for _, path in steps]
    if not candidates:
        return None
    bad: list[str] = []
    for path in candidates:
        try:
            step = read_step(path)
        except UntrustedFileError:
            raise  # a file that would run code is refused, not skipped for an older one
        except Exception as err:
            bad.append(f"{path.name} ({_why(err)})")
            continue
        if bad:
            _say(f"resume: cannot load {'; '.join(bad)}; resuming from {path} (step {step}) instead")
        return path
    raise ValueError(f"resume: no checkpoint in {ckpt_dir} can be loaded: " + "; ".join(bad))


def check_loadable(path: Path) -> Path:
    """``path`` if it loads as a Lightning checkpoint, else a one-line ``ValueError``."""
    try:
        read_step(path)
    except UntrustedFileError:
        raise
    except Exception as err:
        raise ValueError(f"resume: checkpoint {str(path)!r} cannot be loaded ({_why(err)})") from None
    return path


def check_resume_config(path: Path, config: Any) -> None:
    """A one-line ``ValueError`` naming the model config keys in which the checkpoint ``path`` (its saved
    ``hyper_parameters["config"]``) differs from ``config`` (a litgpt ``Config``), before its weights are loaded into
    a model they do not fit. A checkpoint without a saved config (or that cannot be read safely here) is left to
    Lightning's loader."""
    import dataclasses

    path = Path(path)
    if path.is_dir():
        return
    try:
        ckpt = load_torch_file(path, field="resume", mmap=True)
        saved = ckpt["hyper_parameters"]["config"]
    except Exception:
        return
    if not isinstance(saved, dict) or not dataclasses.is_dataclass(config):
        return
    own = dataclasses.asdict(config)
    differ = [f"{k} (checkpoint {saved[k]!r}, now {own[k]!r})" for k in sorted(saved)
              if k in own and saved[k] != own[k]]
    if differ:
        raise ValueError(f"resume: {path} was trained with another model config: " + "; ".join(differ[:5])
                         + (f" (+{len(differ) - 5} more)" if len(differ) > 5 else "")
                         + ": resume with the run's own model config, or start a new run")
