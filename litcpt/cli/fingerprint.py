"""What can change a command's CLI, read from the syntax trees of litcpt's sources: one short digest per module that
stays the same when a comment, the layout or a function body changes, and changes with what a jsonargparse parser is
made from.

A parser is made from signatures, docstrings and class bodies (dataclass fields, attribute docstrings), and from the
objects that importing the command's modules creates (defaults, registries, the subclasses it lists). So a module's
digest covers its syntax tree (no comments, no line numbers) with the body of every function left out (its
docstring, signature and decorators stay), except the bodies that run while the modules are imported or that
jsonargparse reads:

- functions named by code that runs at import: module and class level values, defaults, decorators (not annotations
  or base classes, unless a call is in them; not ``if __name__ == "__main__":`` blocks);
- the methods that make, copy, compare or print an instance (``__init__``, ``__post_init__``, ``__repr__``,
  ``__deepcopy__``...) of the classes named there and of their base classes: default instances are made, copied and
  printed;
- the command functions, if they take ``*args``/``**kwargs`` (jsonargparse reads their source to find the keys they
  pass on); the classes in their annotations count as named at import (jsonargparse makes keys of them);
- the class-creation hooks ``__init_subclass__``, ``__set_name__``, ``__class_getitem__``;
- and, until nothing changes, whatever a kept body names.

Names are matched across the given modules by name alone (``x = f()`` keeps the body of every function called ``f``
in any of them; ``from m import f as g`` makes ``g`` name ``f`` too), which can only keep too much. Modules in
``whole`` (the code that builds and describes parsers) count with every body. The digests do not depend on the
Python version that parses the files (fields that newer versions add empty are skipped): answers made under one
Python are recognised under another.

What this cannot see: a body reached at import other than by a name (``getattr(module, "f")()``), or a file other
than Python source read at import to make a default or a ``Literal``. The shipped answers are also compared with
freshly built parsers (``python -m litcpt.cli.help_cache --check``, a slow test), which sees everything.

Pure: files in, digests out; nothing is imported or cached.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_HOOKS = frozenset({"__init_subclass__", "__set_name__", "__class_getitem__"})
# what making, copying, comparing and printing an instance runs (a default value is made, deep-copied and printed)
_INSTANCE = frozenset({
    "__init__", "__new__", "__post_init__",
    "__repr__", "__str__", "__format__", "__eq__", "__hash__", "__bool__", "__len__", "__iter__", "__getitem__",
    "__contains__", "__getattr__", "__getattribute__", "__setattr__", "__copy__", "__deepcopy__", "__reduce__",
    "__reduce_ex__", "__getstate__", "__setstate__"})
MISSING = "missing"
"""The digest of a module whose file is gone or does not parse (never equal to a real digest)."""


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _names(nodes: Iterable[ast.AST]) -> set[str]:
    """Every name and attribute name read in ``nodes`` (assigned ones are not: they call nothing)."""
    out: set[str] = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
                out.add(sub.id)
            elif isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Load):
                out.add(sub.attr)
    return out


def _called(node: ast.AST | None) -> Iterator[ast.Call]:
    """The calls inside an annotation or a base-class list (naming a type there runs nothing, calling does)."""
    return (sub for sub in ast.walk(node) if isinstance(sub, ast.Call)) if node is not None else iter(())


def _main_guard(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


def _base_name(node: ast.expr) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


@dataclass
class _Function:
    node: ast.FunctionDef | ast.AsyncFunctionDef
    owner: str | None  # the class it is defined in, None at module level

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def varargs(self) -> bool:
        return self.node.args.vararg is not None or self.node.args.kwarg is not None

    def kept(self, names: set[str], live: set[str], commands: frozenset[str]) -> bool:
        """Whether the body may run at import or be read by jsonargparse (see the module docstring)."""
        if self.name in _HOOKS or (self.owner is None and self.name in commands and self.varargs):
            return True
        if _dunder(self.name):
            return self.name in _INSTANCE and self.owner in live
        return self.name in names


class _Scan(ast.NodeVisitor):
    """What one module runs at import: the names it uses, its functions and its classes with their bases."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.functions: list[_Function] = []
        self.bases: dict[str, list[str]] = {}
        self.aliases: dict[str, str] = {}  # from x import f as g: g -> f
        self._owner: str | None = None

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.aliases.update({alias.asname: alias.name for alias in node.names if alias.asname})

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.names.add(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Load):
            self.names.add(node.attr)
        self.visit(node.value)

    def visit_If(self, node: ast.If) -> None:
        for stmt in (node.orelse if _main_guard(node) else [node.test, *node.body, *node.orelse]):
            self.visit(stmt)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        for call in _called(node.annotation):
            self.visit(call)
        for part in (node.target, node.value):
            if part is not None:
                self.visit(part)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append(_Function(node, self._owner))
        args = node.args
        for part in [*node.decorator_list, *args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.visit(part)
        for arg in [*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg]:
            for call in _called(arg.annotation if arg is not None else None):
                self.visit(call)
        for call in _called(node.returns):
            self.visit(call)

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.bases.setdefault(node.name, []).extend(filter(None, map(_base_name, node.bases)))
        for part in [*node.decorator_list, *(k.value for k in node.keywords)]:
            self.visit(part)
        for base in node.bases:
            for call in _called(base):
                self.visit(call)
        owner, self._owner = self._owner, node.name
        for stmt in node.body:
            self.visit(stmt)
        self._owner = owner


def _annotation_names(node: ast.AST | None) -> set[str]:
    """The names in an annotation, string annotations (``from __future__ import annotations``) included."""
    out: set[str] = set()
    for sub in ast.walk(node) if node is not None else ():
        if isinstance(sub, ast.Name):
            out.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            out.add(sub.attr)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            try:
                out |= _annotation_names(ast.parse(sub.value, mode="eval"))
            except SyntaxError:
                pass
    return out


def kept_bodies(trees: Iterable[ast.Module], commands: Iterable[str] = ()) -> set[int]:
    """``id()`` of every function node in ``trees`` whose body counts (see the module docstring). ``commands``: the
    names of the command functions: jsonargparse reads their source if they take ``*args``/``**kwargs``, and makes
    keys of the classes in their annotations (which count as named at import)."""
    commands = frozenset(commands)
    scans = []
    for tree in trees:
        scan = _Scan()
        scan.visit(tree)
        scans.append(scan)
    functions = [f for scan in scans for f in scan.functions]
    bases: dict[str, list[str]] = {}
    aliases: dict[str, set[str]] = {}
    names: set[str] = set()
    for scan in scans:
        names |= scan.names
        for cls, of in scan.bases.items():
            bases.setdefault(cls, []).extend(of)
        for alias, name in scan.aliases.items():
            aliases.setdefault(alias, set()).add(name)
    for function in functions:
        if function.owner is None and function.name in commands:
            args = function.node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                names |= _annotation_names(arg.annotation)
    kept: set[int] = set()
    while True:
        before = (len(kept), len(names))
        for alias in names & set(aliases):
            names |= aliases[alias]
        live = {cls for cls in bases if cls in names}
        for cls in live:
            names.update(bases[cls])
        for function in functions:
            if id(function.node) not in kept and function.kept(names, live, commands):
                kept.add(id(function.node))
                names |= _names(function.node.body)
        if (len(kept), len(names)) == before:
            return kept


def _docstring_only(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
        first.value.value, str)
    return [first] if is_doc else []


def _canon(node: object, out: list[str], kept: set[int] | None) -> None:
    """A text for ``node`` that is the same under every Python version (empty and ``None`` fields are skipped);
    function bodies not in ``kept`` are left out (``kept=None``: none is)."""
    if isinstance(node, ast.AST):
        out.append(f"({type(node).__name__}")
        drop = kept is not None and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and id(node) not in kept
        inner = None if (kept is not None and not drop and isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef))) else kept  # a kept body is kept whole
        for field in node._fields:
            value = getattr(node, field, None)
            if drop and field == "body":
                value = _docstring_only(value)
            if value is None or (isinstance(value, list) and not value):
                continue
            out.append(f" {field}=")
            _canon(value, out, inner)
        out.append(")")
    elif isinstance(node, list):
        out.append("[")
        for item in node:
            _canon(item, out, kept)
            out.append(",")
        out.append("]")
    else:
        out.append(repr(node))


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None


def digests(root: Path, modules: Iterable[str], whole: Iterable[str] = (), commands: Iterable[str] = ()
            ) -> dict[str, str]:
    """``{module: digest}`` for the ``.py`` files ``modules`` (paths relative to ``root``, ``/``-separated), read
    together (a name in one keeps bodies in the others); bodies in ``whole`` all count; ``commands``: see
    :func:`kept_bodies`."""
    whole = set(whole)
    trees = {rel: _parse(Path(root, rel)) for rel in sorted(set(modules) | whole)}
    kept = kept_bodies((tree for rel, tree in trees.items() if tree is not None and rel not in whole), commands)
    out = {}
    for rel, tree in trees.items():
        if tree is None:
            out[rel] = MISSING
            continue
        text: list[str] = []
        _canon(tree, text, None if rel in whole else kept)
        out[rel] = hashlib.sha256("".join(text).encode()).hexdigest()[:16]
    return out
