"""Plots of finished runs over cumulative tokens: learning rate, and validation loss per source (PNG, Agg canvas).

Input is :class:`litcpt.report.runs.Run` objects (``litcpt.report.runs.load_runs``). Continued runs are drawn after
their
parent on the token axis (``tokens_before``), so forgetting shows as a D1 curve bending up where D2 starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from litcpt.report.plotting import save_figure
from litcpt.report.runs import Run, all_sources

__all__ = ["plot_lr", "plot_val_loss", "write_plots", "run_colors"]

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
            "#7f7f7f"]


def run_colors(runs: Sequence[Run]) -> dict[str, str]:
    """A stable colour per run label (the same in every figure)."""
    return {run.label: _PALETTE[i % len(_PALETTE)] for i, run in enumerate(runs)}


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _boundaries(runs: Sequence[Run]) -> list[float]:
    """Cumulative-token positions where a continued run starts (stage boundaries)."""
    return sorted({r.tokens_before for r in runs if r.tokens_before > 0})


def _scale(runs: Sequence[Run]) -> tuple[float, str]:
    top = max((r.tokens_total for r in runs), default=0.0)
    if top >= 1e9:
        return 1e9, "B"
    if top >= 1e6:
        return 1e6, "M"
    if top >= 1e3:
        return 1e3, "K"
    return 1.0, ""


def plot_lr(runs: Sequence[Run], path: str | Path, *, title: str | None = "Learning rate") -> Path:
    """The learning rate of every run over cumulative tokens (one line per run)."""
    if not runs:
        raise ValueError("plot_lr: no runs")
    fig, (ax,) = _figure(9.0, 3.6)
    colors = run_colors(runs)
    scale, unit = _scale(runs)
    styles = ["-", "--", "-.", ":"]  # runs with the same schedule (e.g. a replay sweep) overlap exactly
    for i, run in enumerate(runs):
        if run.lr:
            xs = [(run.tokens_before + x) / scale for x, _ in run.lr]
            ax.plot(xs, [y for _, y in run.lr], label=run.label, color=colors[run.label], linewidth=1.6,
                    linestyle=styles[i % len(styles)])
    for x in _boundaries(runs):
        ax.axvline(x / scale, color="0.6", linestyle="--", linewidth=0.9)
    ax.set_xlabel(f"tokens ({unit})" if unit else "tokens")
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    fig.legend(loc="outside right center", frameon=False, fontsize="small")
    return save_figure(fig, path)


def plot_val_loss(
    runs: Sequence[Run],
    path: str | Path,
    sources: Sequence[str] | None = None,
    *,
    titles: Mapping[str, str] | None = None,
    clip_init: bool = True,
) -> Path:
    """Validation loss per source (one panel each) over cumulative tokens, one line per run.

    Continued runs start at their parent's end (dashed guide lines), so the panel of the old data shows forgetting
    and how much of it replay prevents. ``clip_init`` leaves the random-init point of from-scratch runs (~ln(vocab))
    out of the y range, which would flatten every other curve.
    """
    if not runs:
        raise ValueError("plot_val_loss: no runs")
    sources = list(sources) if sources is not None else all_sources(runs)
    if not sources:
        raise ValueError("plot_val_loss: the runs logged no val/loss/<source> metric")
    titles = dict(titles or {})
    fig, axes = _figure(5.2 * len(sources), 3.9, ncols=len(sources))
    colors = run_colors(runs)
    scale, unit = _scale(runs)
    for ax, source in zip(axes, sources):
        ys_all: list[float] = []
        for run in runs:
            points = run.val.get(source)
            if not points:
                continue
            xs = [(run.tokens_before + x) / scale for x, _ in points]
            ys = [y for _, y in points]
            ax.plot(xs, ys, label=run.label, color=colors[run.label], linewidth=1.6, marker="o", markersize=2.5)
            fresh = run.parent is None and run.tokens_before == 0 and points[0][0] == 0 and len(ys) > 1
            ys_all += ys[1:] if fresh else ys  # a random-init point (~ln vocab) would flatten the curves
        for x in _boundaries(runs):
            ax.axvline(x / scale, color="0.6", linestyle="--", linewidth=0.9)
        if clip_init and ys_all:
            low, high = min(ys_all), max(ys_all)
            pad = 0.05 * max(high - low, 1e-3)
            ax.set_ylim(low - pad, high + pad)
        ax.set_title(f"validation loss: {titles.get(source, source)}")
        ax.set_xlabel(f"cumulative tokens ({unit})" if unit else "cumulative tokens")
        ax.set_ylabel("loss")
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside right center", frameon=False, fontsize="small")
    return save_figure(fig, path)


def write_plots(runs: Sequence[Run], out_dir: str | Path, sources: Sequence[str] | None = None, *,
                titles: Mapping[str, str] | None = None) -> dict[str, Path]:
    """``lr.png`` and ``val_loss.png`` into ``out_dir``; returns ``{"lr": path, "val_loss": path}``."""
    out_dir = Path(out_dir)
    return {
        "lr": plot_lr(runs, out_dir / "lr.png"),
        "val_loss": plot_val_loss(runs, out_dir / "val_loss.png", sources, titles=titles),
    }
