"""``litcpt anneal`` below its command: branch from a constant-phase checkpoint of an infinite-schedule run and anneal
its LR (the arguments are documented on :func:`litcpt.commands.anneal.setup`, the command's signature).

The infinite schedule (paper Sec. 7) holds the LR at η_const after its cooldown, so a model can be finished at any
time: take a checkpoint from the constant phase, train a short branch on which the LR decays from η_const to η_min,
and deploy the branch's ``final/`` — while the main run keeps going at η_const. The main run's files are only read.

The branch is an ordinary ``litcpt pretrain`` run (same module, data, optimizer, harness) that resumes from the
checkpoint with a one-phase ``InfiniteLR`` (no warmup, no cooldown, no constant: all anneal) under a ``stage_name`` of
its own, so its stage starts at the checkpoint's global step. What it starts from is read by
:mod:`litcpt.training.anneal_source`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from litcpt.runtime.atomic import write_json, write_yaml
from litcpt.runtime.outputs import check_no_previous_run, write_pending_config
from litcpt.schedules.formulas import ANNEAL_SHAPES, Infinite, check_shape
from litcpt.training.anneal_source import (
    Source,
    check_constant_phase,
    checkpoint_lr,
    holds_other_run,
    infinite_phase,
    merge_train,
    model_config,
    read_run_args,
    read_source,
    resolve_litgpt_schedule,
    tokenizer_dir,
)
from litcpt.training.args import TrainArgs

__all__ = ["ANNEAL_STAGE", "anneal", "anneal_callback", "check_out_dir", "cli_validate"]

ANNEAL_STAGE = "anneal"
"""``stage_name`` prefix of the anneal's LR callback (its checkpoint state never mixes with the source run's)."""

# Resuming from another run's checkpoint makes Lightning warn about things that are intended here.
_EXPECTED_WARNINGS = (
    r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint",  # the run's own LR callback
    r"The dirpath has changed from",  # ModelCheckpoint writes into the anneal's dir, not the run's
)


def anneal_callback(steps: int, *, const_lr: float, min_lr: float, shape: str = "exponential",
                    stage_name: str = ANNEAL_STAGE):
    """An ``InfiniteLR`` that is all anneal: over ``steps`` optimizer steps the LR goes from ``const_lr`` (first
    step) to ``min_lr`` (last step), i.e. ``Infinite(warmup=0, cooldown=0, constant=0, anneal=steps - 1, ...)(k)``
    for step ``k`` of the branch."""
    from litcpt.callbacks import InfiniteLR

    return InfiniteLR(stage_start="constant", constant_steps=0, anneal_steps=steps - 1, total_steps=steps,
                      const_lr=const_lr, min_lr=min_lr, max_lr=const_lr, anneal_shape=shape, stage_name=stage_name)


# ------------------------------------------------------------------------------------------------ checks
def _check_number(name: str, value: Any, *, positive: bool) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name}={value!r} must be {'> 0' if positive else '>= 0'}")


def _check_length(anneal_steps: int | None, anneal_tokens: int | float | None) -> None:
    if anneal_steps is not None and anneal_tokens is not None:
        raise ValueError(f"give one of anneal_steps={anneal_steps!r}, anneal_tokens={anneal_tokens!r}, not both")
    if anneal_steps is None and anneal_tokens is None:
        raise ValueError("the anneal length is required: --anneal_steps N or --anneal_tokens N")
    for name, value in (("anneal_steps", anneal_steps), ("anneal_tokens", anneal_tokens)):
        if value is not None:
            _check_number(name, value, positive=True)
    if anneal_steps is not None and int(anneal_steps) != anneal_steps:
        raise ValueError(f"anneal_steps={anneal_steps!r} must be a whole number of optimizer steps")


def _check_arguments(anneal_steps: Any, anneal_tokens: Any, shape: Any, const_lr: Any, min_lr: Any) -> None:
    """The checks of the arguments alone (nothing read from disk)."""
    _check_length(anneal_steps, anneal_tokens)
    check_shape("shape", shape, ANNEAL_SHAPES)
    if const_lr != "checkpoint":
        _check_number("const_lr", const_lr, positive=True)
    _check_number("min_lr", min_lr, positive=False)


def check_out_dir(out_dir: Path | str) -> Path:
    """``out_dir`` as a Path; refused if it holds another run (a ``config.yaml`` that is not an anneal's)."""
    out_dir = Path(out_dir)
    if holds_other_run(out_dir):
        raise ValueError(f"out_dir: {str(out_dir)!r} holds another run (its config.yaml is not an anneal's): the "
                         "anneal must write to a dir of its own (default: <run>/anneal-<step>)")
    return out_dir


def cli_validate(*, anneal_steps: Any = None, anneal_tokens: Any = None, shape: Any = "exponential",
                 const_lr: Any = None, min_lr: Any = None, out_dir: Path | None = None, train: Any = None,
                 **_: Any) -> None:
    """Checks the CLI runs before it writes ``out_dir/config.yaml`` (see :func:`litcpt.cli.main.main`): a refused anneal
    leaves no config.yaml behind, and another run's config.yaml is never overwritten. ``--train.*`` keys and value
    types are checked here too, before any file is read (the run's own values come later)."""
    merge_train(TrainArgs(), train)
    _check_arguments(anneal_steps, anneal_tokens, shape, const_lr, min_lr)
    if out_dir is not None:
        check_out_dir(out_dir)


# ------------------------------------------------------------------------------------------------ the branch
def _lrs(source: Source, const_lr: float | None, min_lr: float | None) -> tuple[float, float]:
    """``const_lr`` and ``min_lr``: given, else the source schedule's, else error."""
    schedule = source.schedule
    if const_lr is None:
        assert isinstance(schedule, Infinite)  # check_constant_phase raised otherwise
        const_lr = schedule.const_lr
    if min_lr is None:
        if schedule is not None and hasattr(schedule, "min_lr"):
            min_lr = float(schedule.min_lr)  # type: ignore[union-attr]
        else:
            raise ValueError(f"min_lr: the LR schedule of {source.checkpoint} is unknown or has no min_lr: pass "
                             "--min_lr")
    if min_lr > const_lr:
        raise ValueError(f"min_lr={min_lr!r} must be <= const_lr={const_lr!r} (the anneal decays the LR)")
    return float(const_lr), float(min_lr)


def _read_branch_source(checkpoint: Path, const_lr: float | str | None, min_lr: float | None,
                        shape: str) -> tuple[Source, dict[str, Any], Any, tuple[float, float, str]]:
    """The source checkpoint (in its schedule), its run's arguments, the model config and ``(const_lr, min_lr,
    where const_lr comes from)``; errors for a checkpoint outside the constant phase or LRs that do not decay."""
    from_checkpoint = const_lr == "checkpoint"
    source = read_source(checkpoint)
    if source.kind == "lightning":
        if from_checkpoint:
            const_lr = checkpoint_lr(source)
        check_constant_phase(source, const_lr_given=const_lr is not None)
    run = read_run_args(source)
    config = model_config(run, source)
    if source.kind == "litgpt":
        source = resolve_litgpt_schedule(source, run, config)
        if from_checkpoint:
            const_lr = checkpoint_lr(source)
        check_constant_phase(source, const_lr_given=const_lr is not None)
    const_lr_from = "checkpoint" if from_checkpoint else ("given" if const_lr is not None else "schedule")
    const, least = _lrs(source, const_lr, min_lr)  # type: ignore[arg-type]
    if shape == "exponential" and least <= 0:
        raise ValueError(f"min_lr={least!r} must be > 0 for shape='exponential' (const_lr (min_lr/const_lr)^s)")
    return source, run, config, (const, least, const_lr_from)


def _anneal_steps(anneal_steps: int | None, anneal_tokens: int | float | None, train: TrainArgs,
                  block_size: int) -> tuple[int, int]:
    """``(optimizer steps, tokens per step)`` of the anneal; at least 2 steps (from const_lr to min_lr)."""
    tokens_per_step = train.global_batch_size * (train.max_seq_length or block_size)
    steps = int(anneal_steps) if anneal_steps is not None else int(anneal_tokens // tokens_per_step)  # type: ignore
    if steps < 2:
        given = f"anneal_steps={anneal_steps}" if anneal_steps is not None else (
            f"anneal_tokens={anneal_tokens:g} ({steps} steps of {tokens_per_step} tokens)")
        raise ValueError(f"{given}: the anneal needs at least 2 optimizer steps (from const_lr to min_lr)")
    return steps, tokens_per_step


def _branch_dir(out_dir: Path | None, source: Source) -> Path:
    """The anneal's own run dir: ``out_dir``, else ``<run>/anneal-<step>``; never the source run's dir."""
    if out_dir is None:
        label = f"{source.step:08d}" if source.step is not None else source.checkpoint.name
        out_dir = (source.run_dir or source.checkpoint.parent) / f"anneal-{label}"
    out_dir = check_out_dir(out_dir)
    protected = [d for d in (source.run_dir, source.checkpoint if source.kind == "litgpt" else None,
                             source.checkpoint.parent) if d is not None]
    if any(out_dir.resolve() == d.resolve() for d in protected):
        raise ValueError(f"out_dir: {str(out_dir)!r} is the source run's own dir; the anneal must write to a dir of "
                         "its own (default: <run>/anneal-<step>)")
    return out_dir


def _record(source: Source, out_dir: Path, lrs: tuple[float, float, str], *, steps: int, tokens_per_step: int,
            shape: str, start: int, resume_from: bool | Path) -> dict[str, Any]:
    """``anneal.json``: where the branch comes from and what it trains."""
    const_lr, min_lr, const_lr_from = lrs
    return {
        "checkpoint": str(source.checkpoint.resolve()), "kind": source.kind, "source_step": source.step,
        "source_config": str(source.config) if source.config else None,
        "source_phase": (infinite_phase(source.schedule, source.progress)
                         if isinstance(source.schedule, Infinite) and source.progress is not None else None),
        "anneal_steps": steps, "anneal_tokens": steps * tokens_per_step, "tokens_per_step": tokens_per_step,
        "shape": shape, "const_lr": const_lr, "min_lr": min_lr, "first_global_step": start,
        "const_lr_from": const_lr_from,
        "last_global_step": start + steps - 1, "resumed_from": str(resume_from) if resume_from else None,
        "final": str(out_dir / "final"),
    }


def anneal(checkpoint: Path, anneal_steps: int | None = None, anneal_tokens: int | float | None = None,
           shape: str = "exponential", const_lr: float | Literal["checkpoint"] | None = None,
           min_lr: float | None = None, data: Any = None, out_dir: Path | None = None,
           train: dict[str, Any] | None = None, resume: bool | Literal["auto"] = False,
           devices: int | str | None = None, strategy: str | None = None, precision: str | None = None,
           accelerator: str | None = None, seed: int | None = None) -> Path:
    """Run ``litcpt anneal`` (the arguments of :func:`litcpt.commands.anneal.setup`); returns ``out_dir/final``."""
    from litcpt.runtime.ranks import is_global_zero
    from litcpt.training.harness import find_resume_checkpoint

    _check_arguments(anneal_steps, anneal_tokens, shape, const_lr, min_lr)
    source, run, config, lrs = _read_branch_source(checkpoint, const_lr, min_lr, shape)
    train_args = merge_train(run["train"], train)
    steps, tokens_per_step = _anneal_steps(anneal_steps, anneal_tokens, train_args, config.block_size)
    start = source.step if source.kind == "lightning" else 0
    assert start is not None
    out_dir_given = out_dir is not None
    out_dir = _branch_dir(out_dir, source)
    # before anything is written: a re-run into a finished or interrupted anneal is refused unless it resumes, for the
    # default <run>/anneal-<step> too (the CLI checks a given out_dir only; it cannot know the default)
    check_no_previous_run(out_dir, resume)
    own_checkpoint = find_resume_checkpoint(resume, out_dir)
    resume_from: bool | Path = own_checkpoint or (source.checkpoint if source.kind == "lightning" else False)
    # The anneal's own LR callback replaces the run's schedule, and LitGPT's keys that shaped the run's default one.
    train_args = replace(train_args, max_steps=start + steps, max_tokens=None, lr_warmup_steps=None,
                         lr_warmup_fraction=None, min_lr=None)
    stage_name = f"{ANNEAL_STAGE}@{source.step}" if source.step is not None else ANNEAL_STAGE
    callback = anneal_callback(steps, const_lr=lrs[0], min_lr=lrs[1], shape=shape, stage_name=stage_name)
    if is_global_zero():
        print(f"litcpt anneal: {source.checkpoint} (global step {source.step}) -> {out_dir / 'final'}: LR "
              f"{lrs[0]:.4g} -> {lrs[1]:.4g} ({shape}) over {steps} steps ({steps * tokens_per_step} tokens)")
        write_json(out_dir / "anneal.json", _record(source, out_dir, lrs, steps=steps, tokens_per_step=tokens_per_step,
                                                    shape=shape, start=start, resume_from=resume_from))
        wrote = write_pending_config(out_dir)  # the CLI's config.yaml, when out_dir is given there
        if not wrote and (not out_dir_given or not (out_dir / "config.yaml").exists()):
            write_yaml(out_dir / "config.yaml", {
                "checkpoint": str(source.checkpoint), "anneal_steps": steps, "shape": shape, "const_lr": lrs[0],
                "min_lr": lrs[1], "out_dir": str(out_dir), **({"train": dict(train)} if train else {})})
    overrides = {"data": data, "devices": devices, "strategy": strategy, "precision": precision,
                 "accelerator": accelerator, "seed": seed}
    return _run_branch(source, run, config, train_args, callback, out_dir, resume_from, overrides)


def _run_branch(source: Source, run: dict[str, Any], config: Any, train: TrainArgs, callback: Any, out_dir: Path,
                resume_from: bool | Path, overrides: dict[str, Any]) -> Path:
    """The branch: ``litcpt pretrain`` with the run's arguments, the anneal's train arguments and LR callback, resumed
    from the source ``.ckpt`` (or started from the LitGPT dir's weights); ``overrides``: the arguments given, which
    win over the run's where not ``None``."""
    from litcpt.training.carry import CarryArgs
    from litcpt.training.pretrain import run as pretrain_run

    def given_or_run(key: str) -> Any:
        return overrides[key] if overrides[key] is not None else run.get(key)

    with warnings.catch_warnings():
        for pattern in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        return pretrain_run(
            model_name=None,
            model_config=config if source.kind == "lightning" else None,
            out_dir=out_dir,
            precision=given_or_run("precision"),
            initial_checkpoint_dir=source.checkpoint if source.kind == "litgpt" else None,
            resume=resume_from,
            data=given_or_run("data"),
            train=train,
            eval=run["eval"],
            lr_schedule=callback,
            optimizer=run["optimizer"],
            devices=given_or_run("devices"),
            num_nodes=run["num_nodes"],
            strategy=given_or_run("strategy"),
            tokenizer_dir=tokenizer_dir(run, source) if source.kind == "lightning" else None,
            logger_name=run["logger_name"],
            seed=given_or_run("seed"),
            accelerator=given_or_run("accelerator"),
            callbacks=run.get("callbacks"),  # the run's EMA, SkipSpikes ...: the branch trains as the run did
            carry=CarryArgs(),
            dry_run=False,
        )
