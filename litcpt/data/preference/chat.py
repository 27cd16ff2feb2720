"""The Human/Assistant (Anthropic HH-RLHF) text convention and chat rendering, in one place.

* :data:`HUMAN_MARKER`/:data:`ASSISTANT_MARKER` and :func:`hh_prompt`: the HH template (``"\\n\\nHuman: {prompt}\\n\\n
  Assistant:"``), used for the bundled data, for ``"chat"`` rows without a prompt style and by ``litcpt rewardbench
  --prompt_style hh``.
* :func:`split_conversation`: the prompt/responses of two HH conversations.
* :func:`render_chat_pair`: ``{"role", "content"}`` messages to text (HH template or a litgpt ``PromptStyle``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from litgpt.prompts import PromptStyle

from litcpt.data.rows import BadRow, type_name

__all__ = ["ASSISTANT_MARKER", "HUMAN_MARKER", "chat_messages", "hh_prompt", "hh_response", "render_chat",
           "render_chat_pair", "resolve_prompt_style", "split_conversation", "split_messages"]

HUMAN_MARKER = "\n\nHuman:"
"""Turn marker of a user message in the HH-RLHF text convention."""
ASSISTANT_MARKER = "\n\nAssistant:"
"""Turn marker of an assistant message; a prompt always ends with it (format "hh")."""
_ROLES = ("system", "user", "assistant")
_ROLE_LABELS = {"system": "System", "user": "Human", "assistant": "Assistant"}


def hh_prompt(prompt: str) -> str:
    """``prompt`` as one Human turn awaiting the Assistant: ``"\\n\\nHuman: {prompt}\\n\\nAssistant:"``."""
    return f"{HUMAN_MARKER} {prompt}{ASSISTANT_MARKER}"


def hh_response(response: str) -> str:
    """A response as it follows :func:`hh_prompt`: with a leading space unless it starts with whitespace."""
    return response if response[:1].isspace() else " " + response


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


def chat_messages(value: Any, name: str) -> list[dict[str, str]]:
    """Validate a list of chat messages (``name`` is the field, for error messages)."""
    if not isinstance(value, list):
        raise BadRow("wrong_type", name, f"expected a list of messages, got {type_name(value)}")
    out = []
    for i, message in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(message, Mapping):
            raise BadRow("wrong_type", where, f"expected a message object, got {type_name(message)}")
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise BadRow("wrong_type", f"{where}.role", f"expected one of {list(_ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise BadRow("wrong_type", f"{where}.content", f"expected a string, got {type_name(content)}")
        out.append({"role": role, "content": content})
    return out


def split_messages(
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
            raise BadRow("identical_responses", "chosen", "chosen and rejected conversations are identical")
        # Back off to the last shared position where both continue with an assistant message.
        def replies_at(k: int) -> bool:
            return k < min(len(chosen), len(rejected)) and chosen[k]["role"] == rejected[k]["role"] == "assistant"

        cut = shared
        while cut > 0 and not replies_at(cut):
            cut -= 1
        if not replies_at(cut):
            raise BadRow(
                "no_shared_prompt",
                "chosen",
                "expected chosen and rejected to share the messages before an assistant reply",
            )
        prompt, chosen, rejected = chosen[:cut], chosen[cut:], rejected[cut:]
    for name, messages in (("chosen", chosen), ("rejected", rejected)):
        if not messages or (len(messages) == 1 and messages[0]["content"] == ""):
            raise BadRow("empty_response", name, "no response after the prompt (or an empty assistant message)")
        if messages[0]["role"] != "assistant":
            got = messages[0]["role"]
            message = f"expected the response to start with 'assistant', got {got!r}"
            raise BadRow("wrong_type", f"{name}[0].role", message)
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
        return render_chat(list(prompt), list(chosen), list(rejected), prompt_style)
    except BadRow as bad:
        raise ValueError(f"field '{bad.field_name}': {bad.message}") from None


def render_chat(
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
            raise BadRow("wrong_type", name, message)
    roles = [m["role"] for m in prompt]
    messages = [dict(m) for m in prompt]
    try:
        if roles in (["user"], ["system", "user"]):
            system = prompt[0]["content"] if roles[0] == "system" else None
            prompt_text = prompt_style.apply(prompt[-1]["content"], sys_prompt=system)
        else:
            prompt_text = prompt_style.apply(messages)
    except (ValueError, TypeError, KeyError) as exc:
        raise BadRow("wrong_type", "prompt", f"prompt style {style_name} failed: {exc}") from None
    if not isinstance(prompt_text, str) or str(messages) in prompt_text:
        message = f"prompt style {style_name} cannot render a {len(prompt)}-message conversation"
        raise BadRow("wrong_type", "prompt", message)
    return prompt_text, chosen[0]["content"], rejected[0]["content"]


def resolve_prompt_style(prompt_style: str | PromptStyle | None) -> PromptStyle | None:
    if prompt_style is None or isinstance(prompt_style, PromptStyle):
        return prompt_style
    try:
        return PromptStyle.from_name(prompt_style)
    except KeyError:
        raise ValueError(f"unknown prompt_style {prompt_style!r} (see litgpt.prompts.prompt_styles)") from None
