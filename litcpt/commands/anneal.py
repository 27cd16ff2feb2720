"""``litcpt anneal``: branch from a constant-phase checkpoint of an infinite-schedule run and anneal its LR.

    litcpt anneal --checkpoint out/tiny/infinite-d1/checkpoints/last.ckpt --anneal_steps 32
    litcpt anneal --checkpoint out/run/checkpoints/last.ckpt --anneal_tokens 5e7 --shape cosine --out_dir out/run-a

The infinite schedule (paper Sec. 7) holds the LR at η_const after its cooldown, so a model can be finished at any
time: take a checkpoint from the constant phase, train a short branch on which the LR decays from η_const to η_min,
and deploy the branch's ``final/`` — while the main run keeps going at η_const. The main run's files are only read.

The branch is an ordinary ``litcpt pretrain`` run (same module, data, optimizer, harness) that resumes from the
checkpoint with a one-phase ``InfiniteLR`` (no warmup, no cooldown, no constant: all anneal).
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from litgpt import Config
from litgpt.data import DataModule

from litcpt.config import TrainArgs
from litcpt.schedules import ANNEAL_SHAPES, AnnealShape, Infinite, Schedule, check_shape, schedule_from_dict
from litcpt.strategies import StrategyName

__all__ = ["ANNEAL_STAGE", "AnnealDir", "Source", "anneal_callback", "check_constant_phase", "holds_other_run",
           "infinite_phase", "read_source", "setup"]

ANNEAL_STAGE = "anneal"
"""``stage_name`` prefix of the anneal's LR callback (its checkpoint state never mixes with the source run's)."""

_STEP_DIR = re.compile(r"^step-(\d+)$")
# Resuming from another run's checkpoint makes Lightning warn about things that are intended here.
_EXPECTED_WARNINGS = (
    r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint",  # the run's own LR callback
    r"The dirpath has changed from",  # ModelCheckpoint writes into the anneal's dir, not the run's
)


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


class AnnealDir(type(Path())):  # type: ignore[misc]
    """A path for the anneal's ``out_dir`` that is refused, when parsed, if it holds another run.

    The CLI writes ``out_dir/config.yaml`` right after parsing, before :func:`setup` runs, so the check that the
    source run's files stay untouched has to happen while parsing.
    """

    def __new__(cls, *args: Any) -> "AnnealDir":
        self = super().__new__(cls, *args)
        if holds_other_run(self):
            raise ValueError(f"out_dir: {str(self)!r} holds another run (its config.yaml is not an anneal's): the "
                             "anneal must write to a dir of its own (default: <run>/anneal-<step>)")
        return self


def _register_cli_type() -> None:
    try:
        from jsonargparse.typing import register_type

        register_type(AnnealDir, serializer=str, deserializer=AnnealDir)
    except (ImportError, ValueError):  # pragma: no cover - no jsonargparse, or registered already
        pass


_register_cli_type()


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


# ---------------------------------------------------------------------------------------------------------------- #
# Reading the source
# ---------------------------------------------------------------------------------------------------------------- #
def _load_meta(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint (memory-mapped: only what is read is loaded); sharded ones: their ``meta.pt``."""
    from litcpt.checkpoint import load_lightning_checkpoint

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
    (the same boundaries as :func:`litcpt.schedules.infinite`)."""
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


# ---------------------------------------------------------------------------------------------------------------- #
# The run's arguments
# ---------------------------------------------------------------------------------------------------------------- #
def read_run_args(source: Source) -> dict[str, Any]:
    """The source run's ``litcpt pretrain`` arguments (from its ``config.yaml``; defaults when there is none)."""
    from litcpt.commands.plot_schedule import _pretrain_parser, read_recipe

    parser = _pretrain_parser()
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


def _model_config(run: dict[str, Any], source: Source) -> Config:
    from litcpt.checkpoint import load_config
    from litcpt.commands.pretrain import resolve_model_config

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


def _tokenizer_dir(run: dict[str, Any], source: Source) -> Path:
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


def _merge_train(run_train: TrainArgs, given: TrainArgs | None) -> TrainArgs:
    """The run's training arguments, with every field of ``given`` that differs from ``TrainArgs``' default."""
    if given is None:
        return replace(run_train)
    changes = {f.name: getattr(given, f.name) for f in fields(TrainArgs) if getattr(given, f.name) != f.default}
    return replace(run_train, **changes)


def _resolve_litgpt_schedule(source: Source, run: dict[str, Any], config: Config) -> Source:
    """For a LitGPT dir of a litcpt run: the stage's schedule from the run config, at the dir's step."""
    from litcpt.commands.plot_schedule import lr_callback, peak_lr, resolve_callback_schedule

    if source.config is None:
        return source
    train: TrainArgs = run["train"]
    seq = train.max_seq_length or config.block_size
    tokens_per_step = train.global_batch_size * seq
    try:
        callback = lr_callback(run, where=str(source.config))  # the run's, or litcpt pretrain's default
        steps = train.resolve_max_steps(seq)
        schedule = resolve_callback_schedule(callback, steps=steps, tokens_per_step=tokens_per_step,
                                             peak_lr=peak_lr(run, callback, where=str(source.config)), seq_length=seq)
    except ValueError:
        return source
    step = source.step if source.step is not None else (steps if source.checkpoint.name == "final" else None)
    progress = None
    if step is not None:
        progress = float(step) if callback.unit == "steps" else float(step * tokens_per_step)
    return replace(source, step=step, schedule=schedule, progress=progress, unit=callback.unit)


# ---------------------------------------------------------------------------------------------------------------- #
# The anneal
# ---------------------------------------------------------------------------------------------------------------- #
def anneal_callback(steps: int, *, const_lr: float, min_lr: float, shape: str = "exponential",
                    stage_name: str = ANNEAL_STAGE):
    """An ``InfiniteLR`` that is all anneal: over ``steps`` optimizer steps the LR goes from ``const_lr`` (first
    step) to ``min_lr`` (last step), i.e. ``infinite(k, warmup=0, cooldown=0, constant=0, anneal=steps - 1, ...)``
    for step ``k`` of the branch."""
    from litcpt.callbacks import InfiniteLR

    return InfiniteLR(stage_start="constant", constant_steps=0, anneal_steps=steps - 1, total_steps=steps,
                      const_lr=const_lr, min_lr=min_lr, max_lr=const_lr, anneal_shape=shape, stage_name=stage_name)


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


def _write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _write_config(out_dir: Path, args: dict[str, Any], *, overwrite: bool) -> None:
    """``config.yaml`` of the anneal (the CLI writes it when ``out_dir`` is given; otherwise it is written here)."""
    import yaml

    path = out_dir / "config.yaml"
    if path.exists() and not overwrite:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(args, sort_keys=False))
    os.replace(tmp, path)


def setup(
    checkpoint: Path,
    anneal_steps: int | None = None,
    anneal_tokens: int | float | None = None,
    shape: AnnealShape = "exponential",
    const_lr: float | Literal["checkpoint"] | None = None,
    min_lr: float | None = None,
    data: DataModule | None = None,
    out_dir: AnnealDir | None = None,
    train: TrainArgs | None = None,
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
            another run (a ``config.yaml`` that is not an anneal's) is refused.
        train: training arguments; fields you set override the run's (batch sizes, intervals, clipping);
            ``max_steps``/``max_tokens`` are replaced by the anneal length.
        resume: continue an interrupted anneal from ``out_dir/checkpoints/last.ckpt``: ``true`` or ``auto``.
        devices: devices per node (default: the run's).
        strategy: ``auto``, ``ddp``, ``fsdp`` or ``fsdp2`` (default: the run's).
        precision: Lightning precision (default: the run's).
        accelerator: ``auto``, ``cpu``, ``gpu`` (default: the run's).
        seed: random seed (default: the run's).

    Returns: the path of the annealed LitGPT checkpoint dir (``out_dir/final``).
    """
    from litcpt.commands.pretrain import setup as pretrain_setup
    from litcpt.harness import find_resume_checkpoint, is_global_zero_process

    _check_length(anneal_steps, anneal_tokens)
    check_shape("shape", shape, ANNEAL_SHAPES)
    from_checkpoint = const_lr == "checkpoint"
    if not from_checkpoint:
        _check_number("const_lr", const_lr, positive=True)
    _check_number("min_lr", min_lr, positive=False)

    source = read_source(checkpoint)
    if source.kind == "lightning":
        if from_checkpoint:
            const_lr = checkpoint_lr(source)
        check_constant_phase(source, const_lr_given=const_lr is not None)
    run = read_run_args(source)
    config = _model_config(run, source)
    if source.kind == "litgpt":
        source = _resolve_litgpt_schedule(source, run, config)
        if from_checkpoint:
            const_lr = checkpoint_lr(source)
        check_constant_phase(source, const_lr_given=const_lr is not None)
    const_lr_given_by_user = const_lr is not None and not from_checkpoint
    const_lr, min_lr = _lrs(source, const_lr, min_lr)
    if shape == "exponential" and min_lr <= 0:
        raise ValueError(f"min_lr={min_lr!r} must be > 0 for shape='exponential' (const_lr (min_lr/const_lr)^s)")

    train_args = _merge_train(run["train"], train)
    seq = train_args.max_seq_length or config.block_size
    tokens_per_step = train_args.global_batch_size * seq
    if anneal_steps is not None:
        steps = int(anneal_steps)
    else:
        steps = int(anneal_tokens // tokens_per_step)  # type: ignore[operator]
    if steps < 2:
        given = f"anneal_steps={anneal_steps}" if anneal_steps is not None else (
            f"anneal_tokens={anneal_tokens:g} ({steps} steps of {tokens_per_step} tokens)")
        raise ValueError(f"{given}: the anneal needs at least 2 optimizer steps (from const_lr to min_lr)")

    start = source.step if source.kind == "lightning" else 0
    assert start is not None
    out_dir_given = out_dir is not None
    if out_dir is None:
        label = f"{source.step:08d}" if source.step is not None else source.checkpoint.name
        out_dir = (source.run_dir or source.checkpoint.parent) / f"anneal-{label}"
    out_dir = AnnealDir(out_dir)  # refuses a dir that holds another run
    protected = [d for d in (source.run_dir, source.checkpoint if source.kind == "litgpt" else None,
                             source.checkpoint.parent) if d is not None]
    if any(out_dir.resolve() == d.resolve() for d in protected):
        raise ValueError(f"out_dir: {str(out_dir)!r} is the source run's own dir; the anneal must write to a dir of "
                         "its own (default: <run>/anneal-<step>)")
    own_checkpoint = find_resume_checkpoint(resume, out_dir)
    resume_from: bool | Path = own_checkpoint or (source.checkpoint if source.kind == "lightning" else False)
    train_args = replace(train_args, max_steps=start + steps, max_tokens=None)
    stage_name = f"{ANNEAL_STAGE}@{source.step}" if source.step is not None else ANNEAL_STAGE
    callback = anneal_callback(steps, const_lr=const_lr, min_lr=min_lr, shape=shape, stage_name=stage_name)

    record = {
        "checkpoint": str(source.checkpoint.resolve()), "kind": source.kind, "source_step": source.step,
        "source_config": str(source.config) if source.config else None,
        "source_phase": (infinite_phase(source.schedule, source.progress)
                         if isinstance(source.schedule, Infinite) and source.progress is not None else None),
        "anneal_steps": steps, "anneal_tokens": steps * tokens_per_step, "tokens_per_step": tokens_per_step,
        "shape": shape, "const_lr": const_lr, "min_lr": min_lr, "first_global_step": start,
        "const_lr_from": "checkpoint" if from_checkpoint else ("given" if const_lr_given_by_user else "schedule"),
        "last_global_step": start + steps - 1, "resumed_from": str(resume_from) if resume_from else None,
        "final": str(out_dir / "final"),
    }
    if is_global_zero_process():
        print(f"litcpt anneal: {source.checkpoint} (global step {source.step}) -> {out_dir / 'final'}: LR "
              f"{const_lr:.4g} -> {min_lr:.4g} ({shape}) over {steps} steps ({steps * tokens_per_step} tokens)")
        _write_json_atomic(out_dir / "anneal.json", record)
        _write_config(out_dir, {
            "checkpoint": str(source.checkpoint), "anneal_steps": steps, "shape": shape, "const_lr": const_lr,
            "min_lr": min_lr, "out_dir": str(out_dir),
            **({"train": {f.name: getattr(train, f.name) for f in fields(TrainArgs)}} if train is not None else {}),
        }, overwrite=not out_dir_given)

    with warnings.catch_warnings():
        for pattern in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        return pretrain_setup(
            model_config=config if source.kind == "lightning" else None,
            out_dir=out_dir,
            precision=precision if precision is not None else run.get("precision"),
            initial_checkpoint_dir=source.checkpoint if source.kind == "litgpt" else None,
            resume=resume_from,
            data=data if data is not None else run.get("data"),
            train=train_args,
            eval=run["eval"],
            lr_schedule=callback,
            optimizer=run["optimizer"],
            devices=devices if devices is not None else run["devices"],
            num_nodes=run["num_nodes"],
            strategy=strategy if strategy is not None else run["strategy"],
            tokenizer_dir=_tokenizer_dir(run, source) if source.kind == "lightning" else None,
            logger_name=run["logger_name"],
            seed=seed if seed is not None else run["seed"],
            accelerator=accelerator if accelerator is not None else run["accelerator"],
        )
