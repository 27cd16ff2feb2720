"""``litcpt report``: the paper-style table and plots of any set of finished litcpt runs.

    litcpt report --runs '[out/d1, out/d2-replay0, out/d2-replay5]' --out_dir out/report
    litcpt report --runs+ out/d1 --runs+ out/d2-replay5 --format json

Reads each run's ``logs/version_*/metrics.csv`` (all versions: resumed runs are merged) and ``config.yaml``
(``initial_checkpoint_dir`` links a continued run to the run it started from, to count tokens cumulatively).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from litcpt.report.files import write_report
from litcpt.report.runs import all_sources, load_runs, markdown_table, table_rows, to_json

__all__ = ["main", "cli_positional"]

cli_positional = "runs"
"""Name of the parameter that bare command-line arguments fill (``litcpt report RUN_DIR ...``)."""


def _parse_titles(titles: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for item in titles or []:
        name, sep, title = item.partition("=")
        if not sep or not name:
            raise ValueError(f"titles: expected NAME=TITLE (e.g. en=D1), got {item!r}")
        out[name] = title
    return out


def main(
    runs: list[Path],
    out_dir: Path = Path("out/report"),
    labels: list[str] | None = None,
    sources: list[str] | None = None,
    titles: list[str] | None = None,
    format: Literal["markdown", "json"] = "markdown",
    chain: bool = True,
) -> dict:
    """Build the continual-pretraining table and plots from finished litcpt runs.

    Args:
        runs: run directories (``out_dir`` of ``litcpt pretrain``), in table order.
        out_dir: where ``report.md``, ``report.json``, ``val_loss.png`` and ``lr.png`` go.
        labels: one table label per run (default: the run dir names).
        sources: validation sources to show, in order (default: every ``val/loss/<name>`` found).
        titles: display names of sources, ``NAME=TITLE`` (e.g. ``en=D1 (en)``).
        format: ``markdown`` prints the table; ``json`` prints the JSON summary (for scripts).
        chain: place continued runs after the run whose ``final/`` they started from (cumulative tokens).

    Returns: the JSON summary.
    """
    if not runs:
        raise ValueError("runs: give at least one run directory")
    loaded = load_runs(runs, labels, chain=chain)
    titles_dict = _parse_titles(titles)
    chosen = list(sources) if sources else all_sources(loaded)
    missing = [s for s in chosen if not any(s in r.val for r in loaded)]
    if missing:
        raise ValueError(f"sources: {missing} not logged by any run (found {all_sources(loaded)})")
    paths = write_report(loaded, out_dir, sources=chosen, titles=titles_dict)
    summary = to_json(loaded, chosen)
    if format == "json":
        print(json.dumps(summary, indent=2))
    else:
        print(markdown_table(table_rows(loaded, chosen), titles_dict))
        print(f"\nreport: {paths['markdown']}")
    return summary
