"""The layers of litcpt, read from the source with ``ast`` (no imports run): a command never imports another command
(what several commands share lives in modules below ``litcpt/commands/``), and no litcpt modules import each other
in a cycle, neither at module level nor through imports inside functions."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "litcpt"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str], *, top_level_only: bool) -> set[str]:
    """The litcpt modules ``path`` imports (``from litcpt.x import y`` counts ``litcpt.x.y`` when that is a module;
    relative imports resolved). ``top_level_only``: only statements run when the module is imported (not inside a
    function; ``if TYPE_CHECKING:`` blocks are skipped, they never run)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)) and not (top_level_only and in_function):
                targets: list[str] = []
                if isinstance(child, ast.Import):
                    targets = [a.name for a in child.names]
                else:
                    base = child.module or ""
                    if child.level:
                        anchor = package.split(".")
                        anchor = anchor[: len(anchor) - (child.level - 1)]
                        base = ".".join(anchor + ([base] if base else []))
                    targets = [base] + [f"{base}.{a.name}" for a in child.names]
                for target in targets:
                    if target in known:
                        found.add(target)
                    elif target.rpartition(".")[0] in known and target.startswith("litcpt"):
                        found.add(target.rpartition(".")[0])
            visit(child, nested)

    visit(tree, False)
    found.discard(name)
    return found


@functools.lru_cache(maxsize=2)
def graph(*, top_level_only: bool) -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods), top_level_only=top_level_only) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return found


def importers_of_parents(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first; those count as imported too."""
    out = {}
    for name, targets in edges.items():
        full = set(targets)
        for t in targets:
            parts = t.split(".")
            full.update(".".join(parts[:i]) for i in range(2, len(parts)))
        full.discard(name)
        out[name] = {t for t in full if t in edges and not name.startswith(t + ".")}
    return out


def test_a_command_never_imports_another_command():
    offenders = []
    for name, targets in graph(top_level_only=False).items():
        if name.startswith("litcpt.commands."):
            offenders += [f"{name} -> {t}" for t in sorted(targets) if t.startswith("litcpt.commands.")]
    assert not offenders, "commands import other commands (move what they share below litcpt/commands/):\n" + \
        "\n".join(offenders)


def test_nothing_below_the_commands_imports_a_command_or_the_cli():
    """The layers: cli -> commands -> everything else; a lower module never reaches up (only litcpt.cli.main and
    ``python -m litcpt`` import the CLI)."""
    offenders = []
    for name, targets in graph(top_level_only=False).items():
        if name.startswith("litcpt.commands.") or name in ("litcpt.cli.main", "litcpt.__main__"):
            continue
        offenders += [f"{name} -> {t}" for t in sorted(targets)
                      if t.startswith("litcpt.commands") or t == "litcpt.cli.main"]
    assert not offenders, "modules below the commands import upwards:\n" + "\n".join(offenders)


def test_no_import_cycle_at_module_level():
    found = cycles(importers_of_parents(graph(top_level_only=True)))
    assert not found, f"module-level import cycles among litcpt modules: {found}"


KNOWN_FUNCTION_LEVEL_CYCLES: list[list[str]] = []
"""Cycles through imports inside functions that are tolerated for now; a new one fails the test."""


def test_no_import_cycle_through_function_imports():
    found = [
        c for c in cycles(importers_of_parents(graph(top_level_only=False))) if c not in KNOWN_FUNCTION_LEVEL_CYCLES
    ]
    assert not found, f"import cycles among litcpt modules (function-level imports included): {found}"


def test_the_checks_can_fail():
    """The graph and the cycle finder see what they must: a two-module cycle, and today's real import edges."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    edges = graph(top_level_only=False)
    assert "litcpt.training.pretrain" in edges["litcpt.commands.pretrain"]
    assert "litcpt.training.anneal_source" in edges["litcpt.commands.anneal"]
    assert "litcpt.training.pretrain" in edges["litcpt.training.recipe"]  # a function-level import
