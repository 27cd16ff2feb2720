"""Preference pairs (prompt, chosen, rejected) for reward models and DPO.

The module is a pipeline of small, mostly pure steps; the :class:`Preference` DataModule
at the end wires them together for LitGPT / Lightning:

1. **Parse** -- :func:`load_preference_pairs` reads ``.jsonl``, ``.jsonl.gz``, ``.json``,
   ``.parquet``, a ``save_to_disk`` directory, a ``datasets`` object, a list of dicts or a
   hub name, and turns every row into a :class:`PreferencePair`. Three row formats are
   understood (auto-detected per row, or forced with ``format=``):

   * ``"prompt"``: ``prompt``/``chosen``/``rejected`` strings (RewardBench, TRL "standard").
   * ``"hh"``: whole conversations as text in ``chosen``/``rejected`` and no ``prompt``
     (Anthropic HH-RLHF). See :func:`split_conversation` for the exact rule.
   * ``"chat"``: lists of ``{"role", "content"}`` messages in ``chosen``/``rejected`` (and
     optionally ``prompt``), rendered to text (see :func:`render_chat_pair`).

2. **Split** -- :func:`split_pairs` makes a deterministic train/test split.
3. **Tokenise + truncate** -- :func:`tokenize_pairs` (see :func:`truncate_sequence`).
4. **Batch** -- :class:`LengthBucketBatchSampler` and :func:`collate_preference`.

See ``docs/preference-data.md`` for examples and the exact batch layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from litgpt.data import DataModule
from litgpt.prompts import PromptStyle
from litgpt.tokenizer import Tokenizer
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset

from litcpt.data.textio import DEFAULT_ENCODING, check_encoding, iter_lines, read_text

__all__ = [
    "ASSISTANT_MARKER",
    "BAD_ROW_REASONS",
    "HUMAN_MARKER",
    "LengthBucketBatchSampler",
    "LoadReport",
    "Preference",
    "PreferenceDataset",
    "PreferencePair",
    "TokenizationStats",
    "TokenizedPair",
    "bundled_preference_file",
    "collate_preference",
    "detect_format",
    "get_preference_collate_fn",
    "load_preference_pairs",
    "load_preference_pairs_with_report",
    "padding_fraction",
    "parse_preference_row",
    "render_chat_pair",
    "split_conversation",
    "split_pairs",
    "tokenize_pairs",
    "truncate_sequence",
]

logger = logging.getLogger(__name__)

HUMAN_MARKER = "\n\nHuman:"
"""Turn marker of a user message in the HH-RLHF text convention."""
ASSISTANT_MARKER = "\n\nAssistant:"
"""Turn marker of an assistant message; a prompt always ends with it (format "hh")."""

RowFormat = Literal["auto", "prompt", "hh", "chat"]
BadRowPolicy = Literal["error", "skip"]
Truncation = Literal["left", "keep_end", "drop"]
PaddingSide = Literal["right", "left"]

_FORMATS = ("auto", "prompt", "hh", "chat")
_TRUNCATIONS = ("left", "keep_end", "drop")
_PADDING_SIDES = ("right", "left")
_ROLES = ("system", "user", "assistant")
_ROLE_LABELS = {"system": "System", "user": "Human", "assistant": "Assistant"}

BAD_ROW_REASONS = (
    "invalid_json",  # the line / file is not valid JSON
    "not_an_object",  # the row is not a JSON object / mapping
    "missing_field",  # a required field is absent or null
    "wrong_type",  # a field has the wrong type (or a chat message is malformed)
    "empty_response",  # a response is the empty string
    "identical_responses",  # chosen == rejected after the prompt is removed
    "no_shared_prompt",  # "hh"/"chat": chosen and rejected share no prompt ending at an assistant turn
)
"""Reason keys used in error messages and in :attr:`LoadReport.skipped`."""


# --------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: ``prompt + chosen`` is preferred over ``prompt + rejected``.

    ``chosen`` and ``rejected`` are the *responses only*; the full texts the model sees are
    ``prompt + chosen`` and ``prompt + rejected`` (no separator is inserted).
    """

    prompt: str
    chosen: str
    rejected: str
    margin: float | None = None
    """Optional preference strength (e.g. a score difference); ``None`` when absent."""
    subset: str | None = None
    """Optional category, e.g. the RewardBench subset."""
    id: str | None = None
    """Optional identifier (integers are converted to strings)."""


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


@dataclass(frozen=True, eq=False)
class TokenizedPair:
    """A tokenised pair. ``*_ids`` hold prompt + response (int64); the first
    ``*_prompt_length`` tokens are the prompt, the rest the response."""

    index: int
    """Position of the pair in the list given to :func:`tokenize_pairs`."""
    chosen_ids: Tensor
    rejected_ids: Tensor
    chosen_prompt_length: int
    rejected_prompt_length: int
    margin: float | None = None
    subset: str | None = None
    id: str | None = None
    is_duplicate: bool = False
    """Set by :class:`PreferenceDataset` for padding items added to even out ranks."""

    @property
    def length(self) -> int:
        """``max(len(chosen_ids), len(rejected_ids))``: the bucketing key."""
        return max(len(self.chosen_ids), len(self.rejected_ids))


@dataclass(frozen=True)
class TokenizationStats:
    """Counts from :func:`tokenize_pairs`."""

    pairs: int
    kept: int
    truncated: int
    """Kept pairs with at least one sequence shortened."""
    dropped: int
    """Pairs dropped because a sequence was longer than ``max_length`` (``truncation="drop"``)."""
    max_length: int | None
    truncation: str
    longest: int
    """Longest sequence (tokens) after truncation."""
    mean_length: float
    """Mean sequence length (tokens, chosen and rejected) after truncation."""

    def summary(self) -> str:
        """One human-readable line."""
        limit = "no limit" if self.max_length is None else f"max_length={self.max_length}, truncation={self.truncation}"
        return (
            f"{self.kept}/{self.pairs} pairs tokenised ({limit}): {self.truncated} truncated, "
            f"{self.dropped} dropped; longest {self.longest} tokens, mean {self.mean_length:.1f}"
        )


# --------------------------------------------------------------------------------------
# Row parsing
# --------------------------------------------------------------------------------------


class _BadRow(Exception):
    """Internal: a row-level problem, turned into a located ValueError by the loader."""

    def __init__(self, reason: str, field_name: str | None, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.field_name = field_name
        self.message = message


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _require(row: Mapping[str, Any], name: str) -> Any:
    value = row.get(name)
    if value is None:
        raise _BadRow("missing_field", name, "missing (or null)")
    return value


def _require_str(row: Mapping[str, Any], name: str) -> str:
    value = _require(row, name)
    if not isinstance(value, str):
        raise _BadRow("wrong_type", name, f"expected a string, got {_type_name(value)}")
    return value


def _check_responses(chosen: str, rejected: str) -> None:
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if value == "":
            raise _BadRow("empty_response", name, "the response is empty")
    if chosen == rejected:
        raise _BadRow("identical_responses", "chosen", "chosen and rejected responses are identical")


def _optional_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    margin = row.get("margin")
    if margin is not None:
        if isinstance(margin, bool) or not isinstance(margin, (int, float)):
            raise _BadRow("wrong_type", "margin", f"expected a number, got {_type_name(margin)}")
        margin = float(margin)
        if math.isnan(margin):  # how pandas spells a missing number
            margin = None
        elif math.isinf(margin):
            raise _BadRow("wrong_type", "margin", "expected a finite number, got infinity")
    subset = row.get("subset")
    if subset is not None and not isinstance(subset, str):
        raise _BadRow("wrong_type", "subset", f"expected a string, got {_type_name(subset)}")
    id_ = row.get("id")
    if id_ is not None:
        if isinstance(id_, bool) or not isinstance(id_, (str, int)):
            raise _BadRow("wrong_type", "id", f"expected a string or integer, got {_type_name(id_)}")
        id_ = str(id_)
    return {"margin": margin, "subset": subset, "id": id_}


def split_conversation(chosen: str, rejected: str, marker: str = ASSISTANT_MARKER) -> tuple[str, str, str]:
    """Split two HH-RLHF style conversations into ``(prompt, chosen, rejected)``.

    Rule: take the longest common prefix of the two strings and cut it right after the
    last ``marker`` ("\\n\\nAssistant:") that lies entirely inside it. The prompt is the text
    up to and including that marker; the responses are the rest of each string (they
    usually start with a space). When the conversations differ only in the last reply,
    this is "everything but the last assistant reply". When they differ earlier (4 rows
    of the bundled file), the prompt stops at the last *shared* assistant turn and the
    responses may contain further turns, e.g. ``" reply\\n\\nHuman: ...\\n\\nAssistant: ..."``.

    Raises :class:`ValueError` if the common prefix contains no ``marker``.
    """
    shared = len(os.path.commonprefix([chosen, rejected]))
    cut = chosen.rfind(marker, 0, shared)
    if cut < 0:
        raise ValueError(f"chosen and rejected share no {marker!r} turn")
    cut += len(marker)
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _parse_prompt_row(row: Mapping[str, Any]) -> tuple[str, str, str]:
    prompt = _require_str(row, "prompt")
    chosen = _require_str(row, "chosen")
    rejected = _require_str(row, "rejected")
    return prompt, chosen, rejected


def _parse_hh_row(row: Mapping[str, Any]) -> tuple[str, str, str]:
    chosen = _require_str(row, "chosen")
    rejected = _require_str(row, "rejected")
    if chosen == rejected:
        raise _BadRow("identical_responses", "chosen", "chosen and rejected conversations are identical")
    try:
        return split_conversation(chosen, rejected)
    except ValueError:
        raise _BadRow(
            "no_shared_prompt",
            "chosen",
            f"expected chosen and rejected to share a conversation ending with {ASSISTANT_MARKER!r}, "
            "or a 'prompt' field",
        ) from None


def _messages(value: Any, name: str) -> list[dict[str, str]]:
    """Validate a list of chat messages (``name`` is the field, for error messages)."""
    if not isinstance(value, list):
        raise _BadRow("wrong_type", name, f"expected a list of messages, got {_type_name(value)}")
    out = []
    for i, message in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(message, Mapping):
            raise _BadRow("wrong_type", where, f"expected a message object, got {_type_name(message)}")
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise _BadRow("wrong_type", f"{where}.role", f"expected one of {list(_ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise _BadRow("wrong_type", f"{where}.content", f"expected a string, got {_type_name(content)}")
        out.append({"role": role, "content": content})
    return out


def _split_messages(
    prompt: list[dict[str, str]] | None, chosen: list[dict[str, str]], rejected: list[dict[str, str]]
) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]]:
    """Return (prompt messages, chosen continuation, rejected continuation)."""
    if prompt is not None:
        # chosen/rejected are either the continuation or the full conversation.
        n = len(prompt)
        chosen = chosen[n:] if chosen[:n] == prompt else chosen
        rejected = rejected[n:] if rejected[:n] == prompt else rejected
    else:
        shared = 0
        while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
            shared += 1
        if shared == len(chosen) == len(rejected):
            raise _BadRow("identical_responses", "chosen", "chosen and rejected conversations are identical")
        # Back off to the last shared position where both continue with an assistant message.
        def replies_at(k: int) -> bool:
            return k < min(len(chosen), len(rejected)) and chosen[k]["role"] == rejected[k]["role"] == "assistant"

        cut = shared
        while cut > 0 and not replies_at(cut):
            cut -= 1
        if not replies_at(cut):
            raise _BadRow(
                "no_shared_prompt",
                "chosen",
                "expected chosen and rejected to share the messages before an assistant reply",
            )
        prompt, chosen, rejected = chosen[:cut], chosen[cut:], rejected[cut:]
    for name, messages in (("chosen", chosen), ("rejected", rejected)):
        if not messages or (len(messages) == 1 and messages[0]["content"] == ""):
            raise _BadRow("empty_response", name, "no response after the prompt (or an empty assistant message)")
        if messages[0]["role"] != "assistant":
            got = messages[0]["role"]
            message = f"expected the response to start with 'assistant', got {got!r}"
            raise _BadRow("wrong_type", f"{name}[0].role", message)
    return prompt, chosen, rejected


def _render_default(messages: Sequence[Mapping[str, str]]) -> str:
    return "".join(f"\n\n{_ROLE_LABELS[m['role']]}: {m['content']}" for m in messages)


def render_chat_pair(
    prompt: Sequence[Mapping[str, str]],
    chosen: Sequence[Mapping[str, str]],
    rejected: Sequence[Mapping[str, str]],
    prompt_style: PromptStyle | None = None,
) -> tuple[str, str, str]:
    """Render already-split chat messages to ``(prompt, chosen, rejected)`` text.

    Default template (``prompt_style=None``), the HH-RLHF convention: every message becomes
    ``"\\n\\n{Label}: {content}"`` with labels System/Human/Assistant; the prompt is the
    rendered prompt messages followed by ``"\\n\\nAssistant:"``; a response is
    ``" " + content`` of its first (assistant) message followed by any further messages
    rendered the same way, so ``prompt + response`` is the rendered full conversation.

    With a litgpt :class:`~litgpt.prompts.PromptStyle`: a prompt of one user message
    (optionally after one system message) is rendered with
    ``prompt_style.apply(content, sys_prompt=system)``; longer conversations are passed as
    the message list (only styles that accept lists, e.g. ``Llama3``, support that);
    each response must be a single assistant message and is its content unchanged.
    Raises :class:`ValueError` if the style cannot render the messages.
    """
    try:
        return _render_chat(list(prompt), list(chosen), list(rejected), prompt_style)
    except _BadRow as bad:
        raise ValueError(f"field '{bad.field_name}': {bad.message}") from None


def _render_chat(
    prompt: list[Mapping[str, str]],
    chosen: list[Mapping[str, str]],
    rejected: list[Mapping[str, str]],
    prompt_style: PromptStyle | None,
) -> tuple[str, str, str]:
    if prompt_style is None:
        prompt_text = _render_default(prompt) + ASSISTANT_MARKER

        def response(messages: list[Mapping[str, str]]) -> str:
            return " " + messages[0]["content"] + _render_default(messages[1:])

        return prompt_text, response(chosen), response(rejected)

    style_name = type(prompt_style).__name__
    for name, messages in (("chosen", chosen), ("rejected", rejected)):
        if len(messages) != 1:
            message = f"with prompt style {style_name} the response must be one assistant message"
            raise _BadRow("wrong_type", name, message)
    roles = [m["role"] for m in prompt]
    messages = [dict(m) for m in prompt]
    try:
        if roles in (["user"], ["system", "user"]):
            system = prompt[0]["content"] if roles[0] == "system" else None
            prompt_text = prompt_style.apply(prompt[-1]["content"], sys_prompt=system)
        else:
            prompt_text = prompt_style.apply(messages)
    except (ValueError, TypeError, KeyError) as exc:
        raise _BadRow("wrong_type", "prompt", f"prompt style {style_name} failed: {exc}") from None
    if not isinstance(prompt_text, str) or str(messages) in prompt_text:
        message = f"prompt style {style_name} cannot render a {len(prompt)}-message conversation"
        raise _BadRow("wrong_type", "prompt", message)
    return prompt_text, chosen[0]["content"], rejected[0]["content"]


def _parse_chat_row(row: Mapping[str, Any], prompt_style: PromptStyle | None) -> tuple[str, str, str]:
    chosen = _messages(_require(row, "chosen"), "chosen")
    rejected = _messages(_require(row, "rejected"), "rejected")
    raw_prompt = row.get("prompt")
    prompt: list[dict[str, str]] | None
    if raw_prompt is None:
        prompt = None
    elif isinstance(raw_prompt, str):
        prompt = [{"role": "user", "content": raw_prompt}]
    else:
        prompt = _messages(raw_prompt, "prompt")
    prompt, chosen, rejected = _split_messages(prompt, chosen, rejected)
    return _render_chat(prompt, chosen, rejected, prompt_style)


def detect_format(row: Mapping[str, Any]) -> str:
    """Guess a row's format: ``"chat"`` if ``chosen`` or ``rejected`` is a list,
    else ``"prompt"`` if it has a non-null ``prompt``, else ``"hh"``."""
    if isinstance(row.get("chosen"), list) or isinstance(row.get("rejected"), list):
        return "chat"
    return "prompt" if row.get("prompt") is not None else "hh"


def _parse_row(row: Any, fmt: str, prompt_style: PromptStyle | None) -> tuple[PreferencePair, str]:
    if not isinstance(row, Mapping):
        raise _BadRow("not_an_object", None, f"expected an object with chosen/rejected, got {_type_name(row)}")
    kind = detect_format(row) if fmt == "auto" else fmt
    if kind == "prompt":
        prompt, chosen, rejected = _parse_prompt_row(row)
    elif kind == "hh":
        prompt, chosen, rejected = _parse_hh_row(row)
    else:
        prompt, chosen, rejected = _parse_chat_row(row, prompt_style)
    _check_responses(chosen, rejected)
    return PreferencePair(prompt, chosen, rejected, **_optional_fields(row)), kind


def _resolve_prompt_style(prompt_style: str | PromptStyle | None) -> PromptStyle | None:
    if prompt_style is None or isinstance(prompt_style, PromptStyle):
        return prompt_style
    try:
        return PromptStyle.from_name(prompt_style)
    except KeyError:
        raise ValueError(f"unknown prompt_style {prompt_style!r} (see litgpt.prompts.prompt_styles)") from None


def parse_preference_row(
    row: Mapping[str, Any], *, format: RowFormat = "auto", prompt_style: str | PromptStyle | None = None
) -> PreferencePair:
    """Parse one row (a mapping) into a :class:`PreferencePair`.

    Raises :class:`ValueError` ``"field 'X': <what was expected>"`` for a bad row.
    """
    _check_choice("format", format, _FORMATS)
    try:
        return _parse_row(row, format, _resolve_prompt_style(prompt_style))[0]
    except _BadRow as bad:
        where = f"field '{bad.field_name}': " if bad.field_name else ""
        raise ValueError(f"{where}{bad.message}") from None


# --------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")


def _check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _import_datasets(purpose: str) -> Any:
    try:
        import datasets
    except Exception as exc:  # datasets can fail at import time (e.g. pyarrow API drift)
        raise ValueError(f"{purpose} needs the `datasets` package, which failed to import: {exc}") from None
    return datasets


_Row = tuple[str, Any]  # (location such as "line 3", row or _BadRow)


def _jsonl_rows(path: Path, encoding: str = DEFAULT_ENCODING) -> Iterator[_Row]:
    for number, line in iter_lines(path, encoding):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as exc:
            message = f"invalid JSON ({exc.msg} at column {exc.colno})"
            yield f"line {number}", _BadRow("invalid_json", None, message)


def _json_rows(path: Path, encoding: str = DEFAULT_ENCODING) -> Iterator[_Row]:
    try:
        data = json.loads(read_text(path, encoding))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of row objects, got {_type_name(data)}")
    for number, row in enumerate(data, start=1):
        yield f"row {number}", row


def _parquet_records(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    except ImportError:
        pass
    try:
        import pandas as pd

        return pd.read_parquet(path).to_dict("records")
    except ImportError:
        pass
    datasets = _import_datasets(f"reading {path}")
    return list(datasets.load_dataset("parquet", data_files=str(path), split="train"))


def _arrow_dir_records(path: Path) -> list[dict[str, Any]]:
    """Read one split written by ``Dataset.save_to_disk`` with pyarrow alone."""
    import pyarrow as pa

    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    records: list[dict[str, Any]] = []
    for entry in state.get("_data_files", []):
        with pa.memory_map(str(path / entry["filename"])) as source:
            records.extend(pa.ipc.open_stream(source).read_all().to_pylist())
    return records


def _saved_dataset_records(path: Path, split: str | None) -> list[dict[str, Any]]:
    """Rows of a ``save_to_disk`` directory (a Dataset, or a DatasetDict with ``split``)."""
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        if split is None:
            if len(splits) != 1:
                raise ValueError(f"{path}: a dataset dict with splits {splits}; pass split=")
            split = splits[0]
        if split not in splits:
            raise ValueError(f"{path}: no split {split!r}, expected one of {splits}")
        path = path / split
    elif split is not None:
        raise ValueError(f"{path}: a single dataset has no splits, got split={split!r}")
    try:
        datasets = _import_datasets("load_from_disk")
    except ValueError:
        return _arrow_dir_records(path)
    return list(datasets.load_from_disk(str(path)))


def _is_dataset_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(hasattr(v, "column_names") for v in obj.values())


def _source_rows(source: Any, split: str | None, encoding: str = DEFAULT_ENCODING) -> tuple[str, Iterator[_Row]]:
    """Return (label used in messages, iterator of (location, row))."""

    def numbered(rows: Iterable[Any]) -> Iterator[_Row]:
        for number, row in enumerate(rows, start=1):
            yield f"row {number}", row

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = str(source)
        if path.is_dir():
            if not ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
                raise ValueError(f"{label}: not a `save_to_disk` directory (no state.json or dataset_dict.json)")
            return label, numbered(_saved_dataset_records(path, split))
        name = path.name.lower()
        if path.is_file():
            if split is not None:
                raise ValueError(f"{label}: split={split!r} only applies to dataset dicts and hub names")
            if name.endswith((".jsonl", ".jsonl.gz")):
                return label, _jsonl_rows(path, encoding)
            if name.endswith((".json", ".json.gz")):
                return label, _json_rows(path, encoding)
            if name.endswith(".parquet"):
                return label, numbered(_parquet_records(path))
            raise ValueError(f"{label}: unsupported file type, expected one of {list(_SUFFIXES)}")
        if isinstance(source, str) and not name.endswith(_SUFFIXES) and _HUB_NAME.match(source):
            datasets = _import_datasets(f"loading hub dataset {source!r}")
            return label, numbered(datasets.load_dataset(source, split=split or "train"))
        raise ValueError(f"{label}: no such file or directory")
    if _is_dataset_dict(source):
        if split is None:
            if len(source) != 1:
                raise ValueError(f"<dataset dict>: splits {sorted(source)}; pass split=")
            split = next(iter(source))
        if split not in source:
            raise ValueError(f"<dataset dict>: no split {split!r}, expected one of {sorted(source)}")
        return f"<dataset dict[{split}]>", numbered(source[split])
    if isinstance(source, Iterable) and not isinstance(source, (Mapping, bytes)):
        if split is not None:
            raise ValueError(f"<{type(source).__name__}>: split={split!r} only applies to dataset dicts and hub names")
        return f"<{type(source).__name__}>", numbered(source)
    raise ValueError(
        f"unsupported preference source of type {type(source).__name__}: expected a path, a hub name, "
        "a datasets Dataset/DatasetDict or a list of row dicts"
    )


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
    _check_choice("format", format, _FORMATS)
    _check_choice("on_bad_row", on_bad_row, ("error", "skip"))
    style = _resolve_prompt_style(prompt_style)
    label, rows = _source_rows(source, split, check_encoding(encoding))
    report = LoadReport(source=label)
    skipped: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    pairs: list[PreferencePair] = []
    for location, row in rows:
        report.rows += 1
        try:
            if isinstance(row, _BadRow):
                raise row
            pair, kind = _parse_row(row, format, style)
        except _BadRow as bad:
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


# --------------------------------------------------------------------------------------
# Split
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Tokenisation and truncation
# --------------------------------------------------------------------------------------


def truncate_sequence(
    prompt_ids: Sequence[int],
    response_ids: Sequence[int],
    max_length: int,
    truncation: Truncation = "left",
    keep_first: int = 0,
) -> tuple[list[int], list[int]] | None:
    """Fit ``prompt_ids + response_ids`` into ``max_length`` tokens.

    Nothing changes when it already fits. Otherwise the first ``keep_first`` prompt tokens
    (the BOS token, when there is one) are always kept, and:

    * ``"left"``: drop prompt tokens from the left (just after the protected ones) until the
      pair fits; if the response alone is still too long, drop response tokens from the
      right (its end, including EOS, is lost).
    * ``"keep_end"``: keep the last ``max_length - keep_first`` tokens of the whole sequence
      (cut from the left, through the prompt and then into the response).
    * ``"drop"``: return ``None``.

    Returns the new ``(prompt_ids, response_ids)``. Because ``max_length >= keep_first + 1``
    is required, at least one response token always survives.
    """
    _check_choice("truncation", truncation, _TRUNCATIONS)
    if max_length < keep_first + 1:
        raise ValueError(f"max_length must be >= {keep_first + 1}, got {max_length}")
    prompt, response = list(prompt_ids), list(response_ids)
    if len(prompt) + len(response) <= max_length:
        return prompt, response
    if truncation == "drop":
        return None
    head, body = prompt[:keep_first], prompt[keep_first:]
    room = max_length - keep_first
    if truncation == "left":
        prompt_room = room - len(response)
        if prompt_room >= 0:
            return head + body[len(body) - prompt_room :], response
        return head, response[:room]
    rest = (body + response)[-room:]
    n_prompt = max(0, len(body) - (len(body) + len(response) - room))
    return head + rest[:n_prompt], rest[n_prompt:]


def _encode(tokenizer: Tokenizer, text: str, *, bos: bool | None, eos: bool) -> list[int]:
    if eos and tokenizer.eos_id is None:
        eos = False
    return tokenizer.encode(text, bos=bos, eos=eos).tolist()


def tokenize_pairs(
    pairs: Sequence[PreferencePair],
    tokenizer: Tokenizer,
    *,
    max_length: int | None = None,
    truncation: Truncation = "left",
) -> tuple[list[TokenizedPair], TokenizationStats]:
    """Tokenise pairs: ``prompt`` with BOS as the tokenizer wants it (``tokenizer.use_bos``),
    each response with ``bos=False`` and EOS appended (when the tokenizer has one).

    Prompt and responses are encoded separately and concatenated, so the boundary is
    always a token boundary. With ``max_length``, each of the two sequences is fitted by
    :func:`truncate_sequence` (a leading BOS is protected; with ``"left"`` the longer response fixes the prompt cut
    and the shorter reuses it, so both keep identical prompt tokens); with ``"drop"`` the whole pair
    is dropped if either sequence is too long. ``TokenizedPair.index`` is the pair's
    position in ``pairs``.
    """
    _check_choice("truncation", truncation, _TRUNCATIONS)
    if max_length is not None and max_length < 2:
        raise ValueError(f"max_length must be >= 2 or None, got {max_length}")
    out: list[TokenizedPair] = []
    truncated = dropped = 0
    for index, pair in enumerate(pairs):
        prompt = _encode(tokenizer, pair.prompt, bos=None, eos=False)
        keep_first = int(bool(tokenizer.use_bos and prompt and prompt[0] == tokenizer.bos_id))
        responses = [_encode(tokenizer, text, bos=False, eos=True) for text in (pair.chosen, pair.rejected)]
        sequences: list[tuple[list[int], list[int]] | None] = [None, None]
        was_truncated = False
        # With "left", the longer response decides how much of the prompt is cut, and the shorter one reuses that
        # prompt: chosen and rejected keep the *same* prompt tokens (as TRL does), which DPO and RM scoring assume.
        order = sorted((0, 1), key=lambda k: -len(responses[k])) if truncation == "left" else (0, 1)
        shared_prompt = prompt
        for k in order:
            response = responses[k]
            if max_length is not None:
                fitted = truncate_sequence(shared_prompt, response, max_length, truncation, keep_first)
                if fitted is None:
                    break
                if truncation == "left":
                    shared_prompt = fitted[0]
                was_truncated |= len(fitted[0]) + len(fitted[1]) < len(prompt) + len(response)
                sequences[k] = fitted
            else:
                sequences[k] = (prompt, response)
        if any(seq is None for seq in sequences):
            dropped += 1
            continue
        truncated += was_truncated
        (cp, cr), (rp, rr) = sequences
        out.append(
            TokenizedPair(
                index=index,
                chosen_ids=torch.tensor(cp + cr, dtype=torch.long),
                rejected_ids=torch.tensor(rp + rr, dtype=torch.long),
                chosen_prompt_length=len(cp),
                rejected_prompt_length=len(rp),
                margin=pair.margin,
                subset=pair.subset,
                id=pair.id,
            )
        )
    lengths = [n for t in out for n in (len(t.chosen_ids), len(t.rejected_ids))]
    stats = TokenizationStats(
        pairs=len(pairs),
        kept=len(out),
        truncated=truncated,
        dropped=dropped,
        max_length=max_length,
        truncation=truncation,
        longest=max(lengths, default=0),
        mean_length=sum(lengths) / len(lengths) if lengths else 0.0,
    )
    return out, stats


# --------------------------------------------------------------------------------------
# Dataset, collation and batching
# --------------------------------------------------------------------------------------


class PreferenceDataset(Dataset):
    """In-memory dataset of :class:`TokenizedPair`.

    Indices ``0 .. n-1`` return the pairs; indices ``n .. 2n-1`` return pair ``i - n`` with
    ``is_duplicate=True`` (used by :class:`LengthBucketBatchSampler` to give every rank
    the same number of batches).
    """

    def __init__(self, items: Sequence[TokenizedPair]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> TokenizedPair:
        n = len(self.items)
        if 0 <= index < n:
            return self.items[index]
        if n <= index < 2 * n:
            return dataclasses.replace(self.items[index - n], is_duplicate=True)
        raise IndexError(f"index {index} out of range for {n} pairs (duplicates: {n}..{2 * n - 1})")

    @property
    def lengths(self) -> list[int]:
        """Bucketing key per pair: ``max(len(chosen_ids), len(rejected_ids))``."""
        return [item.length for item in self.items]

    @property
    def row_lengths(self) -> list[tuple[int, int]]:
        """``(len(chosen_ids), len(rejected_ids))`` per pair."""
        return [(len(item.chosen_ids), len(item.rejected_ids)) for item in self.items]


def collate_preference(
    items: Sequence[TokenizedPair], *, pad_id: int = 0, padding_side: PaddingSide = "right"
) -> dict[str, Any]:
    """Collate ``B`` pairs into one batch of ``2B`` rows: chosen rows ``0..B-1``, then
    rejected rows ``B..2B-1`` (row ``i`` and row ``B + i`` are the same pair).

    Returns (``L`` = longest row):

    * ``input_ids`` long ``[2B, L]``, padded with ``pad_id`` on ``padding_side``.
    * ``attention_mask`` bool ``[2B, L]``: True on real tokens.
    * ``response_mask`` bool ``[2B, L]``: True where the *token at that position* is a
      response token (EOS included). For log-probabilities of the response use
      ``logits[:, :-1]`` against ``input_ids[:, 1:]`` masked by ``response_mask[:, 1:]``.
    * ``lengths``, ``prompt_lengths`` long ``[2B]``: tokens per row, prompt tokens per row.
    * ``last_index`` long ``[2B]``: position of the last real token (``lengths - 1`` with
      right padding, ``L - 1`` with left padding) -- where a reward head reads its score.
    * ``margin`` float ``[B]`` (0 when absent), ``index`` long ``[B]`` (pair position in the
      dataset), ``is_duplicate`` bool ``[B]``, ``subset`` and ``id``: lists of ``B``.
    """
    _check_choice("padding_side", padding_side, _PADDING_SIDES)
    if not items:
        raise ValueError("collate_preference: empty batch")
    rows = [item.chosen_ids for item in items] + [item.rejected_ids for item in items]
    prompt_lengths = [item.chosen_prompt_length for item in items] + [item.rejected_prompt_length for item in items]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    width = int(lengths.max())
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    response_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, n_prompt) in enumerate(zip(rows, prompt_lengths)):
        start = 0 if padding_side == "right" else width - len(row)
        input_ids[i, start : start + len(row)] = row
        attention_mask[i, start : start + len(row)] = True
        response_mask[i, start + n_prompt : start + len(row)] = True
    last_index = lengths - 1 if padding_side == "right" else torch.full_like(lengths, width - 1)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "response_mask": response_mask,
        "lengths": lengths,
        "prompt_lengths": torch.tensor(prompt_lengths, dtype=torch.long),
        "last_index": last_index,
        "margin": torch.tensor([0.0 if i.margin is None else i.margin for i in items], dtype=torch.float),
        "index": torch.tensor([i.index for i in items], dtype=torch.long),
        "is_duplicate": torch.tensor([i.is_duplicate for i in items], dtype=torch.bool),
        "subset": [i.subset for i in items],
        "id": [i.id for i in items],
    }


def get_preference_collate_fn(pad_id: int = 0, padding_side: PaddingSide = "right"):
    """A picklable ``collate_fn`` for a DataLoader (see :func:`collate_preference`)."""
    _check_choice("padding_side", padding_side, _PADDING_SIDES)
    return partial(collate_preference, pad_id=pad_id, padding_side=padding_side)


def padding_fraction(batches: Iterable[Sequence[int]], lengths: Sequence[int | Sequence[int]]) -> float:
    """Fraction of padding positions when every batch is padded to its longest row.

    ``lengths[i]`` is the length of item ``i``, or a tuple of its row lengths (e.g.
    ``(len(chosen_ids), len(rejected_ids))``, see :attr:`PreferenceDataset.row_lengths`);
    indices ``>= len(lengths)`` wrap around (flagged duplicates).
    """
    total = padded = 0
    n = len(lengths)
    for batch in batches:
        rows = [size for i in batch for size in _as_tuple(lengths[i % n])]
        if rows:
            total += max(rows) * len(rows)
            padded += max(rows) * len(rows) - sum(rows)
    return padded / total if total else 0.0


def _as_tuple(value: int | Sequence[int]) -> Sequence[int]:
    return (value,) if isinstance(value, int) else value


class _EpochCounter:
    """Holds the epoch when no distributed sampler was injected (Lightning calls
    ``batch_sampler.sampler.set_epoch``)."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class LengthBucketBatchSampler(BatchSampler):
    """Deterministic batches of similar-length pairs, sharded across ranks.

    Batches are built from ``lengths`` (one per pair) for the whole dataset, identically on
    every rank:

    * ``shuffle=True``: permute the pairs with a ``torch.Generator`` seeded with
      ``seed + epoch``; cut the permutation into mega-batches of
      ``batch_size * mega_batch_factor`` pairs; sort each mega-batch by length (longest
      first, stable); cut into batches; shuffle the order of the batches (same generator).
    * ``shuffle=False``: sort all pairs by length (stable) and cut into batches.
    * ``bucket=False``: skip the sorting (plain random / sequential batches).

    With ``num_replicas > 1``, batches are dealt round-robin (rank ``r`` gets batches
    ``r, r + W, ...``). If their number is not a multiple of ``W``, the first batches are
    repeated to even it out, with their indices shifted by ``len(lengths)`` so that
    :class:`PreferenceDataset` flags them ``is_duplicate`` (drop them when counting
    evaluation results; every pair then appears exactly once unflagged).

    ``num_replicas``/``rank`` default to those of a ``DistributedSampler`` passed as
    ``sampler`` (this is how Lightning injects one; its own order is ignored), else to
    ``torch.distributed`` when initialised, else 1/0. ``sampler`` is otherwise unused.
    Call :meth:`set_epoch` (Lightning does) to reshuffle each epoch.
    """

    def __init__(
        self,
        sampler: Any = None,
        batch_size: int = 1,
        drop_last: bool = False,
        *,
        lengths: Sequence[int] = (),
        shuffle: bool = True,
        bucket: bool = True,
        seed: int = 42,
        mega_batch_factor: int = 50,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        # BatchSampler.__init__ is not called on purpose: the order comes from `lengths`.
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if mega_batch_factor < 1:
            raise ValueError(f"mega_batch_factor must be >= 1, got {mega_batch_factor!r}")
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.lengths = list(lengths)
        self.shuffle = shuffle
        self.bucket = bucket
        self.seed = seed
        self.mega_batch_factor = mega_batch_factor
        injected = sampler if hasattr(sampler, "num_replicas") and hasattr(sampler, "rank") else None
        if num_replicas is None:
            num_replicas = injected.num_replicas if injected is not None else _world_size()
        if rank is None:
            rank = injected.rank if injected is not None else _rank()
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.num_replicas = num_replicas
        self.rank = rank
        self.sampler = injected if injected is not None and hasattr(injected, "set_epoch") else _EpochCounter()

    @property
    def epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next shuffle (``seed + epoch``)."""
        self.sampler.set_epoch(epoch)

    def global_batches(self) -> list[list[int]]:
        """All batches of this epoch, before sharding (identical on every rank)."""
        n = len(self.lengths)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator).tolist()
        else:
            generator = None
            order = list(range(n))
        if self.bucket:
            if self.shuffle:
                chunk = self.batch_size * self.mega_batch_factor
                order = [
                    i
                    for start in range(0, n, chunk)
                    for i in sorted(order[start : start + chunk], key=lambda i: -self.lengths[i])
                ]
            else:
                order = sorted(order, key=lambda i: self.lengths[i])
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle and generator is not None and batches:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def _shard(self) -> list[list[int]]:
        batches = self.global_batches()
        if self.num_replicas == 1 or not batches:
            return batches
        n, total = len(self.lengths), math.ceil(len(batches) / self.num_replicas) * self.num_replicas
        padding = [[i + n for i in batches[k % len(batches)]] for k in range(total - len(batches))]
        return (batches + padding)[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._shard())

    def __len__(self) -> int:
        n = len(self.lengths)
        count = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return math.ceil(count / self.num_replicas) if count else 0


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


# --------------------------------------------------------------------------------------
# DataModule
# --------------------------------------------------------------------------------------


def _print_rank_zero(message: str) -> None:
    if _rank() == 0:
        print(message, flush=True)


@dataclass
class Preference(DataModule):
    """Preference pairs for reward-model and DPO training (LitGPT DataModule).

    ``batch_size`` given to :meth:`connect` counts *pairs*: a batch has ``2 * batch_size``
    rows (see :func:`collate_preference`). The effective length limit is the smaller of
    ``max_length`` and the ``max_seq_length`` given to :meth:`connect` (either may be
    unset).
    """

    train_path: str | Path | None = None
    """Training pairs (any source :func:`load_preference_pairs` accepts). ``None``: the
    bundled 2000 Anthropic HH-RLHF harmless-base pairs."""
    test_path: str | Path | None = None
    """Held-out pairs. ``None``: split ``test_split_fraction`` off the training pairs with
    :func:`split_pairs`."""
    test_split_fraction: float = 0.1
    format: str = "auto"
    """Row format: "auto", "prompt", "hh" or "chat"."""
    max_length: int | None = None
    """Maximum tokens of prompt + response per sequence (``None``: no limit of its own)."""
    truncation: str = "left"
    """"left", "keep_end" or "drop" (see :func:`truncate_sequence`)."""
    on_bad_row: str = "error"
    """"error" or "skip"."""
    padding_side: str = "right"
    bucket: bool = True
    """Group pairs of similar length in batches."""
    seed: int = 42
    num_workers: int = 0
    prompt_style: str | PromptStyle | None = None
    """For "chat" rows; ``None`` uses the default Human/Assistant template."""
    encoding: str = DEFAULT_ENCODING
    """Text encoding of ``.jsonl``/``.json`` files (``utf-8``, ``latin-1``, ``cp1252``, ...)."""

    tokenizer: Tokenizer | None = field(default=None, init=False, repr=False)
    batch_size: int = field(default=1, init=False, repr=False)
    max_seq_length: int = field(default=-1, init=False, repr=False)
    train_dataset: PreferenceDataset | None = field(default=None, init=False, repr=False)
    test_dataset: PreferenceDataset | None = field(default=None, init=False, repr=False)
    train_report: LoadReport | None = field(default=None, init=False, repr=False)
    test_report: LoadReport | None = field(default=None, init=False, repr=False)
    train_stats: TokenizationStats | None = field(default=None, init=False, repr=False)
    test_stats: TokenizationStats | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__init__()
        _check_choice("format", self.format, _FORMATS)
        _check_choice("truncation", self.truncation, _TRUNCATIONS)
        _check_choice("on_bad_row", self.on_bad_row, ("error", "skip"))
        _check_choice("padding_side", self.padding_side, _PADDING_SIDES)
        if not 0.0 <= self.test_split_fraction < 1.0:
            raise ValueError(f"test_split_fraction must be in [0, 1), got {self.test_split_fraction!r}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be >= 2 or None, got {self.max_length!r}")
        self.prompt_style = _resolve_prompt_style(self.prompt_style)

    def connect(
        self, tokenizer: Tokenizer | None = None, batch_size: int = 1, max_seq_length: int | None = None, **kwargs: Any
    ) -> None:
        """Set the tokenizer, the number of pairs per batch and the model's context limit."""
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_seq_length = -1 if max_seq_length is None else max_seq_length

    @property
    def effective_max_length(self) -> int | None:
        """``min(max_length, max_seq_length)`` over the ones that are set."""
        limits = [x for x in (self.max_length, self.max_seq_length) if x is not None and x > 0]
        return min(limits) if limits else None

    @property
    def pad_id(self) -> int:
        """Padding value of ``input_ids``: the tokenizer's EOS id, or 0 if it has none.
        (Padding is marked by ``attention_mask``, so its value never matters.)"""
        eos = getattr(self.tokenizer, "eos_id", None)
        return 0 if eos is None else int(eos)

    def _load(self, source: Any) -> tuple[list[PreferencePair], LoadReport]:
        return load_preference_pairs_with_report(
            source, format=self.format, on_bad_row=self.on_bad_row, prompt_style=self.prompt_style,
            encoding=self.encoding,
        )

    def setup(self, stage: str = "") -> None:
        """Parse and tokenise (once; later calls are no-ops) and print the statistics."""
        if self.train_dataset is not None:
            return
        if self.tokenizer is None:
            raise ValueError("Preference.setup: call connect(tokenizer=...) first")
        source = bundled_preference_file() if self.train_path is None else self.train_path
        train_pairs, self.train_report = self._load(source)
        if self.test_path is None:
            train_pairs, test_pairs = split_pairs(train_pairs, self.test_split_fraction, self.seed)
            self.test_report = None
        else:
            test_pairs, self.test_report = self._load(self.test_path)
        limit = self.effective_max_length
        options = {"max_length": limit, "truncation": self.truncation}
        train_items, self.train_stats = tokenize_pairs(train_pairs, self.tokenizer, **options)
        test_items, self.test_stats = tokenize_pairs(test_pairs, self.tokenizer, **options)
        self.train_dataset = PreferenceDataset(train_items)
        self.test_dataset = PreferenceDataset(test_items)
        lines = [self.train_report.summary()]
        if self.test_report is not None:
            lines.append(self.test_report.summary())
        else:
            fraction, seed = self.test_split_fraction, self.seed
            lines.append(f"split {len(train_pairs)} train / {len(test_pairs)} test (fraction {fraction}, seed {seed})")
        lines += [f"train: {self.train_stats.summary()}", f"test: {self.test_stats.summary()}"]
        sampler = self._batch_sampler(self.train_dataset, shuffle=True)
        waste = padding_fraction(sampler.global_batches(), self.train_dataset.row_lengths)
        per_rank = f" per rank ({sampler.num_replicas} ranks)" if sampler.num_replicas > 1 else ""
        lines.append(
            f"train batches: {len(sampler)}{per_rank} of {self.batch_size} pairs, "
            f"padding {waste:.1%} (bucket={self.bucket})"
        )
        _print_rank_zero("Preference data:\n  " + "\n  ".join(lines))

    def _batch_sampler(self, dataset: PreferenceDataset, shuffle: bool) -> LengthBucketBatchSampler:
        return LengthBucketBatchSampler(
            batch_size=self.batch_size, lengths=dataset.lengths, shuffle=shuffle, bucket=self.bucket, seed=self.seed
        )

    def _dataloader(self, dataset: PreferenceDataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise ValueError("Preference: call setup() before requesting a dataloader")
        return DataLoader(
            dataset,
            batch_sampler=self._batch_sampler(dataset, shuffle),
            num_workers=self.num_workers,
            collate_fn=get_preference_collate_fn(self.pad_id, self.padding_side),
        )

    def train_dataloader(self) -> DataLoader:
        """Bucketed, shuffled (``seed + epoch``) batches of the training pairs."""
        return self._dataloader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Bucketed, unshuffled batches of the held-out pairs."""
        return self._dataloader(self.test_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Same as :meth:`val_dataloader`."""
        return self.val_dataloader()


def read_source_rows(source: Any, split: str | None = None) -> tuple[str, Iterator[tuple[str, Any]]]:
    """``(label, rows)`` of any source :func:`load_preference_pairs` reads, before parsing: ``rows`` yields
    ``(location, row)`` with locations such as ``"line 3"``; an undecodable JSON line is yielded as an exception
    object with a ``message`` (raise a located error for it). For row layouts other than pairs (best-of-N rows)."""
    return _source_rows(source, split)
