"""The LR stages that ``litcpt pretrain`` recipes describe, resolved without a Trainer, and their plots: what
``litcpt plot-schedule`` draws (:func:`plot_schedule`).

Each recipe is one stage (one ``litcpt pretrain`` run); stages are drawn one after the other on a cumulative
tokens (or optimizer steps) axis, each on its own clock, exactly as the stage's LR callback resolves its schedule at
``on_fit_start`` (:func:`litcpt.training.recipe.recipe_schedule`): the callback is built from the recipe's
``lr_schedule`` (default ``WarmupCosineLR(warmup=0.01, min_lr_ratio=0.1)``, as ``litcpt pretrain``), its peak LR is
``optimizer.init_args.lr`` (or the callback's ``max_lr``), the stage lasts ``train.max_steps`` or ``train.max_tokens //
(global_batch_size x seq_len)`` optimizer steps, with ``seq_len = train.max_seq_length`` or the model's
``block_size``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from litcpt.schedules.formulas import Schedule
from litcpt.training.recipe import lr_callback, pretrain_parser, read_recipe, recipe_schedule, seq_length_of

__all__ = ["Axis", "RecipeStage", "plot_recipe_schedules", "plot_recipe_stages", "plot_schedule", "recipe_curve",
           "recipe_stage", "recipe_stages"]

Axis = Literal["tokens", "steps"]


@dataclass(frozen=True)
class RecipeStage:
    """One stage: the resolved schedule of a recipe's LR callback and the stage's length."""

    name: str
    recipe: Path
    schedule: Schedule
    """The resolved :mod:`litcpt.schedules.formulas` object; its argument is in ``unit``."""
    unit: str
    """The callback's unit: ``"steps"`` (optimizer steps) or ``"tokens"``."""
    steps: int
    """Optimizer steps of the stage."""
    tokens_per_step: int
    """Global tokens per optimizer step (``global_batch_size x seq_len``)."""
    callback: str
    """Class name of the LR callback."""

    @property
    def tokens(self) -> int:
        return self.steps * self.tokens_per_step

    def length(self, x: Axis = "tokens") -> float:
        """Stage length on the ``x`` axis."""
        return float(self.tokens if x == "tokens" else self.steps)

    def lr_function(self, x: Axis = "tokens") -> Callable[[float], float]:
        """``progress on the x axis -> LR`` (the schedule called in its own unit)."""
        if self.unit == x:
            return self.schedule
        if x == "tokens":  # schedule in steps
            return lambda t: self.schedule(t / self.tokens_per_step)
        return lambda t: self.schedule(t * self.tokens_per_step)

    def lr_at_step(self, k: int) -> float:
        """The LR the callback sets for the ``k``-th optimizer step of the stage (``k = 0, 1, ...``)."""
        return self.schedule(k if self.unit == "steps" else k * self.tokens_per_step)


def recipe_stage(args: dict[str, Any], *, name: str, recipe: Path, seq_length: int | None = None) -> RecipeStage:
    """The stage a recipe's arguments describe (``seq_length``: fallback when the recipe cannot tell)."""
    where = str(recipe)
    callback = lr_callback(args, where=where)
    seq = seq_length_of(args) or seq_length
    if seq is None:
        raise ValueError(f"{where}: cannot tell the sequence length: set train.max_seq_length or model_config "
                         "(or model_name, or an existing initial_checkpoint_dir)")
    try:
        schedule, steps, tokens_per_step = recipe_schedule(args, callback, seq_length=seq, where=where)
    except ValueError as err:
        message = str(err)
        raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None
    return RecipeStage(name=name, recipe=Path(recipe), schedule=schedule, unit=callback.unit, steps=steps,
                       tokens_per_step=tokens_per_step, callback=type(callback).__name__)


def _as_paths(recipes: Sequence[Path | str] | Path | str) -> list[Path]:
    if isinstance(recipes, (str, Path)):
        return [Path(recipes)]
    return [Path(r) for r in recipes]


def recipe_stages(recipes: Sequence[Path | str] | Path | str, labels: Sequence[str] | None = None) -> list[RecipeStage]:
    """One :class:`RecipeStage` per recipe, in order. A stage that cannot tell its sequence length (a continued stage
    whose ``initial_checkpoint_dir`` does not exist yet) takes the previous stage's."""
    paths = _as_paths(recipes)
    if not paths:
        raise ValueError("recipes: give at least one recipe")
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"labels: {len(labels)} labels for {len(paths)} recipes")
    parser = pretrain_parser()
    stages: list[RecipeStage] = []
    seq: int | None = None
    seen: dict[str, int] = {}
    for i, path in enumerate(paths):
        args = read_recipe(path, parser=parser, data=False)
        if labels is not None:
            name = labels[i]
        else:  # the file name; a repeated recipe is numbered: pretrain, pretrain #2, ...
            seen[path.stem] = seen.get(path.stem, 0) + 1
            name = path.stem if seen[path.stem] == 1 else f"{path.stem} #{seen[path.stem]}"
        stage = recipe_stage(args, name=name, recipe=path, seq_length=seq)
        seq = stage.tokens_per_step // args["train"].global_batch_size
        stages.append(stage)
    return stages


def recipe_curve(stages: Sequence[RecipeStage], *, x: Axis = "tokens",
                 num_per_stage: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """``(xs, lrs)`` of the stages one after the other (``xs`` cumulative on the ``x`` axis)."""
    from litcpt.report.plotting import stage_curves

    _check_axis(x)
    curves = stage_curves([(s.name, s.length(x)) for s in stages], {"lr": [s.lr_function(x) for s in stages]},
                          num_per_stage=num_per_stage)
    return curves["lr"]


def _check_axis(x: str) -> None:
    if x not in ("tokens", "steps"):
        raise ValueError(f"x={x!r} must be 'tokens' or 'steps'")


def plot_recipe_schedules(recipes: Sequence[Path | str] | Path | str, path: Path | str, *, x: Axis = "tokens",
                          labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Draw the LR schedule of ``recipes`` (one stage each, one after the other) to the PNG ``path``.

    Returns: the path written.
    """
    _check_axis(x)
    return plot_recipe_stages(recipe_stages(recipes, labels), path, x=x, title=title)


def plot_recipe_stages(stages: Sequence[RecipeStage], path: Path | str, *, x: Axis = "tokens",
                       title: str | None = None) -> Path:
    """Draw resolved stages (see :func:`recipe_stages`) to the PNG ``path``, atomically."""
    from litcpt.report.plotting import plot_stages

    _check_axis(x)
    if title is None:
        title = "Learning rate: " + " -> ".join(f"{s.name} ({s.callback})" for s in stages)
        if len(title) > 90:
            title = f"Learning rate over {len(stages)} stages"
    return plot_stages([(s.name, s.length(x)) for s in stages], {"learning rate": [s.lr_function(x) for s in stages]},
                       path, xlabel="tokens" if x == "tokens" else "optimizer steps", title=title)  # atomic


def lr_summary(stage: RecipeStage) -> str:
    """``LR start 0, peak 0.003 (step 9), end 0.0003``: the LR of the stage's first, highest and last optimizer
    steps (the first of equal highest)."""
    lrs = [stage.lr_at_step(step) for step in range(stage.steps)]
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    return f"LR start {lrs[0]:.3g}, peak {lrs[peak]:.3g} (step {peak}), end {lrs[-1]:.3g}"


def plot_schedule(recipes: Sequence[Path | str] | Path | str, out: Path | str = Path("lr.png"), *,
                  x: Axis = "tokens", labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """``litcpt plot-schedule``: draw the recipes' stages to the PNG ``out`` and print one line per stage.

    Returns: the path of the PNG.
    """
    _check_axis(x)
    stages = recipe_stages(recipes, labels)
    written = plot_recipe_stages(stages, out, x=x, title=title)
    for stage in stages:
        print(f"{stage.name}: {stage.callback}, {stage.steps} steps x {stage.tokens_per_step} tokens "
              f"= {stage.tokens} tokens, {lr_summary(stage)}")
    print(f"wrote {written}")
    return written
