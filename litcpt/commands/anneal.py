"""``litcpt anneal``: branch from a constant-phase checkpoint of an infinite-schedule run and anneal its LR.

    litcpt anneal --checkpoint out/tiny/infinite-d1/checkpoints/last.ckpt --anneal_steps 32
    litcpt anneal --checkpoint out/run/checkpoints/last.ckpt --anneal_tokens 5e7 --shape cosine --out_dir out/run-a

The infinite schedule (paper Sec. 7) holds the LR at η_const after its cooldown, so a model can be finished at any
time: take a checkpoint from the constant phase, train a short branch on which the LR decays from η_const to η_min,
and deploy the branch's ``final/`` — while the main run keeps going at η_const. The main run's files are only read.
The run itself is :func:`litcpt.training.anneal.anneal`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from litgpt.data import DataModule

from litcpt.runtime.strategies import StrategyName
from litcpt.schedules.formulas import AnnealShape
from litcpt.training.anneal import anneal, cli_validate

__all__ = ["cli_validate", "setup"]


def setup(
    checkpoint: Path,
    anneal_steps: int | None = None,
    anneal_tokens: int | float | None = None,
    shape: AnnealShape = "exponential",
    const_lr: float | Literal["checkpoint"] | None = None,
    min_lr: float | None = None,
    data: DataModule | None = None,
    out_dir: Path | None = None,
    train: dict[str, Any] | None = None,
    resume: bool | Literal["auto"] = False,
    devices: int | str | None = None,
    strategy: StrategyName | None = None,
    precision: str | None = None,
    accelerator: str | None = None,
    seed: int | None = None,
) -> Path:
    """Anneal a checkpoint from the constant phase of an infinite-schedule run into a deployable LitGPT checkpoint.

    Args:
        checkpoint: a Lightning ``.ckpt`` of the run (``<run>/checkpoints/step-*.ckpt`` or ``last.ckpt``: weights, Adam
            moments and data position continue from it; the run's ``config.yaml`` gives model, data, optimizer and
            tokenizer), or a LitGPT checkpoint dir (weights only; fresh optimizer; the ``config.yaml`` in or next to
            it, if any, gives the rest). It must be in the constant phase of an InfiniteLR schedule unless
            ``const_lr`` is given.
        anneal_steps: length of the anneal in optimizer steps (>= 2): the first step runs at ``const_lr``, the last
            at ``min_lr``.
        anneal_tokens: length in tokens instead (``5e7`` is accepted), rounded down to whole optimizer steps of
            ``global_batch_size x seq_len`` tokens.
        shape: ``exponential`` (``const_lr (min_lr/const_lr)^s``), ``linear``, ``cosine`` or ``1-sqrt``.
        const_lr: LR of the first anneal step. Default: the run's constant LR (from the checkpoint's InfiniteLR
            state). Giving it also allows annealing a checkpoint that is not in the constant phase (with a warning).
            ``checkpoint``: the LR stored in the checkpoint (the optimizer's LR at its last step; for a LitGPT dir the
            run's schedule at its step), for runs whose schedule is not an infinite one (cosine, WSD, Power, a
            foreign run): the OLMo 2 recipe of annealing from wherever the LR is.
        min_lr: LR of the last anneal step. Default: the run schedule's ``min_lr``.
        data: a LitGPT DataModule. Default: the run's data; from a ``.ckpt`` the stream continues where the run was.
        out_dir: the anneal's run dir (``final/`` is the annealed LitGPT checkpoint). Default:
            ``<run out_dir>/anneal-<step>`` (for a LitGPT dir: ``anneal-<step>`` next to it). A dir that holds
            another run (a ``config.yaml`` that is not an anneal's) is refused, and so is one that holds an anneal
            (``final/``, ``checkpoints/*.ckpt``, ``step-*/``; the default dir too) unless ``resume`` is given.
        train: training arguments to change from the run's (``--train.micro_batch_size 4``, or ``train:
            {micro_batch_size: 4}`` in a recipe): every key given wins, the others are the run's (batch sizes,
            intervals, clipping, z-loss); ``max_steps``/``max_tokens`` are replaced by the anneal length.
        resume: continue an interrupted anneal from ``out_dir/checkpoints/last.ckpt``: ``true`` or ``auto``.
        devices: devices per node (default: the run's).
        strategy: ``auto``, ``ddp``, ``fsdp`` or ``fsdp2`` (default: the run's).
        precision: Lightning precision (default: the run's).
        accelerator: ``auto``, ``cpu``, ``gpu`` (default: the run's).
        seed: random seed (default: the run's).

    Returns: the path of the annealed LitGPT checkpoint dir (``out_dir/final``).
    """
    return anneal(checkpoint=checkpoint, anneal_steps=anneal_steps, anneal_tokens=anneal_tokens, shape=shape,
                  const_lr=const_lr, min_lr=min_lr, data=data, out_dir=out_dir, train=train, resume=resume,
                  devices=devices, strategy=strategy, precision=precision, accelerator=accelerator, seed=seed)
