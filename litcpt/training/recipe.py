"""Reading and resolving ``litcpt pretrain`` recipes (or a run's ``config.yaml``) outside a training run.

Shared by ``litcpt plot-schedule`` (draw a recipe's LR schedule) and ``litcpt anneal`` (branch a run from its
config): both parse a recipe with ``litcpt pretrain``'s own parser and resolve its LR callback's schedule with the
pure :func:`litcpt.schedules.config.resolve`, exactly as the callback does at ``on_fit_start``, from the facts the
recipe gives instead of a Trainer's (:func:`recipe_schedule`).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from litcpt.cli.errors import error_line
from litcpt.schedules.config import StageFacts
from litcpt.schedules.formulas import Schedule

__all__ = ["lr_callback", "peak_lr", "pretrain_parser", "read_recipe", "recipe_schedule", "seq_length_of"]


@functools.lru_cache(maxsize=1)
def pretrain_parser():
    """``litcpt pretrain``'s parser (built once: it takes a moment; parsing does not change it)."""
    from litcpt.cli.parser import command_parser

    return command_parser("pretrain")


def read_recipe(path: Path | str, *, parser: Any = None, data: bool = True) -> dict[str, Any]:
    """The arguments of ``litcpt pretrain`` that a recipe (or a run's ``config.yaml``) gives, instantiated.

    Args:
        path: the YAML file.
        parser: a ``litcpt pretrain`` parser to reuse (building one takes a moment).
        data: instantiate the ``data`` module too (``False``: ``data`` is ``None``; plotting does not need it).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a valid pretrain recipe (one line, naming the file and the key).
    """
    from jsonargparse import ArgumentError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {str(path)!r} does not exist")
    parser = parser or pretrain_parser()
    try:
        cfg = parser.parse_args(["--config", str(path)])
        if not data:
            cfg.data = None
        init = parser.instantiate_classes(cfg)
    except (ArgumentError, ValueError, TypeError, ImportError, AttributeError) as err:
        raise ValueError(f"{path}: not a valid litcpt pretrain recipe: {error_line(err)}") from None
    return {k: v for k, v in init.items() if k != "config"}


def peak_lr(args: dict[str, Any], callback: Any, *, where: str) -> float:
    """The schedule's peak LR: the callback's ``max_lr``, else the optimizer's ``init_args.lr``."""
    if getattr(callback, "max_lr", None) is not None:
        return float(callback.max_lr)
    optimizer = args.get("optimizer")
    lr = None
    if isinstance(optimizer, dict):
        lr = (optimizer.get("init_args") or {}).get("lr", optimizer.get("lr"))
    elif isinstance(getattr(optimizer, "keywords", None), dict):  # the callable jsonargparse builds from the recipe
        lr = optimizer.keywords.get("lr")
    if lr is None:
        raise ValueError(f"{where}: optimizer.init_args.lr is not set: it is the schedule's peak LR "
                         f"(give optimizer: {{class_path: torch.optim.AdamW, init_args: {{lr: ...}}}})")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"{where}: optimizer.init_args.lr={lr!r} must be a positive number")
    return float(lr)


def lr_callback(args: dict[str, Any], *, where: str) -> Any:
    """The recipe's ``lr_schedule`` (``litcpt pretrain``'s default when unset); must be a litcpt LR callback."""
    from litcpt.callbacks import LRScheduleCallback
    from litcpt.training.args import TrainArgs

    callback = args.get("lr_schedule")
    if callback is None:
        return (args.get("train") or TrainArgs()).lr_schedule(None, "pretrain")
    if not isinstance(callback, LRScheduleCallback):
        raise ValueError(f"{where}: lr_schedule is a {type(callback).__module__}.{type(callback).__qualname__}, not "
                         "a litcpt LR-schedule callback (WarmupCosineLR, InfiniteLR, WSDLR, ConstantLR, LinearDecayLR, "
                         "PowerLR)")
    return callback


def seq_length_of(args: dict[str, Any]) -> int | None:
    """``train.max_seq_length``, else the model's ``block_size`` (model_config > model_name > initial checkpoint)."""
    train = args.get("train")
    if train is not None and train.max_seq_length:
        return int(train.max_seq_length)
    if args.get("model_config") is not None:
        return int(args["model_config"].block_size)
    if args.get("model_name"):
        from litgpt import Config

        try:
            return int(Config.from_name(args["model_name"]).block_size)
        except ValueError:
            raise ValueError(f"model_name: {args['model_name']!r} is not a litgpt model name") from None
    ckpt = args.get("initial_checkpoint_dir")
    if ckpt is not None and (Path(ckpt) / "model_config.yaml").is_file():
        from litcpt.runtime.checkpoint import load_config

        return int(load_config(ckpt).block_size)
    return None


def recipe_schedule(args: dict[str, Any], callback: Any, *, seq_length: int, where: str) -> tuple[Schedule, int, int]:
    """The stage a recipe's arguments describe, without a Trainer: ``(schedule, steps, tokens_per_step)``.

    The stage lasts ``train.max_steps`` (or ``train.max_tokens`` in optimizer steps of ``global_batch_size x
    seq_length`` tokens); the schedule is the LR callback's (:func:`lr_callback`) resolved by
    :meth:`~litcpt.callbacks.LRScheduleCallback.resolve` for a stage of that length, with the recipe's peak LR
    (:func:`peak_lr`), tokens per step and sequence length: what the callback resolves at ``on_fit_start``.

    Raises:
        ValueError: one line (no stage length, no peak LR, phases that do not fit the stage ...).
    """
    train = args["train"]
    steps = train.resolve_max_steps(seq_length)
    tokens_per_step = train.global_batch_size * seq_length
    schedule = callback.resolve(StageFacts(steps=steps, tokens_per_step=tokens_per_step, seq_length=seq_length,
                                           peak_lr=peak_lr(args, callback, where=where)))
    return schedule, steps, tokens_per_step
