"""A pretrain run: what ``litcpt pretrain`` runs (:func:`run`; the command's signature is the recipe schema), also run
by ``litcpt anneal`` and ``litcpt demo``; with the model config that reading a pretrain recipe needs
(:func:`resolve_model_config`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lightning.pytorch.callbacks import Callback
from litgpt import Config
from litgpt.data import DataModule

from litcpt.runtime.checkpoint import check_checkpoint_dir, load_config
from litcpt.runtime.optim import OptimizerArg
from litcpt.runtime.strategies import StrategyName
from litcpt.runtime.tokenizers import load_checked_tokenizer
from litcpt.training.args import EvalArgs, TrainArgs
from litcpt.training.carry import CarryArgs
from litcpt.training.harness import LoggerName, RunSpec, fit


def resolve_model_config(model_name: str | None, model_config: Config | None,
                         initial_checkpoint_dir: Path | None) -> Config:
    """``model_config`` > ``model_name`` > the config saved in ``initial_checkpoint_dir``; both ``model_config`` and
    another ``model_name`` given: one line says which wins (``litgpt pretrain`` ignores ``model_name`` silently)."""
    if model_config is not None:
        if model_name is not None and model_name != model_config.name:
            from litcpt.runtime.ranks import is_global_zero

            if is_global_zero():
                import sys

                print(f"litcpt: model_name {model_name!r} is ignored: model_config (name {model_config.name!r}) "
                      "is given and wins, as in litgpt pretrain; give one of them", file=sys.stderr, flush=True)
        return model_config
    if model_name is not None:
        try:
            return Config.from_name(model_name)
        except ValueError:
            raise ValueError(f"model_name: {model_name!r} is not a litgpt model name "
                             "(see `litgpt download list`), or give model_config") from None
    if initial_checkpoint_dir is not None:
        return load_config(initial_checkpoint_dir)
    raise ValueError("one of model_name, model_config or initial_checkpoint_dir is required")


def run(
    *,
    model_name: str | None,
    model_config: Config | None,
    out_dir: Path,
    precision: str | None,
    initial_checkpoint_dir: Path | None,
    resume: bool | Literal["auto"] | Path,
    data: DataModule | None,
    train: TrainArgs,
    eval: EvalArgs,
    lr_schedule: Callback | None,
    optimizer: OptimizerArg,
    devices: int | str,
    num_nodes: int,
    strategy: StrategyName,
    tokenizer_dir: Path | None,
    logger_name: LoggerName,
    seed: int,
    accelerator: str,
    callbacks: list[Callback] | None,
    carry: CarryArgs,
    dry_run: bool,
) -> Path:
    """Pretrain a litgpt model, or continue pretraining one (a new stage) from ``initial_checkpoint_dir``.

    The arguments are ``litcpt pretrain``'s (:func:`litcpt.commands.pretrain.setup`: its signature holds their
    defaults, its docstring what each means); every one is given, by name.

    Returns: the path of the final LitGPT checkpoint dir.
    """
    from litcpt import assets

    if initial_checkpoint_dir is not None:
        initial_checkpoint_dir = check_checkpoint_dir(initial_checkpoint_dir, field="initial_checkpoint_dir",
                                                      need_tokenizer=tokenizer_dir is None)
    config = resolve_model_config(model_name, model_config, initial_checkpoint_dir)
    if tokenizer_dir is None:
        tokenizer_dir = initial_checkpoint_dir if initial_checkpoint_dir is not None else assets.tokenizer_dir()
    tokenizer = load_checked_tokenizer(tokenizer_dir, config)
    seq_length = train.max_seq_length or config.block_size
    # batch sizes must divide: fails before any data work
    spec = RunSpec(out_dir=out_dir, train=train, eval=eval, devices=devices, num_nodes=num_nodes, strategy=strategy,
                   precision=precision, logger_name=logger_name, seed=seed, resume=resume, tokenizer_dir=tokenizer_dir,
                   accelerator=accelerator)
    spec.seed_everything()  # before the model is built: the same fresh weights on every rank
    schedule = train.lr_schedule(lr_schedule, "pretrain")  # LitGPT's LR keys: checked before any data work
    max_steps = train.resolve_max_steps(seq_length)

    if data is None:
        from litcpt.data import TextFiles

        data = TextFiles(train_data_path=assets.pretrain_files("en")[0].parent, name="en")
    data.connect(tokenizer=tokenizer, batch_size=train.micro_batch_size, max_seq_length=seq_length)

    if dry_run:
        from litcpt.training.dry_run import print_dry_run

        print_dry_run(config, spec, kind="lm", seq_length=seq_length, optimizer=optimizer)
        return spec.out_dir / "final"

    from litcpt.models.lm import LanguageModel

    module = LanguageModel(config, seq_length=seq_length, tokens_per_step=train.global_batch_size * seq_length,
                           optimizer=optimizer, checkpoint_dir=initial_checkpoint_dir,
                           activation_checkpointing=train.activation_checkpointing,
                           tie_embeddings=train.tie_embeddings, compile=train.compile, z_loss=train.z_loss or 0.0,
                           fused_head=train.fused_head, defer_init=spec.sharded)
    spec.callbacks = [schedule, *(callbacks or [])]
    if carry.any and spec.resume_checkpoint is None:  # a resumed stage has it all in its .ckpt
        from litcpt.training.carry import apply_carry

        spec.callbacks += apply_carry(carry, initial_checkpoint_dir, spec.callbacks[0], data)
    fit(module, data, spec, max_steps=max_steps)
    return spec.out_dir / "final"
