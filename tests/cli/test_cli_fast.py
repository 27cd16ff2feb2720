"""`litcpt <command> --help`, `--print_config` alone, unknown keys and plainly wrong simple values are answered
without importing torch, Lightning or LitGPT: from the answers shipped in litcpt/assets/cli (even on a fresh install,
with no per-user cache), else from the per-user cache; neither ever serves stale answers. The answers stay valid
through edits of comments and function bodies, not through a change of what a parser says."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, patience

# Runs main() once per argument list (JSON in argv[1]) and reports each exit code, then which heavy modules and which
# litcpt commands (the real parser) were imported. PROBE_NO_SHIPPED=<dir> reads the shipped answers from <dir>
# instead (an empty one: as when the sources changed since they were made).
PROBE = """
import json, os, sys, time
from pathlib import Path
t0 = time.perf_counter()
from litcpt.cli import help_cache as cli_cache
from litcpt.cli.main import main
if "PROBE_NO_SHIPPED" in os.environ:
    cli_cache.SHIPPED_DIR = Path(os.environ["PROBE_NO_SHIPPED"])
codes = []
for args in json.loads(sys.argv[1]):
    try:
        main(args)
    except SystemExit as exit_:
        codes.append(exit_.code)
    sys.stdout.write("\\0")
heavy = sorted(m for m in ("torch", "lightning", "litgpt") if m in sys.modules)
built = sorted(m for m in sys.modules if m.startswith("litcpt.commands."))
print(f"PROBE codes={codes} heavy={heavy} built={built} seconds={time.perf_counter() - t0:.3f}", file=sys.stderr)
"""


def _probe(tmp_path, *arg_lists, shipped=True, columns="100", root=REPO):
    """``shipped``: True (the package's), False (none), or a directory to read them from."""
    env = {**os.environ, "PYTHONPATH": str(root), "LITCPT_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": columns}
    env.pop("LITCPT_NO_CLI_CACHE", None)
    if shipped is not True:
        env["PROBE_NO_SHIPPED"] = str(shipped or tmp_path / "nonexistent")
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(arg_lists)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=patience(600))
    return proc, proc.stdout.split("\0")[:-1]


def _shipped(command):
    return json.loads((REPO / "litcpt/assets/cli" / f"{command}.json").read_text(encoding="utf-8"))


def test_shipped_answers_are_made_from_these_sources():
    from litcpt.cli import help_cache as cli_cache
    from litcpt.cli.parser import COMMANDS

    stale = cli_cache.stale()
    assert not stale, f"litcpt/assets/cli is stale: {stale}; run `{cli_cache.REGENERATE}` and commit the files"
    assert sorted(p.stem for p in cli_cache.SHIPPED_DIR.glob("*.json")) == sorted(COMMANDS)


# --- edits of a copy of the package: which keep the shipped answers, which do not --------------------------------


def _copy(tmp_path, assets=False) -> Path:
    """A copy of the package (its ``.py`` files; ``assets``: with the shipped answers and data)."""
    ignore = shutil.ignore_patterns("__pycache__", *(() if assets else ("assets",)))
    return Path(shutil.copytree(REPO / "litcpt", tmp_path / "litcpt", ignore=ignore))


def _function(package: Path, module: str, name: str, owner: str | None = None):
    """``(path, tree, node)`` of function ``name`` (a method of class ``owner``) in ``module``, following
    ``from x import name`` (a command re-exported from where it is defined)."""
    for _ in range(5):
        path = package.parent / f"{module.replace('.', '/')}.py"
        path = path if path.exists() else path.with_suffix("") / "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        body = tree.body if owner is None else next(
            n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == owner)
        found = [n for n in body if isinstance(n, ast.FunctionDef) and n.name == name]
        if found:
            return path, tree, found[0]
        imports = [n for n in tree.body
                   if isinstance(n, ast.ImportFrom) and name in [a.asname or a.name for a in n.names]]
        assert imports and owner is None, f"no {name} in {path}"
        module, name = imports[0].module, next(a.name for a in imports[0].names if (a.asname or a.name) == name)
    raise AssertionError(f"{name}: too many re-exports")


def _command_function(package: Path, command: str):
    from litcpt.cli.parser import COMMANDS

    return _function(package, *COMMANDS[command].split(":"))


def _class_file(package: Path, command: str, name: str) -> tuple[Path, ast.Module, ast.ClassDef]:
    """``(path, tree, node)`` of class ``name`` among the modules ``command``'s shipped answers were made from."""
    for rel in _shipped(command)["modules"]:
        tree = ast.parse((package / rel).read_text(encoding="utf-8"))
        found = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
        if found:
            return package / rel, tree, found[0]
    raise AssertionError(f"no class {name} in the modules of {command}")


def _insert_statement(path: Path, node: ast.FunctionDef, statement: str) -> None:
    """Put ``statement`` first in the body of ``node`` (after its docstring), in the text of ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    first = node.body[1] if len(node.body) > 1 and isinstance(node.body[0], ast.Expr) else node.body[0]
    lines.insert(first.lineno - 1, " " * first.col_offset + statement + "  # an edit\n")
    path.write_text("".join(lines), encoding="utf-8")


def _usable(package: Path) -> dict[str, bool]:
    from litcpt.cli import help_cache as cli_cache
    from litcpt.cli.parser import COMMANDS

    return {c: (cli_cache.usable(_shipped(c), package) or {"partial": True}).get("partial") is None for c in COMMANDS}


def test_comments_layout_and_function_bodies_do_not_make_the_answers_stale(tmp_path):
    """Every module rewritten without its comments and in another layout (``ast.unparse``), a comment added to
    each, a statement added to the body of every command function: every shipped answer is still used."""
    from litcpt.cli.parser import COMMANDS

    package = _copy(tmp_path)
    assert all(_usable(package).values())
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(f"# a new comment\n{ast.unparse(ast.parse(text))}\n# another\n", encoding="utf-8")
    for command in COMMANDS:
        path, _, node = _command_function(package, command)
        _insert_statement(path, node, f"print({command!r})")
    assert _usable(package) == dict.fromkeys(COMMANDS, True)


@pytest.mark.parametrize("edit", ["new key", "docstring line", "field default", "post_init body", "deleted module"])
def test_what_changes_a_cli_makes_its_answers_stale(tmp_path, edit):
    """A new key, a docstring line shown in --help, a dataclass default, a body that runs when the defaults are made
    (``__post_init__``), a module gone: the command's answers are no longer used, those of others still are."""
    from litcpt.cli.parser import COMMANDS

    package = _copy(tmp_path)
    command = "report" if edit in ("new key", "deleted module") else "pretrain"
    if edit == "new key":
        path, tree, node = _command_function(package, command)
        node.args.kwonlyargs.append(ast.arg(arg="new_key", annotation=ast.Name("int")))
        node.args.kw_defaults.append(ast.Constant(0))
        path.write_text(ast.unparse(tree), encoding="utf-8")
    elif edit == "docstring line":
        path, tree, node = _command_function(package, command)
        node.body[0].value.value += "\n\nOne more line of help.\n"
        path.write_text(ast.unparse(tree), encoding="utf-8")
    elif edit == "field default":
        path, tree, node = _class_file(package, command, "TrainArgs")
        field = next(n for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.value, ast.Constant)
                     and type(n.value.value) is int)
        field.value.value += 1
        path.write_text(ast.unparse(tree), encoding="utf-8")
    elif edit == "post_init body":
        path, _, node = _class_file(package, command, "TrainArgs")
        _insert_statement(path, next(n for n in node.body if getattr(n, "name", "") == "__post_init__"), "pass")
    else:
        path = package / next(m for m in _shipped(command)["modules"] if m.startswith("report/"))
        path.unlink()
    usable, edited = _usable(package), path.relative_to(package).as_posix()
    assert usable[command] is False
    others = [c for c in COMMANDS if edited not in _shipped(c)["modules"]]  # their parsers never read that file
    assert others and all(usable[c] for c in others), usable


def test_after_an_edit_that_changes_a_cli_the_real_parser_answers(tmp_path):
    """An edited checkout: ``litcpt report`` gains a key. Its shipped answers are not used: the real parser answers
    (the new key is in --help and accepted), its answers go to the per-user cache and the next call is served from
    there. A comment edit elsewhere in the same checkout still leaves the other commands' shipped answers in use."""
    package = _copy(tmp_path, assets=True)
    path, tree, node = _command_function(package, "report")
    node.args.kwonlyargs.append(ast.arg(arg="new_key", annotation=ast.Name("int")))
    node.args.kw_defaults.append(ast.Constant(0))
    path.write_text(ast.unparse(tree), encoding="utf-8")
    pretrain, _, node = _command_function(package, "pretrain")
    _insert_statement(pretrain, node, "pass")
    args = [["report", "--help"], ["report", "out/a", "--new_key", "3", "--print_config"], ["pretrain", "--help"]]
    first, outs = _probe(tmp_path, *args, root=package.parent)
    assert "PROBE codes=[0, 0, 0] heavy=[] built=['litcpt.commands.report']" in first.stderr, first.stderr[-2000:]
    assert "--new_key NEW_KEY" in outs[0] and "new_key: 3" in outs[1] and outs[2] == _shipped("pretrain")["help"]
    (cached,) = (tmp_path / "cache" / "cli").glob("report-*.json")
    second, again = _probe(tmp_path, ["report", "--help"], ["report", "--new_kye", "3"], root=package.parent)
    assert "PROBE codes=[0, 2] heavy=[] built=[]" in second.stderr, second.stderr[-2000:]
    assert again[0] == outs[0] and "unknown key '--new_kye' (did you mean '--new_key'?)" in second.stderr
    assert json.loads(cached.read_text())["help"] == outs[0]


def test_first_call_on_a_fresh_install_answers_from_the_shipped_answers(tmp_path):
    from litcpt.cli.parser import COMMANDS

    helps = [[command, "--help"] for command in COMMANDS]
    proc, outs = _probe(tmp_path, *helps, ["pretrain", "--print_config"], ["pretrain", "--train.max_tokns", "5"],
                        ["pretrain", "--train.max_steps", "abc"], ["report", "out/a", "-h"], columns="60")
    assert f"PROBE codes={[0] * (len(COMMANDS) + 1) + [2, 2, 0]} heavy=[] built=[]" in proc.stderr, proc.stderr[-2000:]
    for command, out in zip(COMMANDS, outs):
        assert out == _shipped(command)["help"] and f"usage: litcpt {command}" in out
    assert outs[len(COMMANDS)] == _shipped("pretrain")["print_config"] and "max_tokens: 1000000" in outs[-4]
    assert "error: unknown key '--train.max_tokns' (did you mean '--train.max_tokens'?)" in proc.stderr
    assert "error: train.max_steps: expected int or null, got 'abc'" in proc.stderr
    assert outs[-1] == _shipped("report")["help"]
    assert not (tmp_path / "cache").exists()  # nothing was built, so nothing was cached per user

    env = {**os.environ, "PYTHONPATH": str(REPO), "LITCPT_CACHE_DIR": str(tmp_path / "fresh")}
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "litcpt", "pretrain", "--help"], capture_output=True, text=True,
                         env=env, timeout=patience(600))
    seconds = time.perf_counter() - start
    assert run.returncode == 0 and run.stdout == _shipped("pretrain")["help"]
    print(f"cold `python -m litcpt pretrain --help` (fresh LITCPT_CACHE_DIR): {seconds:.2f} s wall")


def test_help_and_unknown_keys_come_from_the_user_cache_when_the_shipped_answers_are_stale(tmp_path):
    first, (help_first,) = _probe(tmp_path, ["pretrain", "--help"], shipped=False)  # builds the parser, caches it
    assert "PROBE codes=[0] heavy=['lightning', 'litgpt', 'torch']" in first.stderr, first.stderr[-2000:]
    assert "--train.max_tokens" in help_first
    second, outs = _probe(tmp_path, ["pretrain", "--help"], ["pretrain", "--train.max_tokns", "5"],
                          ["pretrain", "--train.max_steps", "abc"], ["pretrain", "--print_config"], shipped=False)
    assert "PROBE codes=[0, 2, 2, 0] heavy=[] built=[]" in second.stderr, second.stderr[-2000:]
    assert outs[0] == help_first == _shipped("pretrain")["help"]  # the same text as shipped: fixed width
    assert outs[3] == _shipped("pretrain")["print_config"]
    line = [ln for ln in second.stderr.splitlines() if "unknown key" in ln][0]
    assert "unknown key '--train.max_tokns' (did you mean '--train.max_tokens'?)" in line
    assert "train.max_steps: expected int or null, got 'abc'" in second.stderr

    # keys below options that take nested keys are left to the real parser (it knows the classes)
    from litcpt.cli.help_cache import bad_value, unknown_key

    (entry_file,) = (tmp_path / "cache" / "cli").glob("pretrain-*.json")
    entry = json.loads(entry_file.read_text())
    deep = ["--lr_schedule", "litcpt.callbacks.WarmupCosineLR", "--lr_schedule.init_args.warmup", "1.5",
            "--data.init_args.fraction", "2", "--model_config.n_layer", "2", "--optimizer.init_args.lr", "x"]
    assert unknown_key(deep, entry) is None and bad_value(deep, entry) is None


def test_help_is_the_same_in_every_terminal(monkeypatch):
    from litcpt.cli.parser import HELP_WIDTH, build_parser

    def command(lengthy_option_name: int = 1, other: str = "x"):
        pass

    command.__doc__ = "A command with a long description: " + "word " * 60

    texts = []
    for columns in ("40", "100", "250"):
        monkeypatch.setenv("COLUMNS", columns)
        texts.append(build_parser("x", command).format_help())
    assert texts[0] == texts[1] == texts[2]
    assert max(len(line) for line in texts[0].splitlines()) <= HELP_WIDTH < len("word " * 60)


def test_answers_are_used_only_where_they_hold(tmp_path, monkeypatch):
    """Other sources: not used. Other versions: only the parts that do not depend on them (pretrain's help lists
    LitGPT's DataModules, its defaults torch's AdamW arguments, its classes are LitGPT's, Lightning's and torch's
    too; its option strings depend on jsonargparse only).
    A complete per-user entry is preferred to a partial shipped one."""
    from litcpt.cli import help_cache as cli_cache

    shipped = dict(_shipped("pretrain"))
    monkeypatch.setattr(cli_cache, "SHIPPED_DIR", tmp_path)
    monkeypatch.setenv("LITCPT_CACHE_DIR", str(tmp_path / "user"))

    def served(entry):
        (tmp_path / "pretrain.json").write_text(json.dumps(entry))
        return cli_cache.load("pretrain")

    assert served(shipped) == shipped
    entry = served({**shipped, "versions": {**shipped["versions"], "torch": "0.1"}})
    assert entry["help"] is None and entry["print_config"] is None and entry["partial"]
    assert entry["options"] == shipped["options"] and entry["kinds"] == shipped["kinds"]
    entry = served({**shipped, "versions": {**shipped["versions"], "litgpt": "0.1"}})
    assert entry["help"] is None and entry["print_config"] == shipped["print_config"]
    assert entry["classes"] is None and entry["options"] == shipped["options"]
    assert served({**shipped, "versions": {**shipped["versions"], "jsonargparse": "0.1"}}) is None
    module = sorted(shipped["modules"])[-1]
    assert served({**shipped, "modules": {**shipped["modules"], module: "0" * 16}}) is None
    assert served({**shipped, "modules": {**shipped["modules"], "gone.py": "0" * 16}}) is None
    assert served({k: v for k, v in shipped.items() if k != "modules"}) is None

    cli_cache._user_path("pretrain").parent.mkdir(parents=True)
    cli_cache._user_path("pretrain").write_text(json.dumps(shipped))
    assert served({**shipped, "versions": {**shipped["versions"], "torch": "0.1"}}) == shipped
    monkeypatch.setenv("LITCPT_NO_CLI_CACHE", "1")
    assert served(shipped) is None


def test_parts_made_under_other_versions_are_left_to_the_real_parser(tmp_path):
    """Shipped answers whose help was made under another docstring-parser: an unknown key is still answered from
    them, --help by the real parser (then cached per user, and the next --help is served from there)."""
    (tmp_path / "shipped").mkdir()
    report = _shipped("report")
    report["versions"]["docstring-parser"] = "0.1"
    (tmp_path / "shipped" / "report.json").write_text(json.dumps(report))
    first, _ = _probe(tmp_path, ["report", "out/a", "--bogus", "1"], shipped=tmp_path / "shipped")
    assert "PROBE codes=[2] heavy=[] built=[]" in first.stderr and "unknown key '--bogus'" in first.stderr
    second, (built,) = _probe(tmp_path, ["report", "--help"], shipped=tmp_path / "shipped")
    assert "PROBE codes=[0] heavy=[] built=['litcpt.commands.report']" in second.stderr, second.stderr[-2000:]
    third, (cached,) = _probe(tmp_path, ["report", "--help"], shipped=tmp_path / "shipped")
    assert "PROBE codes=[0] heavy=[] built=[]" in third.stderr, third.stderr[-2000:]
    assert built == cached == _shipped("report")["help"]


def test_shipped_answers_name_no_path_of_the_machine_that_made_them():
    """Nothing in the shipped answers depends on where they were made. (That they say what a freshly built parser
    says, part by part, in another directory and terminal width, is ``python -m litcpt.cli.help_cache --check``: a
    step of ``.ci/run``, as it builds every command's parser in a fresh process, a minute of CPU.)"""
    for path in (REPO / "litcpt/assets/cli").glob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert str(REPO) not in text and os.path.expanduser("~") not in text and "/tmp/" not in text


def test_check_compares_the_content_part_by_part():
    """``--check`` names what differs: other sources, other versions, or another text where the versions agree."""
    from litcpt.cli.help_cache import _compare

    fresh = _shipped("pretrain")
    assert _compare("pretrain", fresh, fresh) == []
    module = sorted(fresh["modules"])[0]
    assert _compare("pretrain", {**fresh, "modules": {**fresh["modules"], module: "x"}}, fresh) == [
        f"pretrain: made from other sources ({module} changed)"]
    assert _compare("pretrain", {**fresh, "help": "other"}, fresh) == [
        "pretrain: help differ from a freshly built parser"]
    assert _compare("pretrain", {**fresh, "kinds": {}}, fresh) == [
        "pretrain: kinds differ from a freshly built parser"]
    old = {**fresh, "help": "other", "versions": {**fresh["versions"], "litgpt": "0.1"}}
    assert _compare("pretrain", old, fresh) == [
        f"pretrain: {part} made under other versions: litgpt 0.1 (here {fresh['versions']['litgpt']})"
        for part in ("help", "classes")]  # the help lists LitGPT's DataModules; some classes are theirs too


def test_simple_values_are_checked_from_the_cache_and_doubt_is_left_to_the_parser():
    from typing import Literal

    from litcpt.cli.answers import simple_kind
    from litcpt.cli.help_cache import bad_value

    assert simple_kind(int | None) == {"types": ["int", "null"], "choices": []}
    assert simple_kind(Literal["auto", "ddp"]) == {"types": [], "choices": ["auto", "ddp"]}
    assert simple_kind(int | str) is None  # anything goes for a str member: nothing to check here
    entry = {"kinds": {"--train.max_steps": simple_kind(int | None), "--train.compile": simple_kind(bool),
                       "--strategy": simple_kind(Literal["auto", "ddp"]),
                       "--train.max_tokens": simple_kind(int | float | None)}}
    assert bad_value(["--train.max_steps", "abc"], entry) == "train.max_steps: expected int or null, got 'abc'"
    assert bad_value(["--strategy=fsdp3"], entry) == "strategy: expected 'auto' or 'ddp', got 'fsdp3'"
    assert bad_value(["--train.compile", "maybe"], entry) == "train.compile: expected bool, got 'maybe'"
    ok = ["--train.max_steps", "null", "--train.max_tokens", "2e6", "--train.compile", "yes", "--strategy", "ddp",
          "--train.max_steps=0x10", "--train.max_steps", "--strategy", "auto"]
    assert bad_value(ok, entry) is None


def test_typos_in_recipes_and_init_args_are_answered_before_torch_is_imported(tmp_path):
    """The recipe's nested keys and ``init_args`` keys, and ``--data.init_args.<key>``, are checked from the shipped
    answers (the classes an option takes and their parameters): "did you mean", and neither torch nor the command
    imported (once, in a fresh process; tests/cli/test_recipe_keys.py checks the cases)."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((REPO / "recipes/tiny/d2-continue.yaml").read_text().replace("    fraction:", "    fractoin:", 1))
    proc, _ = _probe(tmp_path, ["pretrain", "--config", str(recipe)],
                     ["pretrain", "--config", str(REPO / "recipes/tiny/d2-continue.yaml"), "--data.init_args.fractoin",
                      "0.1"], ["pretrian"])
    assert "PROBE codes=[2, 2, 2] heavy=[] built=[]" in proc.stderr, proc.stderr[-2000:]
    assert "unknown key 'data.init_args.fractoin' (did you mean 'data.init_args.fraction'?)" in proc.stderr
    assert "unknown key '--data.init_args.fractoin' (did you mean '--data.init_args.fraction'?)" in proc.stderr
    assert "unknown command 'pretrian' (did you mean 'pretrain'?)" in proc.stderr


def test_a_run_reads_its_arguments_without_help_texts_and_gets_the_same_values(monkeypatch):
    """A run's parser skips the dataclass fields' attribute docstrings (~0.5 s a parse; only ``--help`` shows them):
    the same recipe gives the same resolved config; ``litcpt pretrain --config X`` builds it so, ``--help`` not."""
    from litcpt.cli import main as cli_main
    from litcpt.cli.parser import COMMANDS, build_parser, load_command

    function = load_command(COMMANDS["pretrain"])
    recipe = ["--config", str(REPO / "recipes/tiny/pretrain.yaml"), "--train.max_steps", "3"]
    full, lean = (build_parser("pretrain", function, help_texts=texts) for texts in (True, False))
    assert lean.dump(lean.parse_args(recipe)) == full.dump(full.parse_args(recipe))
    field_doc = "Samples per forward/backward on one rank."  # TrainArgs.micro_batch_size's attribute docstring
    assert field_doc in full.format_help() and field_doc not in lean.format_help()

    asked = []

    class Built(Exception):
        pass

    def record(command, function, *, help_texts=True):
        asked.append(help_texts)
        raise Built

    monkeypatch.setattr(cli_main, "build_parser", record)
    for args in (recipe, [*recipe, "--print_config"]):
        with pytest.raises(Built):
            cli_main.main(["pretrain", *args])
    with pytest.raises(SystemExit):  # the shipped answers (fresh here) answer --help: no parser is built
        cli_main.main(["pretrain", "--help"])
    assert asked == [False, True]
