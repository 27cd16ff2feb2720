"""Every dotted ``litcpt.`` name that the docs (README.md, docs/*.md, recipes) and the docstrings and comments of
``litcpt/`` mention resolves to a module or an attribute of one: a rename cannot leave a stale name behind."""

from __future__ import annotations

import importlib
import inspect
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"(?<![\w./-])(litcpt(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
RESULT_KEYS = ("litcpt.sections", "litcpt.subsets")
"""Keys of ``results.json`` (``litcpt rewardbench``), not Python names."""


def mentions(text: str) -> set[str]:
    """The dotted litcpt names in ``text`` (a trailing ``.py`` or a method call is cut off by the caller)."""
    found = {m.group(1).rstrip(".") for m in NAME.finditer(text)}
    return {n for n in found if not n.startswith(RESULT_KEYS)}


@cache
def resolves(name: str) -> bool:
    """``name`` is a module, or an attribute (class, function, constant, method) of an importable prefix. A class or
    function named through a plain module (not a package's public namespace) must be defined in that module: a name
    that only works because the module happens to import it is stale."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            parent, obj = obj, getattr(obj, attr)
            if (inspect.ismodule(parent) and not hasattr(parent, "__path__")
                    and (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ != parent.__name__):
                return False
        return True
    return False


def sources() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "recipes").rglob("*.yaml"))]
    files += sorted((ROOT / "litcpt").rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    return files


def stale_names(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return sorted(name for name in mentions(text) if not resolves(name))


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_litcpt_name_resolves(path):
    stale = stale_names(path)
    assert not stale, f"{path.relative_to(ROOT)} names what does not exist: {stale}"


def test_the_check_can_fail():
    assert mentions("see `litcpt.data.TextFiles` and litcpt/data (a path)") == {"litcpt.data.TextFiles"}
    assert resolves("litcpt.data.TextFiles") and resolves("litcpt.schedules.formulas")
    assert not resolves("litcpt.data.NoSuchThing") and not resolves("litcpt.no_such_module")
    assert not resolves("litcpt.models.dpo.DPOLoss")  # imported there, defined in litcpt.losses.preference
