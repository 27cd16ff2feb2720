"""A reward-model run: what ``litcpt reward`` runs (:func:`run`: a one-score head on a litgpt backbone, trained on
preference pairs), also run by ``litcpt demo --part reward``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from lightning.pytorch.callbacks import Callback
from litgpt.data import DataModule

from litcpt.losses.reward import REWARD_LOSSES, RewardLossName
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


def resolve_head(checkpoint_dir: Path, head: str | None, head_token: str | None, head_token_id: int | None,
                 tokenizer) -> tuple[str, int | None, dict | None]:
    """``(head kind, token id, head weights)`` a run starts from. A plain LitGPT ``checkpoint_dir``: ``head``
    (default ``linear``) made fresh, no weights. A reward checkpoint (``reward_model.json`` and ``reward_head.pth``:
    ``litcpt reward``'s ``final/``, ``litcpt import-reward-model``'s output): its own head kind, token and weights
    (read with ``weights_only=True``), continued; a ``head``/``head_token``/``head_token_id`` that says otherwise is a
    one-line error."""
    from litcpt.models.reward import META_FILE, load_head_file, read_reward_meta

    meta = read_reward_meta(checkpoint_dir)
    if meta is None:
        head = head or "linear"
        return head, resolve_head_token(head, head_token, head_token_id, tokenizer), None
    kind, token_id = meta["head"], meta.get("token_id")
    where = f"the reward checkpoint {str(checkpoint_dir)!r} ({META_FILE})"
    if head is not None and head != kind:
        raise ValueError(f"head: {head} conflicts with {where}, whose head is {kind} (leave head out to continue it, "
                         "or start from a plain LitGPT checkpoint for a new head)")
    if head_token is not None or head_token_id is not None:
        if kind != "logit":
            raise ValueError(f"head_token/head_token_id: {where} has a linear head, which reads no token")
        given = resolve_head_token(kind, head_token, head_token_id, tokenizer)
        if given != token_id:
            raise ValueError(f"head_token/head_token_id: token id {given} conflicts with {where}, whose logit head "
                             f"reads token id {token_id}")
    return kind, token_id, load_head_file(checkpoint_dir)


def default_steps(data: DataModule, global_batch_size: int) -> int:
    """One epoch of the training pairs."""
    data.setup()
    pairs = len(getattr(data, "train_dataset", None) or [])
    if pairs == 0:
        raise ValueError("data: no training pairs (set train.max_steps or give a non-empty train_data_path)")
    return max(1, math.ceil(pairs / global_batch_size))


def run(
    *,
    checkpoint_dir: Path,
    out_dir: Path,
    precision: str | None,
    resume: bool | Literal["auto"] | Path,
    data: DataModule | None,
    head: Literal["linear", "logit"] | None,
    head_token: str | None,
    head_token_id: int | None,
    loss_type: RewardLossName,
    center_coefficient: float,
    use_margin: bool,
    share_prompt: bool,
    train: TrainArgs,
    eval: EvalArgs,
    lr_schedule: Callback | None,
    optimizer: OptimizerArg,
    devices: int | str,
    num_nodes: int,
    strategy: StrategyName,
    logger_name: LoggerName,
    seed: int,
    accelerator: str,
    dry_run: bool,
) -> Path:
    """Train a reward model on preference pairs with the Bradley–Terry (or pointwise logistic) loss.

    The arguments are ``litcpt reward``'s (:func:`litcpt.commands.reward.setup`: its signature holds their defaults,
    its docstring what each means); every one is given, by name.

    A reward checkpoint as ``checkpoint_dir`` continues with its own head (:func:`resolve_head`).

    Returns: the path of the final checkpoint dir (a LitGPT dir plus ``reward_head.pth`` and ``reward_model.json``).
    """
    from litcpt.data import Preference
    from litcpt.models.reward import RewardModel

    checkpoint_dir = check_checkpoint_dir(checkpoint_dir, field="checkpoint_dir")
    config = load_config(checkpoint_dir)
    tokenizer = load_checked_tokenizer(checkpoint_dir, config, field="checkpoint_dir")
    head, token_id, head_state = resolve_head(checkpoint_dir, head, head_token, head_token_id, tokenizer)
    # batch sizes must divide: fails before any data work
    spec = RunSpec(out_dir=out_dir, train=train, eval=eval, devices=devices, num_nodes=num_nodes, strategy=strategy,
                   precision=precision, logger_name=logger_name, seed=seed, resume=resume, tokenizer_dir=checkpoint_dir,
                   accelerator=accelerator)
    spec.seed_everything()  # before the model is built: the same fresh weights on every rank
    if dry_run:
        from litcpt.training.dry_run import print_dry_run

        print_dry_run(config, spec, kind="reward", seq_length=train.max_seq_length or config.block_size,
                      optimizer=optimizer)
        return spec.out_dir / "final"
    data = data if data is not None else Preference()
    if REWARD_LOSSES[loss_type].ranked and not getattr(data, "ranked", False):
        raise ValueError(f"loss_type: {loss_type} needs ranked data (data: litcpt.data.Listwise with ranked: true, "
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
    if head_state is not None:  # a reward checkpoint: its head is continued, not made anew
        module.head.load_state_dict(head_state)
    spec.callbacks = [train.lr_schedule(lr_schedule, "reward")]
    fit(module, data, spec, max_steps=max_steps)
    return spec.out_dir / "final"
