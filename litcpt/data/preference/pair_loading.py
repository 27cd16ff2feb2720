"""Preference pairs from any source (:func:`load_preference_pairs`, with a :class:`LoadReport`), the bundled
HH-RLHF file, and the deterministic train/test split (:func:`split_pairs`)."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from litgpt.prompts import PromptStyle

from litcpt.data.preference.chat import resolve_prompt_style
from litcpt.data.preference.pair_rows import FORMATS, PreferencePair, RowFormat, parse_row
from litcpt.data.rows import BadRow, check_choice, read_source_rows
from litcpt.data.textio import DEFAULT_ENCODING, check_encoding

__all__ = ["BadRowPolicy", "LoadReport", "bundled_preference_file", "load_preference_pairs",
           "load_preference_pairs_with_report", "split_pairs"]

logger = logging.getLogger("litcpt.data.preference.datamodule")

BadRowPolicy = Literal["error", "skip"]


@dataclass
class LoadReport:
    """What :func:`load_preference_pairs_with_report` read and skipped."""

    source: str
    rows: int = 0
    """Rows seen (blank lines in ``.jsonl`` files are not rows)."""
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    """Count of skipped rows per reason in :data:`BAD_ROW_REASONS` (``on_bad_row="skip"``)."""
    formats: dict[str, int] = field(default_factory=dict)
    """Count of kept rows per detected format ("prompt", "hh", "chat")."""
    blank_responses: int = 0
    """Kept pairs with a whitespace-only response (e.g. a silent refusal in HH-RLHF)."""

    def summary(self) -> str:
        """One human-readable line."""
        skipped = sum(self.skipped.values())
        parts = [f"{self.source}: {self.rows} rows, {self.kept} pairs kept"]
        if skipped:
            detail = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items()))
            parts.append(f"{skipped} skipped ({detail})")
        if self.formats:
            parts.append("formats " + ", ".join(f"{k}={v}" for k, v in sorted(self.formats.items())))
        if self.blank_responses:
            parts.append(f"{self.blank_responses} with a blank response")
        return "; ".join(parts)


def load_preference_pairs_with_report(
    source: Any,
    *,
    format: RowFormat = "auto",
    on_bad_row: BadRowPolicy = "error",
    split: str | None = None,
    prompt_style: str | PromptStyle | None = None,
    encoding: str = DEFAULT_ENCODING,
) -> tuple[list[PreferencePair], LoadReport]:
    """Like :func:`load_preference_pairs`, also returning a :class:`LoadReport`."""
    check_choice("format", format, FORMATS)
    check_choice("on_bad_row", on_bad_row, ("error", "skip"))
    style = resolve_prompt_style(prompt_style)
    label, rows = read_source_rows(source, split, check_encoding(encoding))
    report = LoadReport(source=label)
    skipped: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    pairs: list[PreferencePair] = []
    for location, row in rows:
        report.rows += 1
        try:
            if isinstance(row, BadRow):
                raise row
            pair, kind = parse_row(row, format, style)
        except BadRow as bad:
            if on_bad_row == "error":
                where = f": field '{bad.field_name}'" if bad.field_name else ""
                raise ValueError(f"{label}: {location}{where}: {bad.message}") from None
            skipped[bad.reason] += 1
            continue
        formats[kind] += 1
        if not pair.chosen.strip() or not pair.rejected.strip():
            report.blank_responses += 1
        pairs.append(pair)
    report.kept = len(pairs)
    report.skipped = dict(skipped)
    report.formats = dict(formats)
    if skipped:
        logger.warning("skipped bad preference rows: %s", report.summary())
    return pairs, report


def load_preference_pairs(
    source: Any,
    *,
    format: RowFormat = "auto",
    on_bad_row: BadRowPolicy = "error",
    split: str | None = None,
    prompt_style: str | PromptStyle | None = None,
    encoding: str = DEFAULT_ENCODING,
) -> list[PreferencePair]:
    """Read preference pairs from ``source``.

    Args:
        source: a ``.jsonl``/``.jsonl.gz``/``.json``/``.json.gz``/``.parquet`` file, a
            ``save_to_disk`` directory, a ``datasets`` Dataset or DatasetDict, a list of row
            dicts, or a hub dataset name (``datasets.load_dataset(name, split=split or
            "train")``; only works where that dataset is cached or downloadable).
        format: ``"auto"`` (detect per row, see :func:`detect_format`), ``"prompt"``,
            ``"hh"`` or ``"chat"``.
        on_bad_row: ``"error"`` raises a one-line :class:`ValueError` naming the source,
            the row (``line N`` for JSON lines, ``row N`` otherwise, 1-based) and the field;
            ``"skip"`` drops bad rows, counts them per reason (see
            :func:`load_preference_pairs_with_report`) and logs a warning.
        split: split of a DatasetDict, a ``save_to_disk`` dict directory or a hub dataset.
        prompt_style: litgpt prompt style (name or instance) for ``"chat"`` rows; ``None``
            uses the default Human/Assistant template (see :func:`render_chat_pair`).
            Not applied to ``"prompt"`` or ``"hh"`` rows, which are used verbatim.
        encoding: text encoding of ``.jsonl``/``.json`` files (see :mod:`litcpt.data.textio`): a byte that does
            not decode is a one-line error naming the file and line; a UTF-8 byte-order mark is dropped.

    A response that is the empty string is a bad row; whitespace-only responses are kept
    (HH-RLHF has silent refusals) and counted in :attr:`LoadReport.blank_responses`.
    """
    return load_preference_pairs_with_report(
        source, format=format, on_bad_row=on_bad_row, split=split, prompt_style=prompt_style, encoding=encoding
    )[0]


def bundled_preference_file() -> Path:
    """Path of the bundled 2000 HH-RLHF harmless-base pairs (``.jsonl.gz``)."""
    try:
        from litcpt.assets import preference_file
    except ImportError:  # assets package not present: fall back to the conventional path
        assets = Path(__file__).resolve().parents[1] / "assets"
        return assets / "data" / "preference" / "hh-rlhf-harmless-base.jsonl.gz"
    return Path(preference_file())


# Split


def _pair_rank(pair: PreferencePair, seed: int) -> bytes:
    text = "\x00".join((str(seed), pair.prompt, pair.chosen, pair.rejected))
    return hashlib.sha256(text.encode("utf-8")).digest()


def split_pairs(
    pairs: Sequence[PreferencePair], test_fraction: float, seed: int = 42
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Deterministically split ``pairs`` into ``(train, test)``.

    Every pair is ranked by ``sha256(f"{seed}\\0{prompt}\\0{chosen}\\0{rejected}")``; the
    ``round(len(pairs) * test_fraction)`` lowest ranks form the test set (at least one pair
    when ``test_fraction > 0`` and there are two or more pairs; at least one pair is left
    for training). Both outputs keep the input order. The result depends only on the
    pairs' contents and ``seed``: it is stable across runs, platforms, Python versions and
    row order.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    n = len(pairs)
    n_test = round(n * test_fraction)
    if test_fraction > 0 and n >= 2:
        n_test = min(max(n_test, 1), n - 1)
    order = sorted(range(n), key=lambda i: (_pair_rank(pairs[i], seed), i))
    test_ids = set(order[:n_test])
    train = [p for i, p in enumerate(pairs) if i not in test_ids]
    test = [p for i, p in enumerate(pairs) if i in test_ids]
    return train, test
