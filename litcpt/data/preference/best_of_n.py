"""Best-of-N rows: one prompt, several completions of which the first ``num_correct`` are correct (RewardBench 2).

Row layout (``allenai/reward-bench-2``, split ``test``): ``prompt`` (string), ``chosen`` (list of strings: the
correct completions), ``rejected`` (list of strings), ``num_correct`` (optional; its only value: ``len(chosen)``),
``subset``, ``id`` and, optionally, ``num_incorrect`` and ``total_completions`` (checked against the lists, see
:func:`parse_best_of_n_row`). A string instead of a list is one completion.

Pipeline, like :mod:`litcpt.data.preference.datamodule` for pairs: :func:`load_best_of_n_rows` (any source that module
reads:
``.jsonl``/``.json``/``.parquet``, a ``save_to_disk`` dir, a hub name) -> :func:`tokenize_groups` ->
:func:`collate_groups`, a right-padded batch of all completions of several prompts with ``group``/``shared`` for
prompt sharing (:mod:`litcpt.models.row_scores`).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["BestOfNRow", "TokenizedGroup", "collate_groups", "group_shared_lengths", "load_best_of_n_rows",
           "parse_best_of_n_row", "replace_prompts", "tokenize_groups"]


@dataclass(frozen=True)
class BestOfNRow:
    """One prompt and its completions; ``completions[:num_correct]`` are the correct ones (``chosen``)."""

    prompt: str
    completions: tuple[str, ...]
    num_correct: int
    subset: str | None = None
    id: str | None = None


@dataclass(frozen=True, eq=False)
class TokenizedGroup:
    """A tokenised :class:`BestOfNRow`: ``rows[k]`` = prompt + completion ``k`` tokens, the first
    ``prompt_lengths[k]`` of them the prompt."""

    index: int
    rows: tuple[Tensor, ...]
    prompt_lengths: tuple[int, ...]
    num_correct: int
    subset: str | None = None
    id: str | None = None

    @property
    def length(self) -> int:
        """Longest row (the batching key)."""
        return max(len(r) for r in self.rows)


def _texts(row: Mapping[str, Any], name: str) -> list[str]:
    value = row.get(name)
    if value is None:
        raise ValueError(f"field '{name}': missing (or null)")
    if isinstance(value, str):
        return [value]
    if hasattr(value, "tolist") and not isinstance(value, list):
        value = value.tolist()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"field '{name}': expected a list of strings, got {type(value).__name__}")
    for i, text in enumerate(value):
        if text == "":
            raise ValueError(f"field '{name}[{i}]': the completion is empty")
    return list(value)


def _check_counts(row: Mapping[str, Any], chosen: int, rejected: int) -> None:
    """``num_correct``, ``num_incorrect`` and ``total_completions`` (each optional) against the lists.

    The official rule (allenai/reward-bench at 05a9005, ``rewardbench/utils.py``, used by ``scripts/run_v2.py``):
    ``load_bon_dataset_v2`` unrolls ``chosen + rejected`` in that order, ``reroll_and_score_dataset`` regroups them
    ``total_completions`` at a time and counts ``scores[0]`` alone as the correct one (every subset but Ties), and
    ``process_single_model`` (Ties) counts completion ``i`` correct iff ``i < num_correct``. ``num_correct`` is read
    by position only, so it means what the dataset says (``allenai/reward-bench-2``: ``num_correct``,
    ``num_incorrect``, ``total_completions`` count ``chosen``, ``rejected``, both) only when it is ``len(chosen)``;
    another value would count rejected completions as correct (or chosen ones as incorrect), and is refused.
    """
    for field, want, holds, expr in (("num_correct", chosen, "'chosen' holds", "len(chosen)"),
                                     ("num_incorrect", rejected, "'rejected' holds", "len(rejected)"),
                                     ("total_completions", chosen + rejected, "chosen + rejected hold",
                                      "len(chosen) + len(rejected)")):
        value = row.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"field {field!r}: expected an integer ({expr} = {want}), got {value!r}")
        if value != want:
            raise ValueError(f"field {field!r}: {value} but {holds} {want} completion(s): expected {field} == {expr} "
                             "(RewardBench 2: the first num_correct of chosen + rejected are the correct ones)")


def parse_best_of_n_row(row: Any) -> BestOfNRow:
    """One row -> :class:`BestOfNRow`; a bad row raises ``ValueError("field 'X': <what was expected>")``."""
    if not isinstance(row, Mapping):
        raise ValueError(f"expected an object with prompt/chosen/rejected, got {type(row).__name__}")
    prompt = row.get("prompt")
    if not isinstance(prompt, str):
        raise ValueError(f"field 'prompt': expected a string, got {type(prompt).__name__}")
    chosen, rejected = _texts(row, "chosen"), _texts(row, "rejected")
    if not chosen:
        raise ValueError("field 'chosen': expected at least one completion (the correct ones), got an empty list")
    completions = chosen + rejected
    _check_counts(row, len(chosen), len(rejected))
    if len(completions) < 2:
        raise ValueError("fields 'chosen'/'rejected': expected at least two completions in all")
    subset = row.get("subset")
    if subset is not None and not isinstance(subset, str):
        raise ValueError(f"field 'subset': expected a string, got {type(subset).__name__}")
    id_ = row.get("id")
    if id_ is not None and (isinstance(id_, bool) or not isinstance(id_, (str, numbers.Integral))):
        raise ValueError(f"field 'id': expected a string or integer, got {type(id_).__name__}")
    return BestOfNRow(prompt, tuple(completions), len(chosen), subset, None if id_ is None else str(id_))


def load_best_of_n_rows(source: Any, *, split: str | None = None, encoding: str = "utf-8") -> list[BestOfNRow]:
    """Every row of ``source`` (any source :func:`litcpt.data.rows.read_source_rows` reads, as for preference pairs),
    with a one-line error naming the source, the line/row and the field of the first bad row."""
    from litcpt.data.rows import read_source_rows
    from litcpt.data.textio import check_encoding

    label, rows = read_source_rows(source, split, check_encoding(encoding))
    out = []
    for location, row in rows:
        if isinstance(row, Exception):
            raise ValueError(f"{label}: {location}: {getattr(row, 'message', row)}")
        try:
            out.append(parse_best_of_n_row(row))
        except ValueError as err:
            raise ValueError(f"{label}: {location}: {err}") from None
    return out


def tokenize_groups(rows: Sequence[BestOfNRow], tokenizer: Any, *,
                    max_length: int | None = None) -> tuple[list[TokenizedGroup], int]:
    """litcpt's convention (as :func:`~litcpt.data.preference.pair_tokens.tokenize_pairs` with ``truncation="left"``):
    the
    prompt with BOS as the tokenizer wants it, each completion encoded separately with EOS; when the prompt plus the
    longest completion exceed ``max_length``, the prompt loses its start (after BOS) for all completions alike, and a
    completion still too long loses its end. Returns the groups and how many were truncated."""
    from litcpt.data.preference.pair_tokens import encode_group, fit_group, was_truncated

    out, truncated = [], 0
    for index, row in enumerate(rows):
        prompt, keep_first, answers = encode_group(tokenizer, row.prompt, row.completions)
        fitted = fit_group(prompt, answers, max_length, "left", keep_first)
        truncated += was_truncated(prompt, answers, fitted)
        out.append(TokenizedGroup(index=index, rows=tuple(torch.tensor(p + a, dtype=torch.long) for p, a in fitted),
                                  prompt_lengths=tuple(len(p) for p, _ in fitted), num_correct=row.num_correct,
                                  subset=row.subset, id=row.id))
    return out, truncated


def collate_groups(groups: Sequence[TokenizedGroup], *, pad_id: int = 0) -> dict[str, Any]:
    """All rows of ``groups`` as one right-padded batch: the fields of
    :func:`~litcpt.data.preference.batching.collate_preference` (``input_ids``, ``attention_mask``, ``response_mask``,
    ``lengths``, ``prompt_lengths``, ``last_index``) plus ``group [R]`` (the group of each row, ``0..G-1``),
    ``shared [G]`` (:func:`group_shared_lengths`) and ``sizes`` (rows per group)."""
    from litcpt.data.preference.batching import pad_rows


    if not groups:
        raise ValueError("collate_groups: empty batch")
    rows = [r for g in groups for r in g.rows]
    prompt_lengths = [n for g in groups for n in g.prompt_lengths]
    shared = [group_shared_lengths([r.tolist() for r in g.rows], g.prompt_lengths) for g in groups]
    return {
        **pad_rows(rows, prompt_lengths, pad_id=pad_id),
        "group": torch.tensor([k for k, g in enumerate(groups) for _ in g.rows], dtype=torch.long),
        "shared": torch.tensor(shared, dtype=torch.long),
        "sizes": [len(g.rows) for g in groups],
    }


def replace_prompts(rows: Iterable[BestOfNRow], wrap: Any) -> list[BestOfNRow]:
    """``rows`` with ``prompt``/``completions`` rewritten by ``wrap(prompt, completions) -> (prompt, completions)``
    (prompt templates)."""
    out = []
    for row in rows:
        prompt, completions = wrap(row.prompt, row.completions)
        out.append(dataclasses.replace(row, prompt=prompt, completions=tuple(completions)))
    return out


def group_shared_lengths(rows: Sequence[Sequence[int]], prompt_lengths: Sequence[int]) -> int:
    """Leading tokens that all ``rows`` of one group share inside every row's prompt, leaving each row at least one
    token of its own (what a prompt-sharing forward may compute once)."""
    if not rows:
        return 0
    limit = min(min(prompt_lengths), min(len(r) for r in rows) - 1)
    first = rows[0]
    n = 0
    while n < limit and all(r[n] == first[n] for r in rows[1:]):
        n += 1
    return max(n, 0)
