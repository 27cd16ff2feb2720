"""Unknown keys inside a recipe (``--config``, nested keys and ``init_args`` too) and in ``--<option>.init_args.<key>``
flags, each with the closest known key, from what a command's parser says about itself (:mod:`litcpt.cli.answers`:
its option strings and, for each option that takes a class, the parameters of the classes it knows). Cheap: reads
YAML, imports neither torch nor the command, so the shipped answers (:mod:`litcpt.cli.help_cache`) can say it at once.

When in doubt it says nothing: a class it does not know (a user's own), a value that is not a mapping where one could
be: the real parser checks every key again.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

_SPEC_KEYS = frozenset({"class_path", "init_args", "dict_kwargs", "__path__"})


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _class_of(name: Any, accepted: list[str]) -> str | None:
    """The class path that ``name`` (a class path or a class name, as jsonargparse accepts it) stands for."""
    if not isinstance(name, str):
        return None
    if name in accepted:
        return name
    found = [c for c in accepted if c.rsplit(".", 1)[-1] == name]
    return found[0] if len(found) == 1 else name


class _Checker:
    """Walks a recipe's YAML nodes (for their line numbers) against one parser's description."""

    def __init__(self, entry: dict[str, Any]):
        self.keys = [o[2:] for o in entry.get("options", []) if o.startswith("--") and not o.endswith("+")]
        self.nested = {o[2:] for o in entry.get("nested", []) if not o.endswith("+")}
        self.classes: dict[str, list[str]] = entry.get("classes") or {}
        self.accepts: dict[str, list[str]] = entry.get("accepts") or {}

    def group(self, node: Any, prefix: str) -> tuple[int, str] | None:
        """Keys of a mapping at ``prefix`` (``""``: the recipe itself, ``"train."``: a group of options)."""
        import yaml

        if not isinstance(node, yaml.MappingNode):
            return None
        for key_node, value in node.value:
            name = f"{prefix}{key_node.value}"
            if name in self.nested:
                found = self.value(value, self.accepts.get(name, []), name)
            elif name in self.keys:
                below = f"{name}."
                found = self.group(value, below) if any(k.startswith(below) for k in self.keys) else None
            else:
                found = key_node.start_mark.line + 1, _suggest(name, self.keys)
            if found:
                return found
        return None

    def value(self, node: Any, accepted: list[str], name: str) -> tuple[int, str] | None:
        """A value of an option that takes classes: ``{class_path, init_args}``, a list of them, or a name."""
        import yaml

        if isinstance(node, yaml.SequenceNode):
            return next(filter(None, (self.value(item, accepted, name) for item in node.value)), None)
        if not isinstance(node, yaml.MappingNode):
            return None
        keys = {k.value: v for k, v in node.value}
        path = keys.get("class_path")
        cls = _class_of(path.value if isinstance(path, yaml.ScalarNode) else None, accepted or list(self.classes))
        if cls not in self.classes:
            return None
        params = self.classes[cls]
        init = [(k, v, f"{name}.init_args.") for k, v in keys.get("init_args", yaml.MappingNode("", [])).value]
        init += [(k, v, f"{name}.") for k, v in node.value if k.value not in _SPEC_KEYS]
        for key_node, value, where in init:
            if key_node.value not in params:
                known = [f"{where}{p}" for p in params]
                return key_node.start_mark.line + 1, _suggest(f"{where}{key_node.value}", known)
            found = self.value(value, [], f"{where}{key_node.value}")
            if found:
                return found
        return None


def recipe_problem(path: str, entry: dict[str, Any]) -> str | None:
    """``"<path>, line N: unknown key 'a.b' (did you mean 'a.c'?)"`` for the first unknown key of the recipe at
    ``path``; ``None`` if there is none, or if the file cannot be read (the real parser says why)."""
    import yaml

    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    found = _Checker(entry).group(root, "")
    return f"{path}, line {found[0]}: {found[1]}" if found else None


def _recipe_classes(path: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return {k: v.get("class_path") for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def _defaults(entry: dict[str, Any]) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(entry.get("print_config") or "")
    except yaml.YAMLError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v.get("class_path") if isinstance(v, dict) else v for k, v in data.items()}


def _pairs(args: list[str]) -> list[tuple[str, str | None]]:
    """``[(--key, value or None), ...]`` of a command line."""
    out = []
    for i, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        key, eq, text = arg.partition("=")
        nxt = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else None
        out.append((key, text if eq else nxt))
    return out


def flag_problem(args: list[str], entry: dict[str, Any]) -> str | None:
    """The first ``--<option>.init_args.<key>`` (or ``--<option>.<key>``) of ``args`` that the class given to the
    option (by the flags before it, a ``--config`` recipe or the default) does not take, with the closest key."""
    nested = {o[2:] for o in entry.get("nested", []) if not o.endswith("+")}
    classes, accepts = entry.get("classes") or {}, entry.get("accepts") or {}
    chosen = _defaults(entry) if (classes and nested) else {}
    for key, text in _pairs(args):
        name = key[2:]
        if name == "config" and text:
            chosen.update(_recipe_classes(text))
        elif name in nested:
            chosen[name] = text
        elif name.endswith(".class_path") and name[: -len(".class_path")] in nested:
            chosen[name[: -len(".class_path")]] = text
        else:
            option = next((o for o in nested if name.startswith(f"{o}.")), None)
            if option is None or name in (f"{option}.help", f"{option}.init_args"):
                continue
            rest = name[len(option) + 1:]
            where = f"{option}.init_args." if rest.startswith("init_args.") else f"{option}."
            param = rest[len(where) - len(option) - 1:].split(".")[0]
            cls = _class_of(chosen.get(option), accepts.get(option, []))
            if cls in classes and param not in classes[cls]:
                return _suggest(f"--{where}{param}", [f"--{where}{p}" for p in classes[cls]])
    return None


def problem(args: list[str], entry: dict[str, Any]) -> str | None:
    """The first unknown key of the recipes given by ``--config`` in ``args``, then of the ``init_args`` flags."""
    for key, text in _pairs(args):
        if key == "--config" and text:
            found = recipe_problem(text, entry)
            if found:
                return found
    return flag_problem(args, entry)
