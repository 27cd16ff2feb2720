"""Issue 22's rule for the commands: each ``litcpt/commands/*.py`` holds its CLI signature with the docstring and one
call into a package below (every argument passed on by name), no branching logic; and the registry builds a command's
parser (:func:`litcpt.cli.parser.command_parser`), through which code below the commands reads its recipes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COMMANDS_DIR = Path(__file__).resolve().parent.parent / "litcpt" / "commands"

def thin_problems(source: str, function: str) -> list[str]:
    """What keeps ``function`` of a command module from being thin: a body other than one ``return f(a=a, ...)``,
    or module-level statements other than imports, ``__all__``, ``cli_positional`` and docstrings."""
    tree = ast.parse(source)
    problems = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr)):
            continue
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] in (["__all__"],
                                                                                       ["cli_positional"]):
            continue
        if isinstance(node, ast.FunctionDef) and node.name == function:
            body = node.body[1:] if ast.get_docstring(node) else node.body
            call = body[0].value if len(body) == 1 and isinstance(body[0], ast.Return) else None
            if not isinstance(call, ast.Call):
                problems.append(f"{function}: the body is not one `return <call>(...)`")
                continue
            params = [a.arg for a in node.args.args + node.args.kwonlyargs]
            passed = [(k.arg, ast.unparse(k.value)) for k in call.keywords]
            if call.args or sorted(passed) != sorted((p, p) for p in params):
                problems.append(f"{function}: the call does not pass every parameter on as it is, by name")
            continue
        problems.append(f"line {node.lineno}: {ast.unparse(node).splitlines()[0][:60]}")
    return problems


def _registered() -> list[tuple[str, str]]:
    from litcpt.cli.parser import COMMANDS

    return [(target.partition(":")[0].rpartition(".")[2], target.partition(":")[2]) for target in COMMANDS.values()]


@pytest.mark.parametrize("module,function", _registered())
def test_command_is_its_signature_and_one_call(module, function):
    problems = thin_problems((COMMANDS_DIR / f"{module}.py").read_text(), function)
    assert not problems, f"litcpt/commands/{module}.py is not thin:\n" + "\n".join(problems)


def test_the_check_can_fail():
    thin = 'def main(a: int, b: int = 1):\n    """doc"""\n    return run(a=a, b=b)\n'
    assert thin_problems(thin, "main") == []
    assert thin_problems(thin.replace("return run(a=a, b=b)", "return run(a, b=b)"), "main")
    assert thin_problems(thin.replace("b=b)", "b=b + 1)"), "main")
    assert thin_problems(thin.replace("run(a=a, b=b)", "run(a=a)"), "main")
    assert thin_problems(thin.replace("run(a=a, b=b)", "run(b=b, a=a)"), "main") == []
    assert thin_problems(thin.replace("return run(a=a, b=b)", "if a:\n        b = 2\n    return run(a=a, b=b)"),
                         "main")
    assert thin_problems(thin + "def helper():\n    return 1\n", "main") == ["line 4: def helper():"]


def test_command_parser_builds_a_registered_commands_parser():
    from litcpt.cli.parser import command_parser

    parser = command_parser("pretrain")
    assert {"train.max_tokens", "initial_checkpoint_dir", "carry.optimizer"} <= set(parser.get_defaults().keys())
    with pytest.raises(ValueError, match="'pretrian' is not a litcpt command"):
        command_parser("pretrian")
