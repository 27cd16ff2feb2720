"""What ``litcpt anneal`` starts from, read without loading weights: the checkpoint (a Lightning ``.ckpt`` or a LitGPT
dir), its run's ``litcpt pretrain`` arguments and LR schedule, where the checkpoint is in that schedule, and the
training arguments of the branch (the run's, with the fields the user gave)."""

from __future__ import annotations

import difflib
import math
import re
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from litgpt import Config

from litcpt.schedules.formulas import Infinite, Schedule, schedule_from_dict
from litcpt.training.args import TrainArgs

__all__ = ["Source", "check_constant_phase", "checkpoint_lr", "holds_other_run", "infinite_phase", "merge_train",
           "model_config", "read_run_args", "read_source", "resolve_litgpt_schedule", "tokenizer_dir"]

_STEP_DIR = re.compile(r"^step-(\d+)$")

_ANNEAL_KEYS = {"checkpoint", "shape"}  # always in an anneal config.yaml (the CLI drops null keys)


def holds_other_run(directory: Path) -> bool:
    """Whether ``directory`` is the dir of a run other than an anneal (its ``config.yaml`` is not an anneal's)."""
    import yaml

    path = Path(directory) / "config.yaml"
    if not path.is_file():
        return False
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return True
    return not (isinstance(config, dict) and _ANNEAL_KEYS <= set(config))


@dataclass(frozen=True)
class Source:
    """What an anneal starts from: a checkpoint, its run and the LR schedule it was trained with."""

    checkpoint: Path
    kind: Literal["lightning", "litgpt"]
    """``lightning``: a ``.ckpt`` (weights + optimizer + data position); ``litgpt``: a LitGPT checkpoint dir."""
    step: int | None
    """Global step of the checkpoint (``None``: unknown, a LitGPT dir not named ``step-N``/``final``)."""
    run_dir: Path | None
    """The run's ``out_dir`` (``None`` for a LitGPT dir outside a litcpt run)."""
    config: Path | None
    """The run's ``config.yaml`` (``None``: not found; ``litcpt pretrain``'s defaults are used)."""
    schedule: Schedule | None = None
    """The LR schedule of the checkpoint's stage, resolved (``None``: unknown)."""
    progress: float | None = None
    """Progress ``t`` of the stage at the checkpoint, in ``unit`` (the ``t`` of the next step)."""
    unit: str = "steps"


def _load_meta(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint (memory-mapped: only what is read is loaded); sharded ones: their ``meta.pt``."""
    from litcpt.runtime.checkpoint import load_lightning_checkpoint

    return load_lightning_checkpoint(path, field="checkpoint")


def _lr_state(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The state of the run's litcpt LR callback (``ckpt["callbacks"]["InfiniteLR{...}"]``), InfiniteLR first."""
    states = [v for v in (meta.get("callbacks") or {}).values()
              if isinstance(v, dict) and "stage_start_step" in v and isinstance(v.get("schedule"), dict)]
    states.sort(key=lambda s: s["schedule"].get("kind") != "infinite")
    return states[0] if states else None


def _state_progress(state: dict[str, Any], step: int) -> float:
    """``t`` of the next step, as the callback computes it (``progress``) after restoring ``state``."""
    if state.get("unit") == "tokens":
        last = state.get("last_step")
        extra = (step - last) * float(state.get("step_tokens") or 0.0) if last is not None else 0.0
        return float(state.get("tokens_seen") or 0.0) + extra
    return float(step - int(state.get("stage_start_step") or 0))


def _find_config(*candidates: Path) -> Path | None:
    return next((c for c in candidates if c.is_file()), None)


def read_source(checkpoint: Path | str) -> Source:
    """Inspect ``checkpoint`` (a Lightning ``.ckpt`` or a LitGPT dir) without loading its weights.

    Raises:
        FileNotFoundError: it does not exist.
        ValueError: it is neither a Lightning checkpoint nor a LitGPT checkpoint dir.
    """
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint: {str(path)!r} does not exist (give a .ckpt from <run>/checkpoints/ "
                                "or a LitGPT checkpoint dir)")
    if path.is_dir() and (path / "lit_model.pth").is_file():
        match = _STEP_DIR.match(path.name)
        step = int(match.group(1)) if match else None
        in_run = (path.parent / "config.yaml").is_file()
        return Source(checkpoint=path, kind="litgpt", step=step, run_dir=path.parent if in_run else None,
                      config=_find_config(path / "config.yaml", path.parent / "config.yaml"))
    if path.is_dir() and not (path / "meta.pt").is_file():
        raise ValueError(f"checkpoint: {str(path)!r} is a directory but neither a LitGPT checkpoint dir "
                         "(lit_model.pth) nor a sharded Lightning checkpoint (meta.pt)")
    meta = _load_meta(path)
    step = int(meta["global_step"])
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    config = _find_config(run_dir / "config.yaml", run_dir / f"step-{step:08d}" / "config.yaml")
    state = _lr_state(meta)
    if state is None:
        return Source(checkpoint=path, kind="lightning", step=step, run_dir=run_dir, config=config)
    return Source(checkpoint=path, kind="lightning", step=step, run_dir=run_dir, config=config,
                  schedule=schedule_from_dict(state["schedule"]), progress=_state_progress(state, step),
                  unit=str(state.get("unit", "steps")))


def infinite_phase(schedule: Infinite, t: float) -> str:
    """The phase of an infinite schedule at progress ``t``: warmup, cooldown, constant, anneal or end
    (the same boundaries as :class:`litcpt.schedules.formulas.Infinite`)."""
    if schedule.warmup > 0 and t <= schedule.warmup:
        return "warmup"
    t -= schedule.warmup
    if t < schedule.cooldown:
        return "cooldown"
    t -= schedule.cooldown
    if t <= schedule.constant:
        return "constant"
    t -= schedule.constant
    return "anneal" if t < schedule.anneal else "end"


def checkpoint_lr(source: Source) -> float:
    """The LR to anneal from when the run's schedule is not an infinite one (``--const_lr checkpoint``, the OLMo 2
    recipe): the LR of the last step in the optimizer state of a Lightning ``.ckpt``; for a LitGPT dir, the run's
    resolved schedule at the dir's step."""
    if source.kind == "lightning" and not source.checkpoint.is_dir():
        meta = _load_meta(source.checkpoint)
        try:
            lr = meta["optimizer_states"][0]["param_groups"][0]["lr"]
        except (KeyError, IndexError, TypeError):
            lr = None
        if hasattr(lr, "item"):
            lr = lr.item()
        if isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0:
            return float(lr)
        raise ValueError(f"checkpoint: {source.checkpoint} holds no optimizer state with a positive lr "
                         "(optimizer_states[0].param_groups[0].lr): pass --const_lr as a number")
    if source.schedule is not None and source.progress is not None:
        return float(source.schedule(source.progress))
    raise ValueError(f"checkpoint: {source.checkpoint} holds no optimizer state and its run's LR schedule is unknown: "
                     "pass --const_lr as a number")


def check_constant_phase(source: Source, *, const_lr_given: bool) -> None:
    """Error (or, with an explicit ``const_lr``, warn) unless the checkpoint is in the constant phase of an infinite
    schedule."""
    schedule, t = source.schedule, source.progress
    if not isinstance(schedule, Infinite):
        if const_lr_given:
            return
        kind = schedule.kind if schedule is not None else "unknown"
        raise ValueError(f"checkpoint: {source.checkpoint} was not trained with an infinite schedule (InfiniteLR; "
                         f"its LR schedule is {kind}): pass --const_lr (the LR to anneal from, or 'checkpoint' for "
                         "the LR stored in the checkpoint) and --min_lr")
    if t is None:
        return
    phase = infinite_phase(schedule, t)
    if phase == "constant":
        return
    start = schedule.warmup + schedule.cooldown
    message = (f"checkpoint: {source.checkpoint} is in the {phase} phase of its infinite LR schedule (global step "
               f"{source.step}, t={t:g} {source.unit}, LR {schedule(t):.4g}), not in the constant phase (t in "
               f"[{start:g}, {start + schedule.constant:g}] {source.unit}, LR {schedule.const_lr:.4g})")
    if not const_lr_given:
        raise ValueError(f"{message}: anneal a checkpoint from the constant phase, or pass --const_lr to anneal "
                         "from this one anyway")
    warnings.warn(f"{message}; annealing from the given const_lr anyway", UserWarning, stacklevel=2)


def read_run_args(source: Source) -> dict[str, Any]:
    """The source run's ``litcpt pretrain`` arguments (from its ``config.yaml``; defaults when there is none)."""
    from litcpt.training.recipe import pretrain_parser, read_recipe

    parser = pretrain_parser()
    if source.config is not None:
        try:
            return read_recipe(source.config, parser=parser)
        except ValueError as err:
            raise ValueError(f"checkpoint: cannot read the run's config: {err}") from None
    if source.kind == "lightning":
        raise FileNotFoundError(f"checkpoint: no config.yaml for {source.checkpoint} (looked in "
                                f"{source.run_dir}/config.yaml, which `litcpt pretrain` writes): the model, data "
                                "and optimizer of the run are needed")
    cfg = parser.parse_args([])
    return {k: v for k, v in parser.instantiate_classes(cfg).items() if k != "config"}


def _litgpt_dirs(source: Source) -> list[Path]:
    """LitGPT checkpoint dirs of the run, the checkpoint's own step first (for its model config and tokenizer)."""
    if source.kind == "litgpt":
        return [source.checkpoint]
    if source.run_dir is None:
        return []
    own = [source.run_dir / f"step-{source.step:08d}", source.run_dir / "final"]
    others = sorted(source.run_dir.glob("step-*"), reverse=True)
    return [d for d in own + others if (d / "model_config.yaml").is_file()]


def _existing_dir(value: Any) -> Path | None:
    return Path(value) if value is not None and Path(value).is_dir() else None


def model_config(run: dict[str, Any], source: Source) -> Config:
    from litcpt.runtime.checkpoint import load_config
    from litcpt.training.pretrain import resolve_model_config

    if source.kind == "litgpt":
        return load_config(source.checkpoint)
    initial = _existing_dir(run.get("initial_checkpoint_dir"))
    if initial is not None and not (initial / "model_config.yaml").is_file():
        initial = None
    if run.get("model_config") is not None or run.get("model_name") or initial is not None:
        return resolve_model_config(run.get("model_name"), run.get("model_config"), initial)
    directories = _litgpt_dirs(source)
    if directories:
        return load_config(directories[0])
    raise ValueError(f"checkpoint: cannot tell the model config of {source.checkpoint}: its run config has no "
                     "model_config or model_name and no LitGPT checkpoint dir of the run is left")


def tokenizer_dir(run: dict[str, Any], source: Source) -> Path:
    """As ``litcpt pretrain`` chose it: ``tokenizer_dir``, else the initial checkpoint's, else the bundled one; a
    LitGPT dir of the run (which holds a copy) when the original is gone."""
    from litcpt import assets

    def has_tokenizer(d: Path | None) -> bool:
        return d is not None and ((d / "tokenizer.json").is_file() or (d / "tokenizer.model").is_file())

    for candidate in (_existing_dir(run.get("tokenizer_dir")), _existing_dir(run.get("initial_checkpoint_dir"))):
        if has_tokenizer(candidate):
            return candidate  # type: ignore[return-value]
    if run.get("tokenizer_dir") is None and run.get("initial_checkpoint_dir") is None:
        return assets.tokenizer_dir()
    for directory in _litgpt_dirs(source):
        if has_tokenizer(directory):
            return directory
    gone = run.get("tokenizer_dir") or run.get("initial_checkpoint_dir")
    raise FileNotFoundError(f"checkpoint: the run's tokenizer ({gone}) is gone and no LitGPT dir of the run holds a "
                            "copy of it")


def merge_train(run_train: TrainArgs, given: Mapping[str, Any] | None) -> TrainArgs:
    """The run's training arguments with the fields in ``given`` (the ``--train.*`` keys the user gave, whatever
    their values: ``--train.micro_batch_size 4`` wins over the run's 8 even though 4 is ``TrainArgs``' default).

    Raises:
        ValueError: a key that is not a field of ``TrainArgs``, or a value ``TrainArgs`` refuses.
    """
    given = dict(given or {})
    hints = typing.get_type_hints(TrainArgs)
    names = [f.name for f in fields(TrainArgs)]
    for key, value in given.items():
        if key not in hints:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"did you mean train.{close[0]}?" if close else f"expected one of {', '.join(names)}"
            raise ValueError(f"train.{key}: not a training argument ({hint})")
        allowed = typing.get_args(hints[key]) or (hints[key],)
        types = tuple(type(None) if t is None else t for t in allowed) + ((int,) if float in allowed else ())
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ValueError(f"train.{key}={value!r}: expected {expected}")
    return replace(run_train, **given)


def resolve_litgpt_schedule(source: Source, run: dict[str, Any], config: Config) -> Source:
    """For a LitGPT dir of a litcpt run: the stage's schedule from the run config, at the dir's step."""
    from litcpt.training.recipe import lr_callback, recipe_schedule

    if source.config is None:
        return source
    train: TrainArgs = run["train"]
    seq = train.max_seq_length or config.block_size
    try:
        callback = lr_callback(run, where=str(source.config))  # the run's, or litcpt pretrain's default
        schedule, steps, tokens_per_step = recipe_schedule(run, callback, seq_length=seq, where=str(source.config))
    except ValueError:
        return source
    step = source.step if source.step is not None else (steps if source.checkpoint.name == "final" else None)
    progress = None
    if step is not None:
        progress = float(step) if callback.unit == "steps" else float(step * tokens_per_step)
    return replace(source, step=step, schedule=schedule, progress=progress, unit=callback.unit)
