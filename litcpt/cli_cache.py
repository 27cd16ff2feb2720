"""Answer ``litcpt <command> --help`` and unknown keys at once, without importing torch, Lightning or LitGPT.

A command's typed signature stays its schema: the jsonargparse parser is built from it as before. Building it means
importing the command's types (LitGPT's ``Config`` and ``DataModule``, Lightning's ``Callback``, torch optimizers),
about 9 s of imports before anything can be said. So whenever a parser is built, what it says about itself is
kept in a small cache: its help text, its option strings, the options that take nested keys (``--data``,
``--optimizer``...) and the command's positional parameter. The next ``--help`` prints the cached text, and a key
that the parser would reject as unknown (``--train.max_tokns``) is reported from the cache, both in well under a
second. Anything else (values, ``--config`` files, ``--print_config``) goes through the real parser.

The cache is keyed by the command, the size and modification time of every litcpt source file, the versions of
jsonargparse/LitGPT/Lightning/torch, the Python version and the terminal width, so an edit or an upgrade never serves
stale help. It lives in ``$LITCPT_CACHE_DIR/cli`` (default ``~/.cache/litcpt/cli``); ``LITCPT_NO_CLI_CACHE=1`` turns
it off.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

_DISTRIBUTIONS = ("jsonargparse", "litgpt", "lightning", "torch")
_ALWAYS_KNOWN = {"-h", "--help", "--config", "--print_config"}


def enabled() -> bool:
    return not os.environ.get("LITCPT_NO_CLI_CACHE")


def cache_dir() -> Path:
    root = os.environ.get("LITCPT_CACHE_DIR")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "litcpt") / "cli"


def fingerprint(command: str) -> str:
    """What the cached answers depend on (see the module docstring)."""
    from importlib import metadata

    digest = hashlib.sha256(f"{command}\n{sys.version}\n{shutil.get_terminal_size().columns}\n".encode())
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(package)}:{stat.st_mtime_ns}:{stat.st_size}\n".encode())
    for name in _DISTRIBUTIONS:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{name}={version}\n".encode())
    return digest.hexdigest()[:24]


def _path(command: str) -> Path:
    return cache_dir() / f"{command}-{fingerprint(command)}.json"


def load(command: str) -> dict[str, Any] | None:
    """The cached description of ``command``'s parser, or ``None``."""
    if not enabled():
        return None
    try:
        return json.loads(_path(command).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def store(command: str, parser: Any, positional: str | None) -> None:
    """Describe ``parser`` in the cache (best effort: a read-only home only loses the speed-up)."""
    if not enabled():
        return
    from jsonargparse._typehints import ActionTypeHint

    options, nested = [], []
    for action in parser._actions:
        options += action.option_strings
        if isinstance(action, ActionTypeHint):
            nested += [o for o in action.option_strings if o.startswith("--")]
    entry = {"help": parser.format_help(), "options": sorted(set(options)), "nested": sorted(set(nested)),
             "positional": positional}
    try:
        path = _path(command)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def wants_help(args: list[str]) -> bool:
    return any(arg in ("-h", "--help") for arg in args)


def unknown_key(args: list[str], entry: dict[str, Any]) -> str | None:
    """The first ``--key`` in ``args`` that the parser would not accept, with a suggestion; ``None`` if all may be
    fine (keys below options with nested keys, such as ``--data.init_args.x``, are left to the real parser)."""
    options, nested = set(entry["options"]) | _ALWAYS_KNOWN, set(entry["nested"])
    for arg in args:
        if not arg.startswith("--"):
            continue
        key = arg.split("=", 1)[0].rstrip("+")
        if key in options:
            continue
        parts = key.split(".")
        if any(".".join(parts[:i]) in nested for i in range(1, len(parts))):
            continue
        close = difflib.get_close_matches(key, sorted(options), n=1)
        return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    return None
