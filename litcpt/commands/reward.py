"""``litcpt reward``: train a reward model (one-score head on a litgpt backbone) on preference pairs.

The run itself is :func:`litcpt.training.reward.run`, which ``litcpt demo --part reward`` runs too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from litgpt.data import DataModule

from litcpt.callbacks import LRScheduleCallback
from litcpt.losses.reward import RewardLossName
from litcpt.runtime.optim import OptimizerArg
from litcpt.runtime.strategies import StrategyName
from litcpt.training.args import EvalArgs, TrainArgs
from litcpt.training.harness import LoggerName
from litcpt.training.reward import run

__all__ = ["setup"]


def setup(
    checkpoint_dir: Path,
    out_dir: Path = Path("out/reward"),
    precision: str | None = None,
    resume: bool | Literal["auto"] | Path = False,
    data: DataModule | None = None,
    head: Literal["linear", "logit"] | None = None,
    head_token: str | None = None,
    head_token_id: int | None = None,
    loss_type: RewardLossName = "bradley_terry",
    center_coefficient: float = 0.0,
    use_margin: bool = True,
    share_prompt: bool = False,
    train: TrainArgs = TrainArgs(global_batch_size=16, micro_batch_size=4, save_interval=200, max_norm=1.0),
    eval: EvalArgs = EvalArgs(interval=50, max_iters=25),
    lr_schedule: LRScheduleCallback | None = None,
    optimizer: OptimizerArg = "AdamW",
    devices: int | str = "auto",
    num_nodes: int = 1,
    strategy: StrategyName = "auto",
    logger_name: LoggerName = "csv",
    seed: int = 42,
    accelerator: str = "auto",
    dry_run: bool = False,
) -> Path:
    """Train a reward model on preference pairs with the Bradley–Terry (or pointwise logistic) loss.

    Args:
        checkpoint_dir: LitGPT checkpoint dir of the backbone (e.g. ``out/tiny/pretrain/final``), or a reward
            checkpoint (a ``litcpt reward`` ``final/``, a ``litcpt import-reward-model`` output) to fine-tune further
            with its own head.
        out_dir: run directory; ``final/`` is a LitGPT dir plus ``reward_head.pth`` and ``reward_model.json``.
        precision: Lightning precision (default: ``bf16-mixed`` on GPU, ``32-true`` on CPU).
        resume: ``true`` / ``auto`` / a ``.ckpt`` path, as for ``litcpt pretrain``.
        data: a preference DataModule (default: ``litcpt.data.Preference`` on the bundled HH-RLHF pairs).
            ``train.micro_batch_size`` and ``train.global_batch_size`` count pairs.
        head: ``linear`` (new ``Linear(n_embd, 1)``) or ``logit`` (repurpose one logit of the LM head); default
            ``linear``, or a reward checkpoint's own head (giving another kind or token is an error).
        head_token: for ``head: logit``, the token (text) whose logit is the reward (default: EOS).
        head_token_id: the same by id.
        loss_type: ``bradley_terry`` (``-log σ(r_c - r_r - margin)``; with ``litcpt.data.Listwise`` data: its mean over
            each prompt's rejected completions), ``logistic`` (BCE, chosen 1 / rejected 0) or ``plackett_luce``
            (the full ranking of ``Listwise(ranked=true)`` data; on pairs it equals ``bradley_terry``).
        center_coefficient: reward-centering weight ``c·(r_c + r_r)²``.
        use_margin: use the data's per-pair ``margin`` column in the Bradley–Terry loss.
        share_prompt: with ``litcpt.data.Listwise`` data, compute each prompt once for all its completions (one
            device or DDP; a plain forward otherwise). Off by default (slower to train on CPU, see
            ``docs/benchmarks.md``).
        train: training-loop arguments; without ``max_steps``/``max_tokens``, one epoch of the pairs.
        eval: validation arguments (held-out pairs).
        lr_schedule: LR callback (default: ``WarmupCosineLR(warmup=0.03, min_lr_ratio=0.1)``).
        optimizer: LitGPT-style optimizer spec (``AdamW`` with torch defaults, or
            ``{class_path, init_args: {lr: ...}}``; recipes set a small lr, e.g. 1e-5 for billion-parameter backbones).
        devices, num_nodes, strategy, seed, accelerator: as for ``litcpt pretrain``.
        logger_name: ``csv``, ``tensorboard`` (``logs/version_N``), ``wandb`` or ``mlflow`` (project ``litcpt``).
        dry_run: print the parameter count and the per-rank memory estimate (parameters, gradients, optimizer,
            activations at the micro-batch) for this world size and strategy, then exit without building the model.
    """
    return run(
        checkpoint_dir=checkpoint_dir,
        out_dir=out_dir,
        precision=precision,
        resume=resume,
        data=data,
        head=head,
        head_token=head_token,
        head_token_id=head_token_id,
        loss_type=loss_type,
        center_coefficient=center_coefficient,
        use_margin=use_margin,
        share_prompt=share_prompt,
        train=train,
        eval=eval,
        lr_schedule=lr_schedule,
        optimizer=optimizer,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        logger_name=logger_name,
        seed=seed,
        accelerator=accelerator,
        dry_run=dry_run,
    )
