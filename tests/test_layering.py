"""The layers of litcpt, read from the source with ``ast`` (no imports run, imports inside functions included): every
package imports only the packages that the table of ``docs/architecture.md`` allows, a command never imports another
command, no litcpt modules import each other in a cycle, and the import picture in ``docs/architecture.md`` is the
one the code draws today (``python tests/test_layering.py --write`` redraws it)."""

from __future__ import annotations

import ast
import functools
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "litcpt"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


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


def package_of(module: str) -> str:
    """The top-level package of a litcpt module (``litcpt.data.text.blocks`` -> ``data``); the root modules
    (``litcpt``, ``litcpt._compat``, ``litcpt.__main__``) are their own."""
    parts = module.split(".")
    return "litcpt" if len(parts) == 1 else parts[1]


def layer_table(text: str | None = None) -> dict[str, set[str]]:
    """``package -> packages it may import``, read from the table of ``docs/architecture.md`` (rows
    ``| `package` | `a`, `b` |``; ``—`` for none) between its ``<!-- layers -->`` markers."""
    text = ARCHITECTURE.read_text(encoding="utf-8") if text is None else text
    body = text.split("<!-- layers -->")[1]
    table: dict[str, set[str]] = {}
    for row in body.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        table[cells[0].strip("`")] = set(re.findall(r"`([\w_]+)`", cells[1]))
    return table


ALWAYS = {"litcpt", "_compat", "_private"}
"""What every package may import: the package root (it runs the version gate of ``_compat``), ``_compat`` and
``_private`` (every use of private Lightning / LitGPT / torch API)."""


def package_edges(edges: dict[str, set[str]]) -> dict[tuple[str, str], list[str]]:
    """``(package, package it imports) -> the module imports behind that arrow``."""
    out: dict[tuple[str, str], list[str]] = {}
    for name, targets in edges.items():
        for target in targets:
            a, b = package_of(name), package_of(target)
            if a != b:
                out.setdefault((a, b), []).append(f"{name} -> {target}")
    return out


def layer_violations(edges: dict[str, set[str]], table: dict[str, set[str]]) -> list[str]:
    problems = []
    for (a, b), examples in sorted(package_edges(edges).items()):
        if a in ALWAYS:
            continue
        if a not in table:
            problems.append(f"package {a!r} is not in the layer table of docs/architecture.md")
        elif b not in table[a] | ALWAYS:
            problems.append(f"{a} may not import {b}: {', '.join(sorted(examples)[:3])}")
    return problems


def test_every_package_imports_only_what_the_layer_table_allows():
    table = layer_table()
    packages = {package_of(m) for m in modules()}
    assert packages - ALWAYS <= set(table), f"packages missing from the table: {packages - set(table)}"
    problems = layer_violations(graph(top_level_only=False), table)
    assert not problems, "imports that the layer table of docs/architecture.md does not allow:\n" + "\n".join(problems)


def test_the_layer_table_has_no_cycle():
    """The table itself is a stack: no package may (even indirectly) import one that may import it."""
    table = layer_table()
    found = cycles({a: {b for b in allowed if b in table} for a, allowed in table.items()})
    assert not found, f"the layer table allows cycles: {found}"


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
    """The graph, the table reader and the cycle finder see what they must."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    edges = graph(top_level_only=False)
    assert "litcpt.training.pretrain" in edges["litcpt.commands.pretrain"]
    assert "litcpt.training.pretrain" in edges["litcpt.demo.runtime"]  # a function-level import
    table = layer_table("<!-- layers -->\n| `data` | `runtime`, `schedules` |\n| `runtime` | — |\n<!-- layers -->")
    assert table == {"data": {"runtime", "schedules"}, "runtime": set()}
    assert layer_violations({"litcpt.runtime.x": {"litcpt.data.y"}}, table) == [
        "runtime may not import data: litcpt.runtime.x -> litcpt.data.y"]


def reduced_package_edges() -> set[tuple[str, str]]:
    """The package arrows of the code, without those that a longer path already implies (what the picture draws)."""
    direct = {pair for pair in package_edges(graph(top_level_only=False)) if "__main__" not in pair}
    direct = {(a, b) for a, b in direct if b not in ALWAYS}
    reach: dict[str, set[str]] = {}

    def reachable(a: str) -> set[str]:
        if a not in reach:
            reach[a] = set()
            for x, y in direct:
                if x == a:
                    reach[a] |= {y} | reachable(y)
        return reach[a]

    return {(a, b) for a, b in direct
            if not any(b in reachable(c) for x, c in direct if x == a and c != b)}


def picture() -> str:
    """A Mermaid diagram of the package arrows (each package above what it imports: ``a --> b``, a imports b)."""
    lines = ["```mermaid", "graph TD"]
    lines += [f"    {a} --> {b}" for a, b in sorted(reduced_package_edges())]
    return "\n".join(lines + ["```"])


def _picture_block(text: str) -> str:
    return text.split("<!-- picture -->")[1].strip()


def test_the_picture_in_docs_is_the_code_s():
    assert _picture_block(ARCHITECTURE.read_text(encoding="utf-8")) == picture(), (
        "docs/architecture.md's import picture is stale: python tests/test_layering.py --write")


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    before, _, rest = text.partition("<!-- picture -->")
    _, _, after = rest.partition("<!-- picture -->")
    ARCHITECTURE.write_text(f"{before}<!-- picture -->\n{picture()}\n<!-- picture -->{after}", encoding="utf-8")
