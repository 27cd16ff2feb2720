"""Read finished litcpt runs and turn their metrics into the paper-style table (pure: no plotting, no printing).

A *run* is an ``out_dir`` of ``litcpt pretrain`` (or ``litcpt demo``): ``logs/version_*/metrics.csv`` (one version per
run or resume) and, optionally, ``config.yaml`` (the resolved recipe). From the metrics this module extracts

* the validation loss per source (``val/loss/<name>``) over the run's tokens, and its final value;
* the learning rate (``lr``, else ``lr-AdamW``) over tokens;
* the run's training tokens (the most of ``train/tokens`` and ``val/tokens``).

Chaining: when ``config.yaml`` names an ``initial_checkpoint_dir`` that is the ``final/`` (or ``step-*/``) dir of
another run with logs, that run is the *parent*: its tokens (and its own parent's) are the ``tokens_before`` of the
child, so a D2 continuation is placed after D1 on a cumulative-token axis and its "tokens spent" are D1 + D2.

Resumed runs: versions are read oldest first; points that an older version logged at or after the first step of a
newer version are dropped (the newer version re-did those steps after resuming).

Files are written by :mod:`litcpt.report.files` and figures drawn by :mod:`litcpt.report.plots`; this module only
reads runs and builds the table (as rows, Markdown text or a JSON-ready dict).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "Run",
    "TableRow",
    "load_run",
    "load_runs",
    "read_rows",
    "table_rows",
    "to_json",
    "markdown_table",
    "markdown_changes",
    "format_tokens",
]

VAL_PREFIX = "val/loss/"
Point = tuple[float, float]


def _version_number(path: Path) -> int:
    try:
        return int(path.parent.name.split("_", 1)[1])
    except (IndexError, ValueError):
        return -1


def metrics_files(run_dir: Path) -> list[Path]:
    """``logs/version_*/metrics.csv`` of a run, oldest version first."""
    return sorted(Path(run_dir).glob("logs/version_*/metrics.csv"), key=_version_number)


def _to_float(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def _step(row: Mapping[str, str]) -> int | None:
    value = _to_float(row.get("step"))
    return None if value is None else int(value)


def read_rows(run_dir: Path) -> tuple[list[dict[str, str]], int]:
    """All metric rows of a run over its logger versions (resume-aware), and the number of versions.

    Each row gets a ``"_version"`` key (index of its version, oldest 0).

    Raises:
        FileNotFoundError: the run has no ``logs/version_*/metrics.csv``.
    """
    files = metrics_files(run_dir)
    if not files:
        raise FileNotFoundError(f"run {str(run_dir)!r} has no logs/version_*/metrics.csv (not a finished litcpt run?)")
    rows: list[dict[str, str]] = []
    for version, path in enumerate(files):
        with open(path, newline="") as fp:
            new = [{**r, "_version": str(version)} for r in csv.DictReader(fp) if _step(r) is not None]
        if not new:
            continue
        first = min(_step(r) for r in new)  # type: ignore[type-var]
        rows = [r for r in rows if _step(r) < first]  # type: ignore[operator]
        rows.extend(new)
    return rows, len(files)


@dataclass
class Run:
    """The metrics of one run, with x values in *run-local* tokens (add ``tokens_before`` for cumulative)."""

    run_dir: Path
    label: str
    versions: int
    tokens: float
    """Training tokens of this run: the most of ``train/tokens`` and ``val/tokens`` (tokens trained when validation
    ran: the final validation's are the run's, even when ``train/tokens`` was logged only every few steps);
    ``steps x tokens_per_step`` if neither was logged."""
    steps: int
    tokens_per_step: float | None
    val: dict[str, list[Point]]
    """source name -> [(run-local tokens, loss)], sorted by tokens."""
    lr: list[Point]
    """[(run-local tokens at the start of the step, learning rate)]."""
    train_time_s: float | None = None
    """Training wall time reported by the throughput monitor (summed over versions), if logged."""
    parent: Path | None = None
    """Run dir of the run whose checkpoint started this one (``config.yaml: initial_checkpoint_dir``)."""
    initial_checkpoint_dir: str | None = None
    tokens_before: float = 0.0
    """Tokens of the parent chain (D1 tokens for a D2 continuation)."""
    parent_final: dict[str, float] = field(default_factory=dict)
    """The parent's final loss per source (the "before" point), if the parent was found."""

    @property
    def sources(self) -> list[str]:
        return list(self.val)

    @property
    def tokens_total(self) -> float:
        """Tokens spent, this run and its parent chain (the paper's compute column)."""
        return self.tokens_before + self.tokens

    def final(self, source: str) -> float | None:
        """Last validation loss on ``source`` (``None`` if never validated on it)."""
        points = self.val.get(source)
        return points[-1][1] if points else None

    def initial(self, source: str) -> float | None:
        """First validation loss on ``source`` (before training if ``eval.initial_validation``)."""
        points = self.val.get(source)
        return points[0][1] if points else None


def _tokens_per_step(rows: Sequence[Mapping[str, str]]) -> float | None:
    for row in reversed(rows):
        tokens, step = _to_float(row.get("train/tokens")), _step(row)
        if tokens is not None and step is not None:
            return tokens / (step + 1)
    for row in reversed(rows):
        tokens, step = _to_float(row.get("val/tokens")), _step(row)
        if tokens and step:
            return tokens / (step + 1)
    return None


def _sorted_unique(points: list[Point]) -> list[Point]:
    """Sort by x; for repeated x keep the last value logged."""
    merged: dict[float, float] = {}
    for x, y in points:
        merged[x] = y
    return sorted(merged.items())


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def parent_run_dir(initial_checkpoint_dir: str | Path | None, base: Path | None = None) -> Path | None:
    """The run dir owning a LitGPT checkpoint dir ``<run>/final`` or ``<run>/step-*`` (if it has logs)."""
    if not initial_checkpoint_dir:
        return None
    ckpt = Path(initial_checkpoint_dir)
    candidates = [ckpt] if ckpt.is_absolute() or base is None else [ckpt, base / ckpt]
    for path in candidates:
        if path.name == "final" or path.name.startswith("step-"):
            if metrics_files(path.parent):
                return path.parent.resolve()
    return None


def load_run(run_dir: str | Path, label: str | None = None) -> Run:
    """Read one run (all its versions). ``label`` defaults to the run dir's name."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run dir {str(run_dir)!r} does not exist")
    rows, versions = read_rows(run_dir)
    tps = _tokens_per_step(rows)
    val: dict[str, list[Point]] = {}
    lr: list[Point] = []  # the schedule callback's "lr"
    lr_monitor: list[Point] = []  # LearningRateMonitor's "lr-AdamW" (fallback)
    tokens = 0.0
    steps = 0
    times: dict[int, float] = {}
    for row in rows:
        step = _step(row)
        assert step is not None
        version_of_row = int(row.get("_version") or 0)  # the throughput clock restarts with each version
        train_tokens = _to_float(row.get("train/tokens"))
        if train_tokens is not None:
            tokens = max(tokens, train_tokens)
            steps = max(steps, step + 1)
        val_tokens = _to_float(row.get("val/tokens"))
        if val_tokens is not None and val_tokens > tokens:  # tokens trained before that validation
            tokens = val_tokens
            steps = max(steps, round(val_tokens / tps) if tps else step + 1)
        elapsed = _to_float(row.get("train/time"))
        if elapsed is not None:
            times[version_of_row] = max(times.get(version_of_row, 0.0), elapsed)
        x_step = step * tps if tps else float(step)
        for key, target in (("lr", lr), ("lr-AdamW", lr_monitor)):
            rate = _to_float(row.get(key))
            if rate is not None:
                target.append((x_step, rate))
        losses = {k[len(VAL_PREFIX):]: _to_float(v) for k, v in row.items() if k.startswith(VAL_PREFIX)}
        losses = {k: v for k, v in losses.items() if v is not None}
        if not losses and _to_float(row.get("val/loss")) is not None:
            losses = {"val": _to_float(row.get("val/loss"))}  # type: ignore[dict-item]
        if losses:
            x = _to_float(row.get("val/tokens"))
            if x is None:
                x = step * tps if tps else float(step)
            for name, loss in losses.items():
                val.setdefault(name, []).append((x, loss))
    if not tokens and tps:
        tokens = steps * tps
    config = _read_config(run_dir)
    init = config.get("initial_checkpoint_dir")
    return Run(
        run_dir=run_dir.resolve(),
        label=label or run_dir.name,
        versions=versions,
        tokens=tokens,
        steps=steps,
        tokens_per_step=tps,
        val={k: _sorted_unique(v) for k, v in val.items()},
        lr=_sorted_unique(lr or lr_monitor),
        train_time_s=sum(times.values()) if times else None,
        parent=parent_run_dir(init),
        initial_checkpoint_dir=str(init) if init else None,
    )


def load_runs(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None, *, chain: bool = True) -> list[Run]:
    """Read several runs; with ``chain``, fill ``tokens_before``/``parent_final`` from their parent runs.

    Parents need not be in ``run_dirs`` (they are read from disk when found); cycles are an error.
    """
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"labels: got {len(labels)} labels for {len(run_dirs)} runs")
    runs = [load_run(d, None if labels is None else labels[i]) for i, d in enumerate(run_dirs)]
    if not chain:
        return runs
    cache: dict[Path, Run] = {r.run_dir: r for r in runs}

    def offset(run: Run, seen: tuple[Path, ...]) -> float:
        if run.parent is None:
            return 0.0
        if run.parent in seen:
            raise ValueError(f"runs: checkpoint cycle through {str(run.parent)!r}")
        parent = cache.get(run.parent)
        if parent is None:
            parent = cache[run.parent] = load_run(run.parent)
        parent.tokens_before = offset(parent, (*seen, run.run_dir))
        run.parent_final = {s: v for s in parent.sources if (v := parent.final(s)) is not None}
        return parent.tokens_before + parent.tokens

    for run in runs:
        run.tokens_before = offset(run, (run.run_dir,))
    return runs


def all_sources(runs: Sequence[Run]) -> list[str]:
    """Validation source names over all runs, in first-seen order."""
    names: list[str] = []
    for run in runs:
        names += [s for s in run.sources if s not in names]
    return names


@dataclass
class TableRow:
    """One line of the paper-style table."""

    label: str
    tokens: float
    """Tokens spent, parent chain included."""
    final: dict[str, float | None]
    average: float | None
    """Mean of ``final`` over the table's sources (``None`` if one is missing)."""
    change: dict[str, float | None]
    """Final minus the parent's final, per source (forgetting when positive); ``None`` without a parent."""


def table_rows(runs: Sequence[Run], sources: Sequence[str] | None = None) -> list[TableRow]:
    """The table: per run, final val loss per source, their average, and tokens spent."""
    sources = list(sources) if sources is not None else all_sources(runs)
    rows = []
    for run in runs:
        final = {s: run.final(s) for s in sources}
        values = [v for v in final.values() if v is not None]
        average = sum(values) / len(values) if values and len(values) == len(final) else None
        change = {
            s: (final[s] - run.parent_final[s]) if final[s] is not None and s in run.parent_final else None
            for s in sources
        }
        rows.append(TableRow(run.label, run.tokens_total, final, average, change))
    return rows


def to_json(runs: Sequence[Run], sources: Sequence[str] | None = None) -> dict[str, Any]:
    """A JSON-ready summary: ``{"sources": [...], "runs": [{label, run_dir, tokens, final, average, ...}]}``."""
    sources = list(sources) if sources is not None else all_sources(runs)
    out = []
    for run, row in zip(runs, table_rows(runs, sources)):
        out.append({
            "label": run.label,
            "run_dir": str(run.run_dir),
            "parent": str(run.parent) if run.parent else None,
            "initial_checkpoint_dir": run.initial_checkpoint_dir,
            "versions": run.versions,
            "steps": run.steps,
            "tokens": run.tokens,
            "tokens_before": run.tokens_before,
            "tokens_total": run.tokens_total,
            "final": row.final,
            "average": row.average,
            "initial": {s: run.initial(s) for s in sources},
            "parent_final": {s: run.parent_final.get(s) for s in sources},
            "change": row.change,
            "train_time_s": run.train_time_s,
        })
    return {"sources": sources, "runs": out}


def format_tokens(n: float) -> str:
    """``1234567`` -> ``1.23M``."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def markdown_table(rows: Sequence[TableRow], titles: Mapping[str, str] | None = None) -> str:
    """Rows as a Markdown table: run | tokens | loss per source | average (best per column in bold)."""
    if not rows:
        raise ValueError("markdown_table: no rows")
    sources = list(rows[0].final)
    titles = dict(titles or {})
    head = ["run", "tokens"] + [f"val loss {titles.get(s, s)}" for s in sources] + ["avg"]
    columns = {s: [r.final[s] for r in rows] for s in sources}
    columns["avg"] = [r.average for r in rows]
    best = {k: min((v for v in vals if v is not None), default=None) for k, vals in columns.items()}

    def cell(key: str, value: float | None) -> str:
        text = _cell(value)
        return f"**{text}**" if value is not None and value == best[key] and len(rows) > 1 else text

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        cells = [r.label, format_tokens(r.tokens)] + [cell(s, r.final[s]) for s in sources] + [cell("avg", r.average)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_changes(rows: Sequence[TableRow], titles: Mapping[str, str] | None = None) -> str | None:
    """For runs that continue another run: change of each source's loss over the run (``None`` if no such run)."""
    chained = [r for r in rows if any(v is not None for v in r.change.values())]
    if not chained:
        return None
    sources = list(rows[0].final)
    titles = dict(titles or {})
    head = ["run"] + [f"Δ {titles.get(s, s)}" for s in sources]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(sources)) + "|"]
    for r in chained:
        lines.append("| " + " | ".join([r.label] + [_cell(r.change[s], signed=True) for s in sources]) + " |")
    return "\n".join(lines)


def markdown_report(
    runs: Sequence[Run],
    images: Mapping[str, str],
    *,
    title: str = "Continual pretraining report",
    intro: str | None = None,
    sources: Sequence[str] | None = None,
    titles: Mapping[str, str] | None = None,
) -> str:
    """A Markdown report: the table, the per-run change table, the images (``{caption: relative path}``), run list."""
    rows = table_rows(runs, sources)
    parts = [f"# {title}", ""]
    if intro:
        parts += [intro.strip(), ""]
    parts += ["Final validation loss per source (lower is better; best in bold), their average, and tokens spent "
              "(a continued run counts its parent's tokens too).", "", markdown_table(rows, titles), ""]
    changes = markdown_changes(rows, titles)
    if changes:
        parts += ["Change of the validation loss over each continued run (final minus the parent's final; "
                  "positive on old data = forgetting):", "", changes, ""]
    for caption, rel in images.items():
        parts += [f"![{caption}]({rel})", ""]
    parts += ["Runs:", ""]
    for run in runs:
        extra = f", continues `{run.parent.name}` after {format_tokens(run.tokens_before)} tokens" if run.parent else ""
        resumed = f", {run.versions} logger versions (resumed)" if run.versions > 1 else ""
        parts.append(f"- **{run.label}**: `{run.run_dir}`, {run.steps} steps, {format_tokens(run.tokens)} tokens"
                     f"{extra}{resumed}")
    return "\n".join(parts) + "\n"
