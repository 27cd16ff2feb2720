"""docs/testing.md lists the bad-input cases the suite covers, each with the line a user sees, made from the tests
themselves: every ``pytest.raises(..., match=...)`` and every ``... in _error_line(proc)`` assertion of ``tests/`` is
one row (its group, the test, the expected line with ``<...>`` for the parts a test fills in); a message given by
name is looked up (a local or module string, or each value of a ``pytest.mark.parametrize`` list). The test fails while
the table is stale; ``python tests/docs/test_bad_input_list.py --write`` rewrites it."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "testing.md"
MARK = "<!-- bad-input -->"
GROUPS = {  # test directory -> the kind of input
    "data": "data files", "rewardbench": "data files",
    "runtime": "checkpoints, runs and output files", "averaging": "checkpoints, runs and output files",
    "cli": "command line and output paths",
}
ORDER = ["data files", "recipes and arguments", "checkpoints, runs and output files", "command line and output paths"]


def _text(node: ast.AST) -> str | None:
    """A message pattern as a reader sees it: f-string parts as ``<...>``, regex escapes and anchors dropped."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        text = "".join(v.value if isinstance(v, ast.Constant) else "<" + ast.unparse(v.value) + ">"
                       for v in node.values)
    else:
        return None
    text = re.sub(r"\.\*\??|\.\+\??", "…", text.lstrip("^").rstrip("$"))
    text = re.sub(r"\\d\+", "<n>", text).replace("\\s+", " ")
    text = re.sub(r"\\([\\()\[\]{}.*+?^$|-])", r"\1", text)
    return text


def _parametrized(fn: ast.FunctionDef, consts: dict[str, ast.AST]) -> dict[str, list[ast.AST]]:
    """``{argument: [its values]}`` of ``fn``'s ``@pytest.mark.parametrize`` lists (inline or a module constant)."""
    out: dict[str, list[ast.AST]] = {}
    for deco in fn.decorator_list:
        if not (isinstance(deco, ast.Call) and ast.unparse(deco.func).endswith("mark.parametrize")
                and len(deco.args) > 1):
            continue
        names_node, values = deco.args[0], deco.args[1]
        values = consts.get(values.id, values) if isinstance(values, ast.Name) else values
        if not isinstance(names_node, (ast.Constant, ast.Tuple, ast.List)) or not isinstance(values, (ast.List,
                                                                                                    ast.Tuple)):
            continue
        names = ([n.strip() for n in names_node.value.split(",")] if isinstance(names_node, ast.Constant)
                 else [n.value for n in names_node.elts if isinstance(n, ast.Constant)])
        rows = [v.args if isinstance(v, ast.Call) else (v.elts if isinstance(v, (ast.Tuple, ast.List)) else [v])
                for v in values.elts]
        for i, name in enumerate(names):
            out[name] = [row[i] for row in rows if len(row) > i and (len(names) > 1 or i == 0)]
    return out


def _texts(node: ast.AST, fn: ast.FunctionDef, consts: dict[str, ast.AST]) -> list[str]:
    """Every message ``node`` stands for: a literal, ``a + b``, a local or module string, a parametrized argument."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return [a + b for a in _texts(node.left, fn, consts) for b in _texts(node.right, fn, consts)]
    if isinstance(node, ast.Name):
        local = [a.value for a in ast.walk(fn) if isinstance(a, ast.Assign) and len(a.targets) == 1
                 and isinstance(a.targets[0], ast.Name) and a.targets[0].id == node.id]
        values = local or _parametrized(fn, consts).get(node.id) or ([consts[node.id]] if node.id in consts else [])
        return [t for v in values for t in _texts(v, fn, consts)]
    text = _text(node)
    return [text] if text else []


def _cases(path: Path) -> list[tuple[str, str]]:
    """``(test name, message)`` of every error-message assertion in the test file ``path``."""
    tree = ast.parse(path.read_text())
    consts = {a.targets[0].id: a.value for a in tree.body if isinstance(a, ast.Assign) and len(a.targets) == 1
              and isinstance(a.targets[0], ast.Name)}
    out = []
    for fn in ast.walk(tree):
        if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith("test")):
            continue
        for node in ast.walk(fn):
            messages: list[str] = []
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "pytest.raises":
                match = next((k.value for k in node.keywords if k.arg == "match"), None)
                messages = _texts(match, fn, consts) if match is not None else []
            elif (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In)
                  and "_error_line" in ast.unparse(node.comparators[0])):
                messages = _texts(node.left, fn, consts)
            for message in (" ".join(m.split()).replace("|", "\\|") for m in messages):
                if message and (fn.name, message) not in out:
                    out.append((fn.name, message))
    return out


def table() -> str:
    rows: dict[str, list[str]] = {group: [] for group in ORDER}
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        package = path.relative_to(REPO / "tests").parts[0]
        group = GROUPS.get(package, "recipes and arguments")
        for name, message in _cases(path):
            rows[group].append(f"| `{path.relative_to(REPO / 'tests').as_posix()}::{name}` | {message} |")
    total = sum(len(r) for r in rows.values())
    parts = [f"{total} cases, made from the tests by `python tests/docs/test_bad_input_list.py --write`."]
    for group in ORDER:
        parts += ["", f"**{group.capitalize()}** ({len(rows[group])})", "", "| test | the line a user sees |",
                  "|---|---|", *rows[group]]
    return "\n".join(parts)


def _current() -> str:
    text = DOC.read_text()
    return text.split(MARK)[1].strip("\n")


def test_the_list_in_testing_md_is_made_from_the_tests():
    assert _current() == table(), ("docs/testing.md's bad-input list is stale: "
                                   "python tests/docs/test_bad_input_list.py --write")


def test_the_list_holds_the_cases_the_issue_asked_for():
    assert table().count("\n| `") >= 105


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    before, _, after = DOC.read_text().split(MARK)
    DOC.write_text(f"{before}{MARK}\n{table()}\n{MARK}{after}")
