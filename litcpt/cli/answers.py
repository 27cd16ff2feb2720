"""What a command's jsonargparse parser says about itself, as plain data: its help text, option strings, the options
that take nested keys, the simple types of options, what ``--print_config`` alone prints, and which installed
distributions each of these depends on. :mod:`litcpt.cli.help_cache` ships and caches them; this module's code is
part of their fingerprint (see :data:`litcpt.cli.help_cache.WHOLE`): a change here changes what they say.
"""

from __future__ import annotations

import contextlib
import io
import re
import typing
from collections.abc import Mapping
from typing import Any

ALWAYS: dict[str, list[str]] = {
    "options": ["jsonargparse"],  # options, nested, kinds, positional: from litcpt's signatures, by jsonargparse
    "help": ["python", "jsonargparse", "docstring-parser"],  # argparse lays it out; docstrings give the texts
    "print_config": ["jsonargparse"],
    "classes": ["jsonargparse"],  # the classes options take and their parameters, also on the classes' libraries
}
"""What each part always depends on (``python``: the minor version), besides the distributions it names."""


def answers(parser: Any, positional: str | None) -> dict[str, Any]:
    """Everything the fast path answers from: :func:`describe`, the help text, the positional parameter and what
    ``--print_config`` alone prints (``None`` if it does not simply print and exit 0)."""
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
    """``{"options", "nested", "kinds", "expanded", "accepts", "classes"}`` of a jsonargparse parser: every option
    string, the options that take nested keys (``--data``, ``--optimizer``...), ``{option: simple_kind}``, the
    top-level packages of the classes expanded into keys (``--train.*``) that are not litcpt's, ``{option: [class
    path, ...]}`` of the options that take a class, and ``{class path: [parameter, ...]}`` of those classes (what
    :mod:`litcpt.cli.recipe_keys` checks ``init_args`` against)."""
    from jsonargparse._typehints import ActionTypeHint

    options, nested, kinds, accepts = [], [], {}, {}
    for action in parser._actions:
        options += action.option_strings
        if isinstance(action, ActionTypeHint):
            nested += [o for o in action.option_strings if o.startswith("--")]
            kind = simple_kind(getattr(action, "_typehint", None))
            if kind is not None:
                kinds.update({o: kind for o in action.option_strings if o.startswith("--")})
            paths = _subclass_paths(getattr(action, "_typehint", None))
            if paths:
                accepts[action.dest] = paths
    groups = [getattr(group, "group_class", None) for group in getattr(parser, "groups", {}).values()]
    expanded = {c.__module__.split(".")[0] for c in groups if isinstance(c, type)} - {"litcpt"}
    classes = {path: params for path in sorted({p for ps in accepts.values() for p in ps})
               if (params := _parameters(path)) is not None}
    return {"options": sorted(set(options)), "nested": sorted(set(nested)), "kinds": kinds,
            "expanded": sorted(expanded), "accepts": accepts, "classes": classes}


def _subclass_paths(typehint: Any) -> list[str]:
    """The class paths jsonargparse knows for an option of type ``typehint`` (those of
    :data:`~litcpt.cli.parser.RECIPE_CLASSES` among them), in its order; ``[]`` if it takes no class."""
    from jsonargparse._typehints import get_all_subclass_paths, get_subclass_types

    types = get_subclass_types(typehint, also_lists=True, callable_return=True) if typehint is not None else None
    if not types:
        return []
    return list(dict.fromkeys(p for t in types for p in get_all_subclass_paths(t)))


def _parameters(class_path: str) -> list[str] | None:
    """The parameter names jsonargparse accepts in ``init_args`` of ``class_path`` (``None`` if it cannot say)."""
    from jsonargparse._parameter_resolvers import get_signature_parameters
    from jsonargparse._util import import_object

    try:
        return sorted({p.name for p in get_signature_parameters(import_object(class_path))})
    except Exception:
        return None


def simple_kind(typehint: Any) -> dict[str, Any] | None:
    """``{"types": [...], "choices": [...]}`` for a type hint made only of int, float, bool, None and Literal
    members (what the cache can check a value against); ``None`` for anything else."""
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


def depends(entry: Mapping[str, Any], distributions: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """``{"options"|"help"|"print_config"|"classes": [distribution, ...]}``: :data:`ALWAYS`, the distributions of the
    classes expanded into keys, those whose packages a text names (``lightning.pytorch.callbacks.EMA``,
    ``torch.optim.AdamW``: lists of subclasses, torch's AdamW arguments) and, for ``classes``, those of the classes
    options take. ``distributions``: import name -> distribution names, as
    ``importlib.metadata.packages_distributions()``."""

    def of(packages: list[str]) -> set[str]:
        return {d for p in packages for d in distributions.get(p, [p])}

    expanded = of(list(entry.get("expanded", [])))
    classes = of(sorted({c.split(".")[0] for c in entry.get("classes", {})} - {"litcpt"}))
    out = {}
    for part, always in ALWAYS.items():
        text = entry.get(part) if part in ("help", "print_config") else None
        named = [p for p in distributions if p != "litcpt" and text
                 and re.search(rf"(?<![\w.]){re.escape(p)}\.[A-Za-z_]", text)]
        out[part] = sorted(set(always) | expanded | of(named) | (classes if part == "classes" else set()))
    return out
