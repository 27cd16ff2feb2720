"""Plots (PNG via matplotlib's Agg canvas; no pyplot, no global backend switch).

Generic line charts (:func:`plot_curves`) plus learning-rate schedule helpers:
:func:`sample_schedule`, :func:`plot_schedules`, :func:`plot_stages` and
:func:`plot_schedule_comparison`. ``python -m litcpt.report.plotting [outdir]`` regenerates
the figures of ``docs/schedules.md``.

Other plots (e.g. loss curves) can reuse :func:`plot_curves`, which takes any
``{label: (xs, ys)}`` mapping.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from litcpt.runtime.atomic import write_atomic
from litcpt.schedules.formulas import WSD, Infinite, WarmupCosine

__all__ = [
    "Curve",
    "plot_curves",
    "sample_schedule",
    "plot_schedules",
    "stage_curves",
    "plot_stages",
    "plot_schedule_comparison",
    "paper_stage_runs",
    "make_docs_figures",
]

PathLike = Union[str, Path]
Curve = tuple[Sequence[float], Sequence[float]]


def _new_figure(figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    fig = Figure(figsize=figsize, dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save_figure(fig: Figure, path: PathLike, *, dpi: float | None = None) -> Path:
    """Save ``fig`` as PNG atomically (:mod:`litcpt.runtime.atomic`): a figure on disk is always a whole image."""
    return write_atomic(path, lambda fp: fig.savefig(fp, format="png", dpi=dpi))


def _check_curves(curves: Mapping[str, Curve]) -> None:
    if not curves:
        raise ValueError("curves={} must contain at least one (xs, ys) curve")
    for label, curve in curves.items():
        if len(curve) != 2:
            raise ValueError(f"curves[{label!r}] must be an (xs, ys) pair, got {len(curve)} items")
        xs, ys = curve
        if len(xs) != len(ys):
            raise ValueError(f"curves[{label!r}] has len(xs)={len(xs)} != len(ys)={len(ys)}")


def plot_curves(
    curves: Mapping[str, Curve],
    path: PathLike,
    *,
    xlabel: str = "step",
    ylabel: str = "value",
    title: Optional[str] = None,
    logy: bool = False,
    vlines: Sequence[float] = (),
    figsize: tuple[float, float] = (7.0, 3.6),
) -> Path:
    """Draw ``{label: (xs, ys)}`` as lines on one chart and save a PNG to ``path``.

    Args:
        curves: label -> (xs, ys), equal lengths.
        path: output PNG path (parent directories are created).
        xlabel, ylabel, title: axis labels and title.
        logy: log-scale y axis.
        vlines: x positions of dashed vertical guide lines (e.g. stage boundaries).
        figsize: figure size in inches.

    Returns:
        The path written.
    """
    _check_curves(curves)
    fig, ax = _new_figure(figsize)
    for label, (xs, ys) in curves.items():
        ax.plot(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float), label=label, linewidth=1.8)
    for x in vlines:
        ax.axvline(x, color="0.6", linestyle="--", linewidth=0.9)
    if logy:
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False, fontsize="small")
    return save_figure(fig, path)


def sample_schedule(
    schedule: Callable[[float], float], length: Optional[float] = None, *, num: int = 600, start: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate ``schedule`` at ``num`` evenly spaced points of ``[start, start + length]``.

    ``length`` defaults to ``schedule.length`` (the stage length of the
    :mod:`litcpt.schedules.formulas` objects); it must be finite.

    Returns:
        ``(xs, lrs)`` float64 arrays.
    """
    if length is None:
        length = getattr(schedule, "length", None)
    if length is None or not math.isfinite(length) or length <= 0:
        raise ValueError(f"length={length!r} must be a positive finite number (the span to sample)")
    if num < 2:
        raise ValueError(f"num={num!r} must be >= 2")
    xs = np.linspace(start, start + length, num)
    return xs, np.array([schedule(float(x)) for x in xs], dtype=np.float64)


def plot_schedules(
    curves: Mapping[str, Curve],
    path: PathLike,
    *,
    xlabel: str = "step",
    title: Optional[str] = None,
    **kwargs,
) -> Path:
    """Plot learning-rate curves ``{label: (xs, lrs)}`` (see :func:`plot_curves` for ``kwargs``)."""
    return plot_curves(curves, path, xlabel=xlabel, ylabel="learning rate", title=title, **kwargs)


def stage_curves(
    stages: Sequence[tuple[str, float]],
    runs: Mapping[str, Sequence[Callable[[float], float]]],
    *,
    num_per_stage: int = 400,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Sample consecutive stages: ``{label: (xs, lrs)}`` with ``x = offset_i + t`` in stage ``i``.

    Args:
        stages: ``[(stage name, stage length), ...]`` in order; shared by all runs.
        runs: label -> one schedule per stage; stage ``i``'s schedule is evaluated at
            progress ``t`` in ``[0, length_i]`` (each stage restarts its own clock).
    """
    if not stages:
        raise ValueError("stages=[] must list at least one (name, length) stage")
    for name, length in stages:
        if not (isinstance(length, (int, float)) and math.isfinite(length) and length > 0):
            raise ValueError(f"stage {name!r} has length={length!r}; it must be a positive finite number")
    for label, scheds in runs.items():
        if len(scheds) != len(stages):
            raise ValueError(f"runs[{label!r}] has {len(scheds)} schedules for {len(stages)} stages")
    offsets = np.concatenate([[0.0], np.cumsum([length for _, length in stages])])
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label, scheds in runs.items():
        parts = [sample_schedule(sched, length, num=num_per_stage) for (_, length), sched in zip(stages, scheds)]
        curves[label] = (
            np.concatenate([xs + off for (xs, _), off in zip(parts, offsets)]),
            np.concatenate([ys for _, ys in parts]),
        )
    return curves


def plot_stages(
    stages: Sequence[tuple[str, float]],
    runs: Mapping[str, Sequence[Callable[[float], float]]],
    path: PathLike,
    *,
    xlabel: str = "tokens",
    title: Optional[str] = None,
    num_per_stage: int = 400,
    figsize: tuple[float, float] = (8.0, 4.0),
) -> Path:
    """Plot schedules over consecutive stages (e.g. pretraining then continued pretraining).

    Args:
        stages, runs: see :func:`stage_curves`.
        path: output PNG path.
        xlabel, title: axis label and title; stage names are written above the chart.

    Returns:
        The path written.
    """
    curves = stage_curves(stages, runs, num_per_stage=num_per_stage)
    offsets = np.concatenate([[0.0], np.cumsum([length for _, length in stages])])
    fig, ax = _new_figure(figsize)
    for label, (xs, ys) in curves.items():
        ax.plot(xs, ys, label=label, linewidth=1.8)
    for i, (name, _) in enumerate(stages):
        if i % 2:
            ax.axvspan(offsets[i], offsets[i + 1], color="0.93", zorder=0)
        if i:
            ax.axvline(offsets[i], color="0.5", linestyle="--", linewidth=0.9)
        mid = (offsets[i] + offsets[i + 1]) / 2
        ax.text(mid, 1.01, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize="small")
    ax.set_xlim(offsets[0], offsets[-1])
    ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("learning rate")
    if title:
        ax.set_title(title, pad=18)
    ax.grid(True, alpha=0.3)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if curves:
        fig.legend(frameon=False, fontsize="small", loc="outside lower center", ncols=min(len(curves), 3))
    return save_figure(fig, path)


def plot_schedule_comparison(
    path: PathLike,
    *,
    total: float = 100_000,
    max_lr: float = 3e-4,
    min_lr: float = 3e-5,
    const_lr: float = 1.65e-4,
    warmup: float = 0.01,
    cooldown: float = 0.6,
    anneal: float = 0.15,
    wsd_decay: float = 0.2,
    alpha: float = 10.0,
    xlabel: str = "step",
    title: Optional[str] = "Cosine vs infinite vs WSD (one stage)",
) -> Path:
    """One chart: warmup-cosine, infinite (cosine and inv-sqrt cooldowns) and WSD.

    Phase lengths are fractions of ``total``; defaults follow the paper's
    configuration (max 3e-4, min 3e-5, const 1.65e-4, 1% warmup, 60% cooldown,
    15% anneal, alpha 10).
    """
    w, c, a = warmup * total, cooldown * total, anneal * total
    k = total - w - c - a
    scheds = {
        "cosine": WarmupCosine(w, total, max_lr, min_lr),
        "infinite, cosine cooldown": Infinite(w, c, k, a, max_lr, const_lr, min_lr, cooldown_shape="cosine"),
        "infinite, inv-sqrt cooldown": Infinite(w, c, k, a, max_lr, const_lr, min_lr, "inv_sqrt", alpha),
        "WSD (1-sqrt decay)": WSD(w, total, wsd_decay * total, max_lr, min_lr, "1-sqrt"),
    }
    curves = {label: sample_schedule(s, total, num=1000) for label, s in scheds.items()}
    return plot_schedules(curves, path, xlabel=xlabel, title=title)


def paper_stage_runs(
    stage_tokens: float = 300e9, max_lr: float = 3e-4, min_ratio: float = 0.1, const_lr: float = 1.65e-4
) -> tuple[list[tuple[str, float]], dict[str, list[Callable[[float], float]]]]:
    """The paper's setting: pretrain on the Pile, then two continued stages (re-warmed).

    Returns ``(stages, runs)`` for :func:`plot_stages`: cosine re-warmed and re-decayed in
    every stage vs the infinite schedule (inv-sqrt cooldown in stage 1, constant in
    stage 2, constant then exponential anneal in stage 3).
    """
    n = stage_tokens
    min_lr = min_ratio * max_lr
    cos = WarmupCosine(0.01 * n, n, max_lr, min_lr)
    stages = [("pretrain (Pile)", n), ("CPT 1 (SlimPajama)", n), ("CPT 2 (German CC)", n)]
    runs: dict[str, list[Callable[[float], float]]] = {
        "cosine, re-warm + re-decay each stage": [cos, cos, cos],
        "infinite (inv-sqrt cooldown), anneal at the end": [
            Infinite(0.01 * n, 0.6 * n, 0.39 * n, 0, max_lr, const_lr, min_lr, "inv_sqrt"),
            Infinite(0, 0, n, 0, max_lr, const_lr, min_lr),
            Infinite(0, 0, 0.85 * n, 0.15 * n, max_lr, const_lr, min_lr),
        ],
    }
    return stages, runs


def make_docs_figures(outdir: PathLike = "docs/img") -> list[Path]:
    """Write ``schedules-stages.png`` and ``schedules-compare.png`` into ``outdir``."""
    outdir = Path(outdir)
    stages, runs = paper_stage_runs(stage_tokens=300)  # schedules are unit-agnostic: plot in billions of tokens
    return [
        plot_stages(
            stages,
            runs,
            outdir / "schedules-stages.png",
            xlabel="tokens (B)",
            title="Continual pretraining: re-warming cosine vs infinite schedule",
        ),
        plot_schedule_comparison(outdir / "schedules-compare.png"),
    ]


if __name__ == "__main__":  # pragma: no cover
    for p in make_docs_figures(sys.argv[1] if len(sys.argv) > 1 else "docs/img"):
        print(p)
