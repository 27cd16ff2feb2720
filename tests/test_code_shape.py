"""The shape of the code: no function of ``litcpt/`` has a body over 80 lines of code (its docstring, blank lines and
comment lines not counted: adding a comment never fails this test) unless a ``# Long on purpose: <why>`` comment inside
it says why."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "litcpt"
LIMIT = 80
MARKER = "# Long on purpose:"


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    """Lines of code of the function from its first statement after the docstring to its end (blank lines and
    comment-only lines not counted)."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str) and len(body) > 1:
        body = body[1:]
    code = [line.strip() for line in lines[body[0].lineno - 1:node.end_lineno]]
    return sum(1 for line in code if line and not line.startswith("#"))


def long_functions(source: str) -> list[tuple[str, int, int]]:
    """``(name, line, body lines)`` of every function over the limit without the marker comment."""
    lines = source.splitlines()
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = body_lines(node, lines)
            text = "\n".join(lines[node.lineno - 1:node.end_lineno])
            if n > LIMIT and MARKER not in text:
                out.append((node.name, node.lineno, n))
    return out


def test_no_function_is_long_without_saying_why():
    found = [f"{path.relative_to(PACKAGE.parent)}:{line} {name} ({n} lines)"
             for path in sorted(PACKAGE.rglob("*.py")) for name, line, n in long_functions(path.read_text())]
    assert not found, (f"functions over {LIMIT} lines (split them, or say why in a '{MARKER} ...' comment):\n"
                       + "\n".join(found))


def test_the_check_can_fail():
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT + 1))
    assert long_functions(f'def f():\n    """doc"""\n{body}\n') == [("f", 1, LIMIT + 1)]
    assert long_functions(f'def f():\n    {MARKER} a table of cases\n{body}\n') == []
    short = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    assert long_functions(f"def f():\n{short}\n") == []
    commented = "\n".join(f"    # a comment\n\n    x{i} = {i}" for i in range(LIMIT))
    assert long_functions(f"def f():\n{commented}\n") == []  # comments and blank lines do not count
