"""``litcpt report``: the paper-style table and plots of any set of finished litcpt runs.

    litcpt report --runs '[out/d1, out/d2-replay0, out/d2-replay5]' --out_dir out/report
    litcpt report --runs+ out/d1 --runs+ out/d2-replay5 --format json

Reads each run's ``logs/version_*/metrics.csv`` (all versions: resumed runs are merged) and ``config.yaml``
(``initial_checkpoint_dir`` links a continued run to the run it started from, to count tokens cumulatively).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from litcpt.report.build import build_report

__all__ = ["main", "cli_positional"]

cli_positional = "runs"
"""Name of the parameter that bare command-line arguments fill (``litcpt report RUN_DIR ...``)."""


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
    return build_report(
        runs=runs,
        out_dir=out_dir,
        labels=labels,
        sources=sources,
        titles=titles,
        format=format,
        chain=chain,
    )
