"""Rows to :class:`PreferencePair`: the ``"prompt"``, ``"hh"`` and ``"chat"`` row formats (see
:mod:`litcpt.data.preference.datamodule`), with one-line errors naming the field."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from litgpt.prompts import PromptStyle

from litcpt.data.preference.chat import (
    ASSISTANT_MARKER,
    chat_messages,
    render_chat,
    resolve_prompt_style,
    split_conversation,
    split_messages,
)
from litcpt.data.rows import BadRow, check_choice, type_name

__all__ = ["BAD_ROW_REASONS", "FORMATS", "PreferencePair", "RowFormat", "detect_format", "parse_preference_row",
           "parse_row"]

RowFormat = Literal["auto", "prompt", "hh", "chat"]
FORMATS = ("auto", "prompt", "hh", "chat")

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


def _require(row: Mapping[str, Any], name: str) -> Any:
    value = row.get(name)
    if value is None:
        raise BadRow("missing_field", name, "missing (or null)")
    return value


def _require_str(row: Mapping[str, Any], name: str) -> str:
    value = _require(row, name)
    if not isinstance(value, str):
        raise BadRow("wrong_type", name, f"expected a string, got {type_name(value)}")
    return value


def _check_responses(chosen: str, rejected: str) -> None:
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if value == "":
            raise BadRow("empty_response", name, "the response is empty")
    if chosen == rejected:
        raise BadRow("identical_responses", "chosen", "chosen and rejected responses are identical")


def _optional_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    margin = row.get("margin")
    if margin is not None:
        if isinstance(margin, bool) or not isinstance(margin, (int, float)):
            raise BadRow("wrong_type", "margin", f"expected a number, got {type_name(margin)}")
        margin = float(margin)
        if math.isnan(margin):  # how pandas spells a missing number
            margin = None
        elif math.isinf(margin):
            raise BadRow("wrong_type", "margin", "expected a finite number, got infinity")
    subset = row.get("subset")
    if subset is not None and not isinstance(subset, str):
        raise BadRow("wrong_type", "subset", f"expected a string, got {type_name(subset)}")
    id_ = row.get("id")
    if id_ is not None:
        if isinstance(id_, bool) or not isinstance(id_, (str, int)):
            raise BadRow("wrong_type", "id", f"expected a string or integer, got {type_name(id_)}")
        id_ = str(id_)
    return {"margin": margin, "subset": subset, "id": id_}


def _parse_prompt_row(row: Mapping[str, Any]) -> tuple[str, str, str]:
    prompt = _require_str(row, "prompt")
    chosen = _require_str(row, "chosen")
    rejected = _require_str(row, "rejected")
    return prompt, chosen, rejected


def _parse_hh_row(row: Mapping[str, Any]) -> tuple[str, str, str]:
    chosen = _require_str(row, "chosen")
    rejected = _require_str(row, "rejected")
    if chosen == rejected:
        raise BadRow("identical_responses", "chosen", "chosen and rejected conversations are identical")
    try:
        return split_conversation(chosen, rejected)
    except ValueError:
        raise BadRow(
            "no_shared_prompt",
            "chosen",
            f"expected chosen and rejected to share a conversation ending with {ASSISTANT_MARKER!r}, "
            "or a 'prompt' field",
        ) from None


def _parse_chat_row(row: Mapping[str, Any], prompt_style: PromptStyle | None) -> tuple[str, str, str]:
    chosen = chat_messages(_require(row, "chosen"), "chosen")
    rejected = chat_messages(_require(row, "rejected"), "rejected")
    raw_prompt = row.get("prompt")
    prompt: list[dict[str, str]] | None
    if raw_prompt is None:
        prompt = None
    elif isinstance(raw_prompt, str):
        prompt = [{"role": "user", "content": raw_prompt}]
    else:
        prompt = chat_messages(raw_prompt, "prompt")
    prompt, chosen, rejected = split_messages(prompt, chosen, rejected)
    return render_chat(prompt, chosen, rejected, prompt_style)


def detect_format(row: Mapping[str, Any]) -> str:
    """Guess a row's format: ``"chat"`` if ``chosen`` or ``rejected`` is a list,
    else ``"prompt"`` if it has a non-null ``prompt``, else ``"hh"``."""
    if isinstance(row.get("chosen"), list) or isinstance(row.get("rejected"), list):
        return "chat"
    return "prompt" if row.get("prompt") is not None else "hh"


def parse_row(row: Any, fmt: str, prompt_style: PromptStyle | None) -> tuple[PreferencePair, str]:
    if not isinstance(row, Mapping):
        raise BadRow("not_an_object", None, f"expected an object with chosen/rejected, got {type_name(row)}")
    kind = detect_format(row) if fmt == "auto" else fmt
    if kind == "prompt":
        prompt, chosen, rejected = _parse_prompt_row(row)
    elif kind == "hh":
        prompt, chosen, rejected = _parse_hh_row(row)
    else:
        prompt, chosen, rejected = _parse_chat_row(row, prompt_style)
    _check_responses(chosen, rejected)
    return PreferencePair(prompt, chosen, rejected, **_optional_fields(row)), kind


def parse_preference_row(
    row: Mapping[str, Any], *, format: RowFormat = "auto", prompt_style: str | PromptStyle | None = None
) -> PreferencePair:
    """Parse one row (a mapping) into a :class:`PreferencePair`.

    Raises :class:`ValueError` ``"field 'X': <what was expected>"`` for a bad row.
    """
    check_choice("format", format, FORMATS)
    try:
        return parse_row(row, format, resolve_prompt_style(prompt_style))[0]
    except BadRow as bad:
        where = f"field '{bad.field_name}': " if bad.field_name else ""
        raise ValueError(f"{where}{bad.message}") from None
