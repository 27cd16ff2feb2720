"""A reward-model run: ``litcpt reward`` (one-score head on a litgpt backbone, trained on preference pairs), also run
by ``litcpt demo --part reward``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from lightning.pytorch.callbacks import Callback
from litgpt.data import DataModule

from litcpt.runtime.checkpoint import check_checkpoint_dir, load_config
from litcpt.runtime.optim import OptimizerArg
from litcpt.runtime.strategies import StrategyName
from litcpt.runtime.tokenizers import load_checked_tokenizer
from litcpt.training.args import EvalArgs, TrainArgs
from litcpt.training.harness import LoggerName, RunSpec, fit


def resolve_head_token(head: str, head_token: str | None, head_token_id: int | None, tokenizer) -> int | None:
    """The token id whose logit becomes the reward (``head: logit``); default: the tokenizer's EOS token."""
    if head != "logit":
        return None
    if head_token_id is not None:
        return int(head_token_id)
    if head_token is not None:
        token_id = tokenizer.token_to_id(head_token)
        if token_id is None:
            raise ValueError(f"head_token: {head_token!r} is not a single token of the tokenizer")
        return int(token_id)
    if tokenizer.eos_id is None:
        raise ValueError("head: logit needs head_token or head_token_id (the tokenizer has no EOS token)")
    return int(tokenizer.eos_id)


def default_steps(data: DataModule, global_batch_size: int) -> int:
    """One epoch of the training pairs."""
    data.setup()
    pairs = len(getattr(data, "train_dataset", None) or [])
    if pairs == 0:
        raise ValueError("data: no training pairs (set train.max_steps or give a non-empty train_data_path)")
    return max(1, math.ceil(pairs / global_batch_size))


def setup(
    checkpoint_dir: Path,
    out_dir: Path = Path("out/reward"),
    precision: str | None = None,
    resume: bool | Literal["auto"] | Path = False,
    data: DataModule | None = None,
    head: Literal["linear", "logit"] = "linear",
    head_token: str | None = None,
    head_token_id: int | None = None,
    loss_type: Literal["bradley_terry", "logistic", "plackett_luce"] = "bradley_terry",
    center_coefficient: float = 0.0,
    use_margin: bool = True,
    share_prompt: bool = False,
    train: TrainArgs = TrainArgs(global_batch_size=16, micro_batch_size=4, save_interval=200, max_norm=1.0),
    eval: EvalArgs = EvalArgs(interval=50, max_iters=25),
    lr_schedule: Callback | None = None,
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
        checkpoint_dir: LitGPT checkpoint dir of the backbone (e.g. ``out/tiny/pretrain/final``).
        out_dir: run directory; ``final/`` is a LitGPT dir plus ``reward_head.pth`` and ``reward_model.json``.
        precision: Lightning precision (default: ``bf16-mixed`` on GPU, ``32-true`` on CPU).
        resume: ``true`` / ``auto`` / a ``.ckpt`` path, as for ``litcpt pretrain``.
        data: a preference DataModule (default: ``litcpt.data.Preference`` on the bundled HH-RLHF pairs).
            ``train.micro_batch_size`` and ``train.global_batch_size`` count pairs.
        head: ``linear`` (new ``Linear(n_embd, 1)``) or ``logit`` (repurpose one logit of the LM head).
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
        optimizer: LitGPT-style optimizer spec (``AdamW`` with torch defaults, or ``{class_path, init_args: {lr:
        ...}}``;
            recipes set a small lr, e.g. 1e-5 for billion-parameter backbones).
        devices, num_nodes, strategy, logger_name, seed, accelerator: as for ``litcpt pretrain``.
        dry_run: print the parameter count and the per-rank memory estimate (parameters, gradients, optimizer,
            activations at the micro-batch) for this world size and strategy, then exit without building the model.
    """
    from litcpt.data import Preference
    from litcpt.models.reward import RewardModel

    checkpoint_dir = check_checkpoint_dir(checkpoint_dir, field="checkpoint_dir")
    config = load_config(checkpoint_dir)
    tokenizer = load_checked_tokenizer(checkpoint_dir, config, field="checkpoint_dir")
    token_id = resolve_head_token(head, head_token, head_token_id, tokenizer)
    # batch sizes must divide: fails before any data work
    spec = RunSpec(out_dir=out_dir, train=train, eval=eval, devices=devices, num_nodes=num_nodes, strategy=strategy,
                   precision=precision, logger_name=logger_name, seed=seed, resume=resume, tokenizer_dir=checkpoint_dir,
                   accelerator=accelerator)
    spec.seed_everything()  # before the model is built: the same fresh weights on every rank
    if dry_run:
        from litcpt.training.dry_run import print_dry_run

        print_dry_run(config, spec, kind="reward", seq_length=train.max_seq_length or config.block_size)
        return spec.out_dir / "final"
    data = data if data is not None else Preference()
    if loss_type == "plackett_luce" and not getattr(data, "ranked", False):
        raise ValueError("loss_type: plackett_luce needs ranked data (data: litcpt.data.Listwise with ranked: true, "
                         "rejected ordered best first)")
    data.connect(tokenizer=tokenizer, batch_size=train.micro_batch_size,
                 max_seq_length=train.max_seq_length or config.block_size)
    if train.max_steps is not None:
        max_steps = train.max_steps
    elif train.max_tokens is not None:
        max_steps = train.resolve_max_steps(train.max_seq_length or config.block_size)
    else:
        max_steps = default_steps(data, train.global_batch_size)
    module = RewardModel(config, checkpoint_dir=checkpoint_dir, head=head, token_id=token_id, loss_type=loss_type,
                         center_coefficient=center_coefficient, use_margin=use_margin, share_prompt=share_prompt,
                         optimizer=optimizer,
                         activation_checkpointing=train.activation_checkpointing, compile=train.compile,
                         defer_init=spec.sharded)
    spec.callbacks = [train.lr_schedule(lr_schedule, "reward")]
    fit(module, data, spec, max_steps=max_steps)
    return spec.out_dir / "final"
