"""Answer ``litcpt <command> --help`` and unknown keys at once, without importing torch, Lightning or LitGPT.

A command's typed signature stays its schema: the jsonargparse parser is built from it as before. Building it means
importing the command's types (LitGPT's ``Config`` and ``DataModule``, Lightning's ``Callback``, torch optimizers),
about 5 s of imports before anything can be said. So what a command's parser says about itself is written down
(:mod:`litcpt.cli.answers`): its help text, its option strings, the options that take nested keys (``--data``,
``--optimizer``...), the types of options that are plain int/float/bool/None/Literal, the command's positional
parameter and what ``--print_config`` alone prints (the defaults). ``--help``, ``--print_config`` alone, a key that
the parser would reject as unknown (``--train.max_tokns``) and a plainly wrong simple value (``--train.max_steps
abc``) are answered from that in a fraction of a second, and so are unknown keys of a ``--config`` recipe and of
``init_args`` (the classes each option takes and their parameters: :mod:`litcpt.cli.recipe_keys`). Anything else
(values inside ``init_args``, ``--print_config`` with other arguments) goes through the real parser, which checks
every value again.

**When the answers are right.** Each entry records what it was made from, and is used only while that still holds:

- ``modules``: a digest of every litcpt module the parser's process had imported (:func:`loaded_modules`), from its
  syntax tree with comments, layout and function bodies left out, except the bodies that run while the modules are
  imported or that jsonargparse reads (:mod:`litcpt.cli.fingerprint`). The code that builds and describes parsers
  (:data:`WHOLE`) counts whole. Editing a comment or a function body leaves the digests as they are; a new key, a
  docstring line, a type, a default, a class-level line or a module-level line of those modules changes them, and
  then the answers are not used: the real parser answers, slow but right.
- ``versions`` and ``depends``: the installed versions each part depends on (:func:`litcpt.cli.answers.depends`):
  the option strings and types on jsonargparse; the help also on the Python minor version (argparse lays it out),
  docstring-parser, and the libraries it names by a dotted path (the LitGPT DataModules and Lightning callbacks it
  lists); the ``--print_config`` text on those it names (torch, for ``AdamW``'s arguments); all three on the library
  of any class not litcpt's that is expanded into keys. A part whose versions differ is not used; the option strings
  and types are needed for anything to be used (local labels such as ``+cpu`` are ignored: the Python code is the
  same).

Two places hold these answers, tried in order:

1. **Shipped** with the package, ``litcpt/assets/cli/<command>.json``, so that even the first call on a fresh install
   is fast. ``python -m litcpt.cli.help_cache --regenerate`` rewrites them, one fresh process per command (the help
   lists the known subclasses of ``--data`` or ``--callbacks``, which depend on what the process imported, exactly as
   in ``litcpt <command> --help``). ``tests/cli/test_cli_fast.py`` checks that their digests match the sources (fast:
   no parser is built) and, in a slow test, that they say what freshly built parsers say
   (``python -m litcpt.cli.help_cache --check``), so they cannot silently lie. Help is rendered at a fixed width,
   :data:`~litcpt.cli.parser.HELP_WIDTH`, by the real parser too, so it never depends on the terminal.
2. **Per user**, ``$LITCPT_CACHE_DIR/cli`` (default ``~/.cache/litcpt/cli``), one file per command, checkout and
   environment, written whenever the real parser runs while no complete entry is usable (an edited checkout whose
   CLI changed, other library versions); checked in the same way.

``LITCPT_NO_CLI_CACHE=1`` turns both off: every call builds the real parser.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1]
SHIPPED_DIR = PACKAGE / "assets" / "cli"
REGENERATE = "python -m litcpt.cli.help_cache --regenerate"
WHOLE = ("cli/parser.py", "cli/answers.py")
"""Modules whose every function body counts: they build the parsers and write down what they say."""
_SERVING = frozenset({"__main__.py", "cli/main.py", "cli/errors.py", "cli/help_cache.py", "cli/fingerprint.py",
                      "cli/recipe_keys.py"})
"""Modules of the CLI that serve the answers: not part of any parser."""
_FIELDS = {"options": ("options", "nested", "kinds", "positional", "expanded"), "help": ("help",),
           "print_config": ("print_config",), "classes": ("accepts", "classes")}
"""Which fields of an entry each part of :func:`litcpt.cli.answers.depends` covers."""
_ALWAYS_KNOWN = {"-h", "--help", "--config", "--print_config"}


def enabled() -> bool:
    return not os.environ.get("LITCPT_NO_CLI_CACHE")


def cache_dir() -> Path:
    root = os.environ.get("LITCPT_CACHE_DIR")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "litcpt") / "cli"


def version(distribution: str) -> str:
    """The installed version of ``distribution`` without its local label (``2.13.0+cpu`` -> ``2.13.0``), ``-`` if
    it is not installed; ``python``: the Python minor version."""
    if distribution == "python":
        return "{}.{}".format(*sys.version_info[:2])
    from importlib import metadata

    try:
        return metadata.version(distribution).split("+")[0]
    except metadata.PackageNotFoundError:
        return "-"


def _command_functions() -> list[str]:
    from litcpt.cli.parser import COMMANDS

    return sorted({target.partition(":")[2] for target in COMMANDS.values()})


def digests(modules: list[str] | dict[str, str], package: Path = PACKAGE) -> dict[str, str]:
    """The digests of ``modules`` (paths below ``package``) as :mod:`litcpt.cli.fingerprint` computes them (~0.3 s:
    every file is parsed), remembered in this process for files whose inode, size and modification time are unchanged
    (a process that runs several commands, as tests and the demo do, reads each file once)."""
    from litcpt.cli.fingerprint import digests as _digests

    names = tuple(sorted(modules))
    key = (str(package), names, tuple(_stat(package / name) for name in names))
    if key not in _DIGESTS:
        if len(_DIGESTS) >= 64:
            _DIGESTS.clear()
        _DIGESTS[key] = _digests(package, modules, [m for m in WHOLE if m in modules], _command_functions())
    return dict(_DIGESTS[key])


_DIGESTS: dict[tuple, dict[str, str]] = {}
"""The memo of :func:`digests`, keyed by the files' :func:`_stat`."""


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def loaded_modules() -> list[str]:
    """The litcpt modules this process has imported (paths below :data:`PACKAGE`), but those serving the answers."""
    out = set(WHOLE)
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if (name == "litcpt" or name.startswith("litcpt.")) and file:
            try:
                rel = Path(file).resolve().relative_to(PACKAGE).as_posix()
            except ValueError:
                continue
            if rel not in _SERVING:
                out.add(rel)
    return sorted(out)


def make_entry(command: str, parser: Any, positional: str | None) -> dict[str, Any]:
    """What ``parser`` says (:func:`litcpt.cli.answers.answers`) with what it was made from: the digests of the
    modules this process has imported (build the parser first) and the versions each part depends on."""
    from importlib import metadata

    from litcpt.cli.answers import answers, depends

    said = answers(parser, positional)
    parts = depends(said, metadata.packages_distributions())
    versions = {d: version(d) for d in sorted({d for ds in parts.values() for d in ds})}
    return {"command": command, "modules": digests(loaded_modules()), "versions": versions, "depends": parts,
            **said}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def usable(found: dict[str, Any] | None, package: Path = PACKAGE) -> dict[str, Any] | None:
    """``found`` if the sources it was made from are unchanged (see the module docstring), with the parts made under
    other versions set to ``None`` (and ``"partial": True``); ``None`` if it cannot be used at all."""
    modules, parts, made = (found or {}).get("modules"), (found or {}).get("depends"), (found or {}).get("versions")
    if not (isinstance(modules, dict) and modules and isinstance(parts, dict) and isinstance(made, dict)):
        return None
    if set(parts) != set(_FIELDS) or not all(isinstance(p, list) for p in parts.values()):
        return None
    if digests(modules, package) != modules:
        return None
    out = dict(found)
    for part, fields in _FIELDS.items():
        if any(version(d) != made.get(d) for d in parts[part]):
            if part == "options":
                return None
            out.update(dict.fromkeys(fields), partial=True)
    return out


def _user_path(command: str) -> Path:
    """One file per command, checkout (:data:`PACKAGE`) and environment (``sys.prefix``, the Python build)."""
    where = hashlib.sha256(f"{PACKAGE}\0{sys.prefix}\0{sys.version}".encode()).hexdigest()[:16]
    return cache_dir() / f"{command}-{where}.json"


def shipped(command: str) -> dict[str, Any] | None:
    """The shipped answers of ``command`` if they can be used here (see :func:`usable`), else ``None``."""
    return usable(_read(SHIPPED_DIR / f"{command}.json"))


def load(command: str) -> dict[str, Any] | None:
    """What ``command``'s parser says about itself, shipped or cached per user, or ``None``: a complete entry if
    there is one, else the usable parts of the shipped one."""
    if not enabled():
        return None
    found = shipped(command)
    if found is not None and not found.get("partial"):
        return found
    mine = usable(_read(_user_path(command)))
    return mine if mine is not None and not mine.get("partial") else found


def store(command: str, parser: Any, positional: str | None) -> None:
    """Describe ``parser`` in the per-user cache (best effort: a read-only home only loses the speed-up). Not in a
    process that has loaded another command (several commands run in one process, as in tests): its parser lists
    the subclasses of both, which ``litcpt <command>`` alone would not."""
    from litcpt.cli.parser import COMMANDS

    others = {target.partition(":")[0] for name, target in COMMANDS.items() if name != command}
    if not enabled() or others & set(sys.modules):
        return
    made = make_entry(command, parser, positional)  # before importing more litcpt modules
    try:
        from litcpt.runtime.atomic import write_text

        write_text(_user_path(command), json.dumps(made))
    except OSError:
        pass


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
    from litcpt.cli.parser import COMMANDS, build_parser, load_command

    function = load_command(COMMANDS[command])
    positional = getattr(sys.modules[function.__module__], "cli_positional", None)
    return make_entry(command, build_parser(command, function), positional)


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


def _changed(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return sorted(m for m in set(old) | set(new) if old.get(m) != new.get(m))


def stale() -> dict[str, str]:
    """``{command: why}`` for the commands whose shipped answers are missing or were made from other sources than
    these (cheap: the digests are compared, no parser is built)."""
    from litcpt.cli.parser import COMMANDS

    out = {}
    for command in COMMANDS:
        found = _read(SHIPPED_DIR / f"{command}.json")
        modules = (found or {}).get("modules")
        if not isinstance(modules, dict):
            out[command] = f"no {SHIPPED_DIR.name}/{command}.json" if found is None else "no digests"
            continue
        changed = _changed(modules, digests(modules))
        if changed:
            out[command] = "changed since they were made: " + ", ".join(changed)
    return out


def _compare(command: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between ``command``'s shipped entry ``old`` and a fresh one, ``new`` (see :func:`differences`)."""
    problems = []
    changed = _changed(old.get("modules") or {}, new["modules"])
    if changed:
        problems.append(f"{command}: made from other sources ({', '.join(changed)} changed)")
    known = {"command", "modules", "versions", "depends"} | {f for fields in _FIELDS.values() for f in fields}
    extra = sorted((set(old) | set(new)) - known)
    if extra:
        problems.append(f"{command}: fields {extra} are not known")
    made = old.get("versions") or {}
    for part, fields in _FIELDS.items():
        deps = sorted(set(new["depends"][part]) | set((old.get("depends") or {}).get(part, [])))
        other = [f"{d} {made.get(d, '-')} (here {new['versions'].get(d, version(d))})" for d in deps
                 if made.get(d) != new["versions"].get(d, version(d))]
        if other:
            problems.append(f"{command}: {part} made under other versions: {', '.join(other)}")
            continue
        differ = [f for f in fields if old.get(f) != new.get(f)]
        if (old.get("depends") or {}).get(part) != new["depends"][part]:
            differ.append(f"depends.{part}")
        if differ:
            problems.append(f"{command}: {', '.join(differ)} differ from a freshly built parser")
    return problems


def differences(names: list[str] | None = None) -> list[str]:
    """What differs between the shipped answers and freshly built parsers, one line per problem: other sources (the
    digests), other versions, or other content (compared part by part, where the versions are the same)."""
    problems = []
    for command, text in _fresh_entries(_commands(names)).items():
        old = _read(SHIPPED_DIR / f"{command}.json")
        if old is None:
            problems.append(f"{command}: no {SHIPPED_DIR.name}/{command}.json")
        else:
            problems += _compare(command, old, json.loads(text))
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
