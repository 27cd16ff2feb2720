"""``litcpt report``'s run (:func:`build_report`): load finished runs, write the report files, print the table (or the
JSON summary)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from litcpt.report.files import write_report
from litcpt.report.runs import all_sources, load_runs, markdown_table, table_rows, to_json

__all__ = ["build_report", "parse_titles"]


def parse_titles(titles: Sequence[str] | None) -> dict[str, str]:
    """``["en=D1 (en)", ...]`` -> ``{"en": "D1 (en)", ...}``; a one-line error for an item without ``NAME=``."""
    out = {}
    for item in titles or []:
        name, sep, title = item.partition("=")
        if not sep or not name:
            raise ValueError(f"titles: expected NAME=TITLE (e.g. en=D1), got {item!r}")
        out[name] = title
    return out


def build_report(
    *,
    runs: list[Path],
    out_dir: Path,
    labels: list[str] | None,
    sources: list[str] | None,
    titles: list[str] | None,
    format: Literal["markdown", "json"],
    chain: bool,
) -> dict:
    """Write ``report.md``, ``report.json``, ``val_loss.png`` and ``lr.png`` of ``runs`` into ``out_dir`` and print the
    Markdown table (``format: markdown``) or the JSON summary.

    The arguments are ``litcpt report``'s (:func:`litcpt.commands.report.main`: its signature holds their defaults,
    its docstring what each means); every one is given, by name.

    Returns: the JSON summary.
    """
    if not runs:
        raise ValueError("runs: give at least one run directory")
    loaded = load_runs(runs, labels, chain=chain)
    titles_dict = parse_titles(titles)
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
