"""``litcpt plot-schedule``: draw the learning-rate schedule of one or several pretrain recipes to a PNG.

    litcpt plot-schedule --recipes recipes/tiny/pretrain.yaml --out lr.png
    litcpt plot-schedule --recipes '[recipes/tiny/pretrain.yaml, recipes/tiny/pretrain.yaml]' --out stages.png
    litcpt plot-schedule --recipes+ recipes/tiny/infinite-d1.yaml --recipes+ recipes/tiny/infinite-d2.yaml

Each recipe is one stage (one ``litcpt pretrain`` run), resolved as its LR callback resolves it at ``on_fit_start``
(:mod:`litcpt.training.recipe_stages`).
"""

from __future__ import annotations

from pathlib import Path

from litcpt.training.recipe_stages import Axis, plot_schedule

__all__ = ["cli_positional", "main"]

cli_positional = "recipes"
"""Name of the parameter that bare command-line arguments fill (``litcpt plot-schedule A.yaml B.yaml``)."""


def main(
    recipes: list[Path] | Path,
    out: Path = Path("lr.png"),
    x: Axis = "tokens",
    labels: list[str] | None = None,
    title: str | None = None,
) -> Path:
    """Draw the LR schedule of one or several pretrain recipes (one stage each, one after the other) to a PNG.

    Args:
        recipes: the recipes, in stage order: one path, or a list ``[a.yaml, b.yaml, a.yaml]`` (a recipe may repeat);
            or repeat ``--recipes+ a.yaml --recipes+ b.yaml``. Each is read as ``litcpt pretrain --config`` reads it.
            (``--config`` is this command's own settings file, not a recipe to draw.)
        out: the PNG to write.
        x: x axis: cumulative ``tokens`` or optimizer ``steps``.
        labels: stage names, one per recipe (default: the recipe file names).
        title: chart title (default: the stages and their LR callbacks).

    Returns: the path of the PNG.
    """
    return plot_schedule(recipes=recipes, out=out, x=x, labels=labels, title=title)
