"""Writing a report of finished runs to files: ``lr.png``, ``val_loss.png``, ``report.md``, ``report.json`` (what
``litcpt report`` and ``litcpt demo`` write), each atomically."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from litcpt.report.runs import Run, all_sources, markdown_report, to_json
from litcpt.runtime.atomic import write_text

__all__ = ["write_report"]


def write_report(
    runs: Sequence[Run],
    out_dir: Path,
    *,
    sources: Sequence[str] | None = None,
    titles: dict[str, str] | None = None,
    title: str = "Continual pretraining report",
    intro: str | None = None,
) -> dict[str, Path]:
    """Write ``lr.png``, ``val_loss.png``, ``report.md`` and ``report.json`` into ``out_dir``; returns their paths."""
    from litcpt.report.plots import write_plots

    out_dir = Path(out_dir)
    sources = list(sources) if sources is not None else all_sources(runs)
    plots = write_plots(runs, out_dir, sources, titles=titles)
    images = {"Validation loss per source over cumulative tokens": plots["val_loss"].name,
              "Learning rate over cumulative tokens": plots["lr"].name}
    text = markdown_report(runs, images, title=title, intro=intro, sources=sources, titles=titles)
    paths = dict(plots)
    paths["markdown"] = write_text(out_dir / "report.md", text)
    paths["json"] = write_text(out_dir / "report.json", json.dumps(to_json(runs, sources), indent=2) + "\n")
    return paths
