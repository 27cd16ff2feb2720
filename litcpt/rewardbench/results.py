"""Results of a RewardBench-style run: accuracies per subset and section (:class:`Summary`), the terminal table,
``results.json`` in RewardBench's shape, ``scores.jsonl``, the accuracy plot and a wall-clock timer.

Accuracy follows RewardBench's tie rule (:data:`litcpt.rewardbench.REWARDBENCH_TIES`: a tie is wrong) and the
sections of :func:`litcpt.rewardbench.section_scores`; subsets that count towards no section are reported under
"other".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litcpt.rewardbench.engine import PairScore
from litcpt.rewardbench.scoring import REWARDBENCH_TIES, accuracy_by_subset
from litcpt.rewardbench.sections import (
    CORE_SECTIONS,
    OTHER,
    PRIOR_SETS,
    SCORE,
    group_subsets,
    section_scores,
    subset_name_warnings,
)
from litcpt.runtime.atomic import write_json, write_lines

__all__ = ["Summary", "Timer", "format_table", "plot_accuracies", "results_json", "summarize", "write_outputs"]


@dataclass
class Summary:
    """Accuracies of a run.

    Attributes:
        subsets: ``{subset: (accuracy, pairs)}`` (RewardBench ties: a tie is wrong).
        groups: section -> its subsets present, in leaderboard order; ``"other"`` holds subsets of no section.
        sections: :func:`~litcpt.rewardbench.section_scores` of the subsets (``"Score"`` when any section exists).
        section_names: the benchmark's section names, whether scored in this run or not: a subset of that name stays
            out of ``results.json``'s top level (RewardBench v1's four sections and Prior Sets by default).
    """

    subsets: dict[str, tuple[float, int]]
    groups: dict[str, list[str]]
    sections: dict[str, float]
    section_names: tuple[str, ...] = (*CORE_SECTIONS, PRIOR_SETS)

    @property
    def num_pairs(self) -> int:
        return sum(n for _, n in self.subsets.values())

    @property
    def num_scored_pairs(self) -> int:
        """Pairs of the subsets that count towards a section (what the Score is computed from)."""
        return sum(self.subsets[m][1] for group, members in self.groups.items() if group != OTHER for m in members)

    @property
    def accuracy(self) -> float:
        """Accuracy over all pairs (what a single-subset run reports)."""
        return sum(acc * n for acc, n in self.subsets.values()) / max(self.num_pairs, 1)


def summarize(scores: Sequence[PairScore]) -> Summary:
    """Per-subset accuracies, section scores and the section grouping of ``scores``."""
    if not scores:
        raise ValueError("scores: expected at least one scored pair, got none")
    subsets = accuracy_by_subset((s.to_record() for s in scores), ties=REWARDBENCH_TIES, source="scores")
    groups = group_subsets(sorted(subsets))
    sections = section_scores({name: acc for name, (acc, _) in subsets.items()})
    for warning in subset_name_warnings(sorted(subsets)):
        logging.getLogger(__name__).warning("rewardbench: %s", warning)
    return Summary(subsets=subsets, groups=groups, sections=sections)


def format_table(summary: Summary, *, title: str | None = None, unit: str = "pairs") -> str:
    """The terminal table: subsets grouped by section, each section's score, the final score (``unit``: what the
    count column counts, ``prompts`` for RewardBench 2)."""
    other_label = "other (no RewardBench section)"
    width = max([len(s) + 2 for s in summary.subsets] + [len(g) for g in summary.groups] + [len(other_label), 20])
    rule = "-" * (width + 20)
    lines = [title] if title else []
    lines += [f"{'section / subset':<{width}}  {unit:>7}  {'accuracy':>8}", rule]
    for group, members in summary.groups.items():
        count = sum(summary.subsets[m][1] for m in members)
        value = summary.sections.get(group)
        shown = f"{value:8.4f}" if value is not None else f"{'':>8}"
        label = group if group != OTHER else other_label
        lines.append(f"{label:<{width}}  {count:>7}  {shown}")
        for name in members:
            acc, n = summary.subsets[name]
            lines.append(f"  {name:<{width - 2}}  {n:>7}  {acc:8.4f}")
    lines.append(rule)
    if SCORE in summary.sections:
        lines.append(f"{SCORE:<{width}}  {summary.num_scored_pairs:>7}  {summary.sections[SCORE]:8.4f}")
    else:
        lines.append(f"{f'accuracy (all {unit})':<{width}}  {summary.num_pairs:>7}  {summary.accuracy:8.4f}")
    return "\n".join(lines)


def results_json(summary: Summary, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """RewardBench's results shape: model metadata and one top-level ``subset: accuracy`` entry per subset; litcpt's
    extras (sections, pair counts, "other" subsets, run details) under ``"litcpt"``."""
    out: dict[str, Any] = {key: metadata.get(key) for key in ("model", "ref_model", "model_type", "chat_template")}
    # A subset named like a metadata key, a section or "litcpt" stays out of the top level (only under
    # litcpt.subsets), so a section's name at the top level never holds a subset's accuracy.
    reserved = {*out, "litcpt", SCORE, OTHER, *summary.section_names}
    out.update({name: acc for name, (acc, _) in summary.subsets.items() if name not in reserved})
    extras = {k: v for k, v in metadata.items() if k not in out and k not in summary.subsets}
    out["litcpt"] = {"sections": summary.sections, "subsets": {k: acc for k, (acc, _) in summary.subsets.items()},
                     "num_pairs": {k: n for k, (_, n) in summary.subsets.items()},
                     "other_subsets": summary.groups.get(OTHER, []), "tie_rule": REWARDBENCH_TIES, **extras}
    return out


_SECTION_COLORS = {"Chat": "#4C72B0", "Chat Hard": "#DD8452", "Safety": "#55A868", "Reasoning": "#C44E52",
                   PRIOR_SETS: "#8172B3", OTHER: "#937860"}


def plot_accuracies(summary: Summary, path: Path | str, *, title: str = "", xlabel: str | None = None,
                    chance: float = 0.5) -> Path:
    """Horizontal bar chart of per-subset accuracy, coloured by section, with the ``chance`` line (PNG, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for members in summary.groups.values() for name in members]
    section_of = {name: group for group, members in summary.groups.items() for name in members}
    values = [summary.subsets[name][0] for name in names]
    fig, ax = plt.subplots(figsize=(9, 1.4 + 0.32 * len(names)))
    bars = ax.barh(range(len(names)), values, color=[_SECTION_COLORS.get(section_of[n], "#777777") for n in names])
    ax.set_yticks(range(len(names)), labels=[f"{n} ({summary.subsets[n][1]})" for n in names])
    ax.invert_yaxis()
    ax.set_xlim(min(0.0, *values), 1)
    ax.axvline(chance, color="black", linestyle="--", linewidth=0.8)
    ax.set_xlabel(xlabel or "accuracy (chosen scored above rejected; ties count as wrong)")
    for bar, value in zip(bars, values):
        inside = value > 0.15
        ax.text(value - 0.01 if inside else value + 0.01, bar.get_y() + bar.get_height() / 2, f"{value:.3f}",
                va="center", ha="right" if inside else "left", fontsize=8, color="white" if inside else "black")
    handles = [plt.Rectangle((0, 0), 1, 1, color=_SECTION_COLORS.get(g, "#777777")) for g in summary.groups]
    ax.legend(handles, list(summary.groups), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False)
    score = summary.sections.get(SCORE)
    suffix = f" - Score {score:.3f}" if score is not None else f" - accuracy {summary.accuracy:.3f}"
    ax.set_title((title or "RewardBench-style accuracy") + suffix, fontsize=10)
    fig.tight_layout()
    from litcpt.report.plotting import save_figure

    try:
        return save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)


def write_outputs(out_dir: Path | str, scores: Sequence[PairScore], summary: Summary, metadata: Mapping[str, Any],
                  *, plot: bool = False, xlabel: str | None = None, chance: float = 0.5) -> dict[str, Path]:
    """Write ``results.json`` (:func:`results_json`), ``scores.jsonl`` (one :meth:`PairScore.to_record` per line)
    and, with ``plot``, ``accuracy.png``. Returns the paths by kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"results": out_dir / "results.json", "scores": out_dir / "scores.jsonl"}
    write_json(paths["results"], results_json(summary, metadata))
    write_lines(paths["scores"], [json.dumps(s.to_record()) for s in scores])
    if plot:
        paths["plot"] = plot_accuracies(summary, out_dir / "accuracy.png", title=str(metadata.get("model") or ""),
                                        xlabel=xlabel, chance=chance)
    return paths


class Timer:
    """Wall-clock seconds of a block (``with Timer() as t: ...; t.seconds``)."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start

