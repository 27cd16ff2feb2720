"""Answer ``litcpt <command> --help`` and unknown keys at once, without importing torch, Lightning or LitGPT.

A command's typed signature stays its schema: the jsonargparse parser is built from it as before. Building it means
importing the command's types (LitGPT's ``Config`` and ``DataModule``, Lightning's ``Callback``, torch optimizers),
about 5 s of imports before anything can be said. So what a command's parser says about itself is written down: its
help text, its option strings, the options that take nested keys (``--data``, ``--optimizer``...), the types of
options that are plain int/float/bool/None/Literal, the command's positional parameter and what ``--print_config``
alone prints (the defaults). ``--help``, ``--print_config`` alone, a key that the parser would reject as unknown
(``--train.max_tokns``) and a plainly wrong simple value (``--train.max_steps abc``) are answered from that in about
0.1 s. Anything else (values inside ``init_args``, ``--config`` files, ``--print_config`` with other arguments)
goes through the real parser, which checks every value again.

Two places hold these answers, tried in order:

1. **Shipped** with the package, ``litcpt/assets/cli/<command>.json``, so that even the first call on a fresh install
   is fast. Each file holds the key it was made for, :func:`source_key`: a hash of the *content* of every litcpt
   ``.py`` file (not their modification times, which differ on every clone) and the jsonargparse version (which
   writes the help and names the options). ``python -m litcpt.cli.help_cache --regenerate`` rewrites them, one fresh
   process per command (the help lists the known subclasses of ``--data`` or ``--callbacks``, which depend on what
   the process imported, exactly as in ``litcpt <command> --help``); ``tests/cli/test_cli_fast.py`` fails while they are
   stale. They are made under one Python and served under any (another argparse may lay the real help out slightly
   differently; what it says is the same). Help is rendered at a fixed width, :data:`HELP_WIDTH`, by the real parser
   too, so it never depends on the terminal. The ``--print_config`` answer also lists torch's ``AdamW`` arguments,
   so it is used only under the Python and torch/LitGPT/Lightning versions it was made with.
2. **Per user**, ``$LITCPT_CACHE_DIR/cli`` (default ``~/.cache/litcpt/cli``), written whenever a parser is built while
   the shipped answers are stale (an edited checkout); keyed by :func:`source_key`, the command, the Python version
   and the versions of LitGPT/Lightning/torch.

``LITCPT_NO_CLI_CACHE=1`` turns both off: every call builds the real parser.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from litcpt.cli.parser import HELP_WIDTH  # noqa: F401  (re-exported: columns of every --help, shipped or not)

PACKAGE = Path(__file__).resolve().parents[1]
SHIPPED_DIR = PACKAGE / "assets" / "cli"
REGENERATE = "python -m litcpt.cli.help_cache --regenerate"
_RUNTIME = ("litgpt", "lightning", "torch")  # what --print_config's defaults (and the user cache) also depend on
_ALWAYS_KNOWN = {"-h", "--help", "--config", "--print_config"}


def enabled() -> bool:
    return not os.environ.get("LITCPT_NO_CLI_CACHE")


def cache_dir() -> Path:
    root = os.environ.get("LITCPT_CACHE_DIR")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "litcpt") / "cli"


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "-"


def source_digest(package: Path = PACKAGE) -> str:
    """sha256 of the relative path and content of every ``.py`` file below ``package`` (line endings normalised,
    so a Windows checkout hashes the same)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py"), key=lambda p: p.relative_to(package).as_posix()):
        digest.update(f"{path.relative_to(package).as_posix()}\0".encode())
        digest.update(path.read_bytes().replace(b"\r\n", b"\n"))
        digest.update(b"\0")
    return digest.hexdigest()


@functools.cache
def source_key() -> str:
    """What the shipped answers depend on: litcpt's sources and the jsonargparse version."""
    return hashlib.sha256(f"{source_digest()}\njsonargparse={_version('jsonargparse')}\n".encode()).hexdigest()[:24]


def runtime_versions() -> dict[str, str]:
    return {"python": "{}.{}".format(*sys.version_info[:2]), **{name: _version(name) for name in _RUNTIME}}


def fingerprint(command: str) -> str:
    """The per-user cache key of ``command`` (see the module docstring)."""
    text = json.dumps([command, source_key(), sys.version, runtime_versions()])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _path(command: str) -> Path:
    return cache_dir() / f"{command}-{fingerprint(command)}.json"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def shipped(command: str) -> dict[str, Any] | None:
    """The shipped answers of ``command`` if they were made from these sources, else ``None``."""
    entry = _read(SHIPPED_DIR / f"{command}.json")
    if entry is None or entry.get("key") != source_key():
        return None
    if entry.get("versions") != runtime_versions():
        entry["print_config"] = None  # torch's AdamW arguments may differ: the real parser prints the defaults
    return entry


def load(command: str) -> dict[str, Any] | None:
    """What ``command``'s parser says about itself, shipped or cached per user, or ``None``."""
    if not enabled():
        return None
    return shipped(command) or _read(_path(command))


def store(command: str, parser: Any, positional: str | None) -> None:
    """Describe ``parser`` in the per-user cache (best effort: a read-only home only loses the speed-up)."""
    if not enabled():
        return
    try:
        from litcpt.runtime.atomic import write_text

        write_text(_path(command), json.dumps(answers(parser, positional)))
    except OSError:
        pass


def answers(parser: Any, positional: str | None) -> dict[str, Any]:
    """Everything the fast path answers from: :func:`describe`, the help text, the positional parameter and what
    ``--print_config`` alone prints (``None`` if it does not simply print and exit 0)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    printed = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            parser.parse_args(["--print_config"])
    except SystemExit as exit_:
        printed = out.getvalue() if exit_.code in (0, None) and not err.getvalue() else None
    except Exception:
        printed = None
    return {**describe(parser), "help": parser.format_help(), "positional": positional, "print_config": printed}


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


# --- the shipped answers: `python -m litcpt.cli.help_cache --regenerate` / `--check` ---------------------------------


def shipped_entry(command: str) -> dict[str, Any]:
    """``command``'s shipped answers, from its real parser built in this process (call it in a fresh one)."""
    import importlib

    from litcpt.cli.parser import COMMANDS, build_parser
    from litcpt.cli.parser import load_command as _load

    function = _load(COMMANDS[command])
    positional = getattr(importlib.import_module(function.__module__), "cli_positional", None)
    entry = answers(build_parser(command, function), positional)
    return {"command": command, "key": source_key(), "jsonargparse": _version("jsonargparse"),
            "versions": runtime_versions(), **entry}


def _render(entry: dict[str, Any]) -> str:
    return json.dumps(entry, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _fresh_entries(commands: list[str]) -> dict[str, str]:
    """``{command: rendered entry}``, each from a fresh ``python -m litcpt.cli.help_cache --entry`` process run in an
    empty directory (two at a time: each imports torch and Lightning)."""
    import subprocess
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])}
    env.pop("COLUMNS", None)
    with tempfile.TemporaryDirectory() as tmp:
        def one(command: str) -> str:
            out = Path(tmp) / f"{command}.json"
            proc = subprocess.run(
                [sys.executable, "-m", "litcpt.cli.help_cache", "--entry", command, str(out)],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"describing `litcpt {command}` failed:\n{proc.stderr[-3000:]}")
            return out.read_text(encoding="utf-8")

        with ThreadPoolExecutor(max_workers=2) as pool:
            return dict(zip(commands, pool.map(one, commands)))


def _commands(names: list[str] | None) -> list[str]:
    from litcpt.cli.parser import COMMANDS

    unknown = sorted(set(names or []) - set(COMMANDS))
    if unknown:
        raise SystemExit(f"unknown command(s) {unknown}; known: {sorted(COMMANDS)}")
    return list(names or COMMANDS)


def regenerate(names: list[str] | None = None) -> list[Path]:
    """Rewrite the shipped answers of ``names`` (default: every command, and drop files of removed commands)."""
    from litcpt.cli.parser import COMMANDS

    commands = _commands(names)
    SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for command, text in _fresh_entries(commands).items():
        path = SHIPPED_DIR / f"{command}.json"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    if not names:
        for path in SHIPPED_DIR.glob("*.json"):
            if path.stem not in COMMANDS:
                path.unlink()
    return written


def stale_keys() -> list[str]:
    """Commands whose shipped answers are missing or were made from other sources (cheap: no parser is built)."""
    from litcpt.cli.parser import COMMANDS

    return [c for c in COMMANDS if (_read(SHIPPED_DIR / f"{c}.json") or {}).get("key") != source_key()]


def differences(names: list[str] | None = None) -> list[str]:
    """What differs between the shipped answers and freshly built parsers, one line per command. The help and
    ``--print_config`` texts are compared only under the versions the files record (LitGPT or Lightning list
    subclasses in the help, torch's AdamW arguments are in the defaults); the options and types always."""
    problems = []
    fresh = _fresh_entries(_commands(names))
    for command, text in fresh.items():
        new = json.loads(text)
        old = _read(SHIPPED_DIR / f"{command}.json")
        if old is None:
            problems.append(f"{command}: no {SHIPPED_DIR.name}/{command}.json")
            continue
        same_versions = old.get("versions") == new["versions"] and old.get("jsonargparse") == new["jsonargparse"]
        fields = [
            k for k in sorted(set(old) | set(new)) if same_versions or k not in ("help", "print_config", "versions")
        ]
        changed = [k for k in fields if old.get(k) != new.get(k)]
        if "key" in changed:
            problems.append(f"{command}: made from other litcpt sources or another jsonargparse")
        elif changed:
            problems.append(f"{command}: {', '.join(changed)} differ")
    return problems


def _main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m litcpt.cli.help_cache",
        description="the answers shipped in litcpt/assets/cli (see litcpt/cli/help_cache.py)",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--regenerate", nargs="*", metavar="COMMAND", help="rewrite them (default: every command)")
    mode.add_argument(
        "--check", nargs="*", metavar="COMMAND", help="exit 1 if they are stale or differ from freshly built parsers"
    )
    mode.add_argument("--entry", nargs=2, metavar=("COMMAND", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.entry:
        command, out = args.entry
        Path(out).write_text(_render(shipped_entry(command)), encoding="utf-8")
    elif args.regenerate is not None:
        for path in regenerate(args.regenerate):
            print(f"wrote {path.relative_to(PACKAGE.parent)}")
    else:
        problems = differences(args.check)
        for problem in problems:
            print(f"stale: {problem}", file=sys.stderr)
        if problems:
            raise SystemExit(f"run `{REGENERATE}`")


if __name__ == "__main__":
    _main()
