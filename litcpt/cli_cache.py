"""Answer ``litcpt <command> --help`` and unknown keys at once, without importing torch, Lightning or LitGPT.

A command's typed signature stays its schema: the jsonargparse parser is built from it as before. Building it means
importing the command's types (LitGPT's ``Config`` and ``DataModule``, Lightning's ``Callback``, torch optimizers),
about 9 s of imports before anything can be said. So whenever a parser is built, what it says about itself is
kept in a small cache: its help text, its option strings, the options that take nested keys (``--data``,
``--optimizer``...), the types of options that are plain int/float/bool/None/Literal, and the command's positional
parameter. The next ``--help`` prints the cached text, and a key that the parser would reject as unknown
(``--train.max_tokns``) or a plainly wrong simple value (``--train.max_steps abc``) is reported from the cache, in
well under a second. Anything else (values inside ``init_args``, ``--config`` files, ``--print_config``) goes
through the real parser, which checks every value again.

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
    digest.update(f"{package}\n".encode())  # two checkouts never share answers
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
    entry = {**describe(parser), "help": parser.format_help(), "positional": positional}
    try:
        path = _path(command)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def describe(parser: Any) -> dict[str, Any]:
    """``{"options", "nested", "kinds"}`` of a jsonargparse parser (see :func:`unknown_key`, :func:`bad_value`)."""
    from jsonargparse._typehints import ActionTypeHint

    options, nested, kinds = [], [], {}
    for action in parser._actions:
        options += action.option_strings
        if isinstance(action, ActionTypeHint):
            nested += [o for o in action.option_strings if o.startswith("--")]
            kind = simple_kind(getattr(action, "_typehint", None))
            if kind is not None:
                kinds.update({o: kind for o in action.option_strings if o.startswith("--")})
    return {"options": sorted(set(options)), "nested": sorted(set(nested)), "kinds": kinds}


def simple_kind(typehint: Any) -> dict[str, Any] | None:
    """``{"types": [...], "choices": [...]}`` for a type hint made only of int, float, bool, None and Literal
    members (what the cache can check a value against); ``None`` for anything else."""
    import typing

    members = typing.get_args(typehint) if typing.get_origin(typehint) in (typing.Union, type(int | None)) else (
        typehint,)
    types, choices = [], []
    for member in members:
        if member in (int, float, bool):
            types.append(member.__name__)
        elif member is type(None):
            types.append("null")
        elif typing.get_origin(member) is typing.Literal and all(
                isinstance(c, (str, int, float, bool)) for c in typing.get_args(member)):
            choices += list(typing.get_args(member))
        else:
            return None
    return {"types": types, "choices": choices} if (types or choices) else None


def bad_value(args: list[str], entry: dict[str, Any]) -> str | None:
    """The first ``--key value`` whose value cannot be of the key's (simple) type, as ``key: expected ...``."""
    import yaml

    kinds = entry.get("kinds", {})
    for i, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        key, eq, text = arg.partition("=")
        if key not in kinds:
            continue
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                continue
            text = args[i + 1]
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        kind = kinds[key]
        # When in doubt, accept: the full parser checks every value again; this only catches the plainly wrong.
        ok = (("null" in kind["types"] and value is None)
              or ("bool" in kind["types"] and (isinstance(value, bool) or value in (0, 1)))
              or (("int" in kind["types"] or "float" in kind["types"]) and _number(value, text))
              or value in kind["choices"] or text in kind["choices"])
        if not ok:
            expected = [*kind["types"], *(repr(c) for c in kind["choices"])]
            return f"{key[2:]}: expected {' or '.join(expected)}, got {text!r}"
    return None


def _number(value: Any, text: str) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    try:
        float(text)  # 2e6, which YAML reads as a string
    except ValueError:
        return False
    return True


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
