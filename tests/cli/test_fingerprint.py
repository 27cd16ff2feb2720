"""The digests that say whether a command's CLI may have changed: the same through comments, layout and function
bodies; changed by signatures, docstrings, class bodies, module-level code and the bodies that run at import."""

from __future__ import annotations

import pytest

from litcpt.cli.fingerprint import MISSING, digests

A = '''"""Module a."""
from dataclasses import dataclass, field

from b import helper as _helper

LIMIT = _helper(3)


@dataclass
class Args:
    """Arguments."""

    n: int = 1
    """How many."""
    names: list = field(default_factory=lambda: ["x"])

    def __post_init__(self):
        check(self.n)

    def run(self):
        return self.n * 2


def check(n):
    if n < 0:
        raise ValueError("n")


def command(args: Args = Args(), k: int = LIMIT) -> None:
    """Do it.

    Args:
        k: a number.
    """
    print(args.run(), k)


def unrelated(x):
    return x + 1


if __name__ == "__main__":
    unrelated(1)
'''

B = '''def helper(x):
    return x * 2


def other():
    return 0
'''


def _digests(tmp_path, a=A, b=B, commands=("command",)):
    (tmp_path / "a.py").write_text(a)
    (tmp_path / "b.py").write_text(b)
    return digests(tmp_path, ["a.py", "b.py"], commands=commands)


SAME = [
    ("comments", "    print(args.run(), k)", "    # a comment\n    print(args.run(), k)  # another"),
    ("layout", "def check(n):\n    if n < 0:\n        raise ValueError(\"n\")",
     "def check(n):\n    if n < 0: raise ValueError('n')"),
    ("command body", "    print(args.run(), k)", "    print(args.run(), k, 'more')"),
    ("method body", "        return self.n * 2", "        return self.n * 3"),
    ("body only called under __main__", "    return x + 1", "    return x + 2"),
    ("body in another module", "    return 0", "    return 1"),
]

CHANGED = [
    ("new key", "k: int = LIMIT)", "k: int = LIMIT, extra: bool = False)"),
    ("type", "k: int = LIMIT", "k: float = LIMIT"),
    ("default", "k: int = LIMIT", "k: int = 4"),
    ("help line", "        k: a number.", "        k: a number of things."),
    ("field default", "    n: int = 1", "    n: int = 2"),
    ("attribute docstring", '    """How many."""', '    """How many times."""'),
    ("lambda default", 'lambda: ["x"]', 'lambda: ["y"]'),
    ("module-level line", "LIMIT = _helper(3)", "LIMIT = _helper(4)"),
    ("__post_init__ of a default", "        check(self.n)", "        check(self.n + 1)"),
    ("body called by it", "    if n < 0:", "    if n < 1:"),
    ("body called at import, through an alias", "    return x * 2", "    return x * 3"),
]


@pytest.mark.parametrize("what, old, new", SAME, ids=[c[0] for c in SAME])
def test_edits_that_cannot_change_a_cli_keep_the_digests(tmp_path, what, old, new):
    before = _digests(tmp_path)
    source = "a" if old in A else "b"
    edited = {"a": A, "b": B}
    assert old in edited[source]
    edited[source] = edited[source].replace(old, new)
    assert _digests(tmp_path, **edited) == before


@pytest.mark.parametrize("what, old, new", CHANGED, ids=[c[0] for c in CHANGED])
def test_edits_that_may_change_a_cli_change_the_digests(tmp_path, what, old, new):
    before = _digests(tmp_path)
    source = "a" if old in A else "b"
    edited = {"a": A, "b": B}
    assert old in edited[source]
    edited[source] = edited[source].replace(old, new)
    after = _digests(tmp_path, **edited)
    assert after[f"{source}.py"] != before[f"{source}.py"]


def test_a_command_taking_kwargs_counts_with_its_body(tmp_path):
    """jsonargparse reads the source of a command with ``**kwargs`` to find the keys it passes on."""
    a = A.replace("k: int = LIMIT) -> None:", "**kwargs) -> None:").replace("print(args.run(), k)",
                                                                            "print(args.run(), kwargs)")
    before = _digests(tmp_path, a=a)
    assert _digests(tmp_path, a=a.replace("print(args.run(), kwargs)", "print(kwargs)")) != before
    assert _digests(tmp_path, a=a.replace("print(args.run(), kwargs)", "print(kwargs)"), commands=()) == _digests(
        tmp_path, a=a, commands=())


def test_whole_modules_count_with_every_body_and_missing_files_never_match(tmp_path):
    (tmp_path / "b.py").write_text(B)
    before = digests(tmp_path, ["b.py"], whole=["b.py"])
    (tmp_path / "b.py").write_text(B.replace("return 0", "return 1"))
    assert digests(tmp_path, ["b.py"], whole=["b.py"]) != before
    assert digests(tmp_path, ["gone.py"]) == {"gone.py": MISSING}
    (tmp_path / "bad.py").write_text("def f(:\n")
    assert digests(tmp_path, ["bad.py"]) == {"bad.py": MISSING}
