"""``litcpt pretrain``: pretrain or continue pretraining a litgpt model (the signature is the recipe schema).

The run itself is :func:`litcpt.training.pretrain.run`, which ``litcpt anneal`` and ``litcpt demo`` run too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lightning.pytorch.callbacks import Callback
from litgpt import Config
from litgpt.data import DataModule

from litcpt.callbacks import LRScheduleCallback
from litcpt.runtime.optim import OptimizerArg
from litcpt.runtime.strategies import StrategyName
from litcpt.training.args import EvalArgs, TrainArgs
from litcpt.training.carry import CarryArgs
from litcpt.training.harness import LoggerName
from litcpt.training.pretrain import run

__all__ = ["setup"]


def setup(
    model_name: str | None = None,
    model_config: Config | None = None,
    out_dir: Path = Path("out/pretrain"),
    precision: str | None = None,
    initial_checkpoint_dir: Path | None = None,
    resume: bool | Literal["auto"] | Path = False,
    data: DataModule | None = None,
    train: TrainArgs = TrainArgs(max_tokens=int(1e6)),
    eval: EvalArgs = EvalArgs(),
    lr_schedule: LRScheduleCallback | None = None,
    optimizer: OptimizerArg = "AdamW",
    devices: int | str = "auto",
    num_nodes: int = 1,
    strategy: StrategyName = "auto",
    tokenizer_dir: Path | None = None,
    logger_name: LoggerName = "csv",
    seed: int = 42,
    accelerator: str = "auto",
    callbacks: list[Callback] | None = None,
    carry: CarryArgs = CarryArgs(),
    dry_run: bool = False,
) -> Path:
    """Pretrain a litgpt model, or continue pretraining one (a new stage) from ``initial_checkpoint_dir``.

    Args:
        model_name: a litgpt model name (e.g. ``pythia-14m``); see ``litgpt download list``.
        model_config: an explicit ``litgpt.Config`` (overrides ``model_name``).
        out_dir: run directory: ``final/`` and ``step-*/`` (LitGPT layout), ``checkpoints/*.ckpt`` (resume),
            ``logs/version_*/metrics.csv``, ``config.yaml``.
        precision: Lightning precision (``32-true``, ``bf16-mixed``, ``bf16-true``); default: ``bf16-mixed`` on GPU
            (fp32 master weights, every strategy), ``32-true`` on CPU. ``bf16-true`` warns when lr < 2^-14.
        initial_checkpoint_dir: LitGPT checkpoint dir whose weights start this run (continued pretraining: a new
            stage; the optimizer starts fresh, as in the paper, and the LR schedule re-warms).
        resume: continue an interrupted run exactly: ``true`` (``out_dir/checkpoints/last.ckpt``), ``auto`` (that if
            present), or a ``.ckpt`` path.
        data: a LitGPT DataModule (``litcpt.data.TextFiles``, ``litcpt.data.Replay``, litgpt's own ...).
            Default: the bundled English corpus.
        train: training-loop arguments (batch sizes, ``max_tokens``/``max_steps``, intervals, clipping).
        eval: validation arguments.
        lr_schedule: an LR-schedule callback (``litcpt.callbacks.WarmupCosineLR`` by default: warmup 1%, cosine to
            0.1 x peak). The peak LR is the optimizer's ``lr``.
        optimizer: ``AdamW`` or ``{class_path: torch.optim.AdamW, init_args: {lr: ..., weight_decay: ...}}``.
        devices: devices per node (``auto``: all GPUs, or 1 CPU process).
        num_nodes: number of nodes.
        strategy: ``auto``, ``ddp``, ``fsdp`` (FSDP1, Block-wise) or ``fsdp2`` (``fully_shard`` per Block).
        tokenizer_dir: tokenizer dir (default: the one in ``initial_checkpoint_dir``, else the bundled one).
        logger_name: ``csv``, ``tensorboard`` (``logs/version_N``), ``wandb`` or ``mlflow`` (project ``litcpt``).
        seed: random seed.
        accelerator: ``auto``, ``cpu``, ``gpu``.
        callbacks: more Lightning callbacks, e.g. ``litcpt.callbacks.SkipSpikes`` (skip-step on loss/gradient spikes)
            or ``litcpt.callbacks.EMA`` (an exponential moving average of the weights, saved as its own LitGPT dir).
        carry: what a new stage carries from the Lightning checkpoint of the run it continues, besides the weights
            of ``initial_checkpoint_dir``: ``carry.optimizer`` (AdamW moments), ``carry.schedule`` (continue its LR
            schedule), ``carry.data`` (continue its data stream); ``carry.checkpoint``: the ``.ckpt`` (default: the
            one of the same step as ``initial_checkpoint_dir``). See docs/pretraining.md.
        dry_run: print the parameter count and the per-rank memory estimate (parameters, gradients, optimizer,
            activations at the micro-batch) for this world size and strategy, then exit without building the model.

    Returns: the path of the final LitGPT checkpoint dir.
    """
    return run(
        model_name=model_name,
        model_config=model_config,
        out_dir=out_dir,
        precision=precision,
        initial_checkpoint_dir=initial_checkpoint_dir,
        resume=resume,
        data=data,
        train=train,
        eval=eval,
        lr_schedule=lr_schedule,
        optimizer=optimizer,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        tokenizer_dir=tokenizer_dir,
        logger_name=logger_name,
        seed=seed,
        accelerator=accelerator,
        callbacks=callbacks,
        carry=carry,
        dry_run=dry_run,
    )
