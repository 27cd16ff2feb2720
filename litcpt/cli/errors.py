"""One short line for a bad command line or recipe, innermost message first.

jsonargparse reports a bad value inside ``init_args`` of a ``class_path`` argument as "Does not validate against
any of the Union subtypes ... Errors: - Expected a <class 'NoneType'> - <the real message> ... Given value:
Namespace(<every argument>)", 700-1300 characters on one line. :func:`error_line` digs out the real message (the
innermost one, through nested unions) and names the argument it belongs to.
"""

from __future__ import annotations

import re
from typing import Any

_UNION = "Does not validate against any of the Union subtypes"
_TRIVIAL = re.compile(r"^(Expected a <class '[\w.]+'>|Type <class '[\w.]+'> expected)")
_CLASS_PATH = re.compile(r"class_path='([\w.]+)'")


def innermost(message: str) -> str:
    """The deepest useful message of a jsonargparse union error (``message`` itself if it is not one)."""
    text = str(message).strip()
    for _ in range(10):  # nested unions: a few levels at most
        if _UNION not in text:
            break
        match = re.search(r"\n([ \t]*)Errors:\n(.*?)(?:\n[ \t]*Given value type:|\Z)", text, re.S)
        if not match:
            break
        body = match.group(2)
        indent = min((len(m.group(1)) for m in re.finditer(r"(?m)^([ \t]*)- ", body)), default=0)
        entries = [e.strip() for e in re.split(rf"(?m)^[ \t]{{{indent}}}- ", body) if e.strip()]
        useful = [e for e in entries if not _TRIVIAL.match(e)]
        if not (useful or entries):
            break
        text = "\n".join(line.strip() for line in (useful or entries)[-1].splitlines())
    return text


def _key_of(class_path: str, cfg: Any, prefix: str = "") -> str | None:
    """The argument (``data``, ``lr_schedule``, ``data.init_args.new``...) whose value has ``class_path``."""
    items = vars(cfg).items() if hasattr(cfg, "__dict__") else (cfg.items() if isinstance(cfg, dict) else [])
    for key, value in items:
        name = f"{prefix}{key}"
        if getattr(value, "class_path", None) == class_path or (
                isinstance(value, dict) and value.get("class_path") == class_path):
            return name
    return None


def error_line(err: BaseException, cfg: Any = None) -> str:
    """One line for ``err``: the innermost message, prefixed with the argument it belongs to when known."""
    message = str(err)
    key = re.match(r'\s*Parser key "([\w.]+)":', message)
    inner = innermost(message)
    if key and inner != message.strip():
        return f"{key.group(1)}: {' '.join(inner.split())}"
    if inner != message.strip():
        match = _CLASS_PATH.search(message[message.rfind("Given value:"):]) if "Given value:" in message else None
        if match:
            key = _key_of(match.group(1), cfg) if cfg is not None else None
            where = f"{key} ({match.group(1)})" if key else match.group(1)
            inner = f"{where}: {inner}"
    lines = [ln.strip() for ln in inner.splitlines() if ln.strip()]
    return " ".join(lines).replace("Validation failed: ", "").replace("Problem with given args: ", "")
