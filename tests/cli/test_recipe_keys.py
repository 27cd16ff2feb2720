"""Typos inside a recipe (nested keys, ``init_args``) and in ``--<option>.init_args.<key>`` get the same one-line
"did you mean" as typos on the command line, from the command's shipped answers (no torch) or its real parser."""

from __future__ import annotations

import pytest

from litcpt.cli.recipe_keys import problem
from tests.helpers import REPO, run_litcpt

# What litcpt.cli.answers.describe says of a parser, cut down to what the checks read.
ENTRY = {
    "options": ["--out_dir", "--train", "--train.max_tokens", "--train.max_steps", "--model_config", "--data",
                "--data.help", "--callbacks", "--callbacks+", "--optimizer"],
    "nested": ["--data", "--callbacks", "--callbacks+", "--optimizer"],
    "accepts": {"data": ["litcpt.data.Replay", "litcpt.data.TextFiles"], "callbacks": ["litcpt.callbacks.EMA"],
                "optimizer": ["torch.optim.AdamW"]},
    "classes": {"litcpt.data.Replay": ["fraction", "new", "replay"],
                "litcpt.data.TextFiles": ["name", "train_data_path", "val_split_fraction"],
                "litcpt.callbacks.EMA": ["decay"], "torch.optim.AdamW": ["betas", "lr", "params", "weight_decay"]},
    "print_config": "optimizer: AdamW\ndata: null\n",
}


def _recipe(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, line, message", [
    ("out_dir: o\ntrain:\n  max_tokenz: 5\n", 3, "unknown key 'train.max_tokenz' (did you mean 'train.max_tokens'?)"),
    ("out_dirr: o\n", 1, "unknown key 'out_dirr' (did you mean 'out_dir'?)"),
    ("data:\n  class_path: litcpt.data.Replay\n  init_args:\n    fractoin: 0.5\n", 4,
     "unknown key 'data.init_args.fractoin' (did you mean 'data.init_args.fraction'?)"),
    ("data:\n  class_path: Replay\n  init_args:\n    new:\n      class_path: litcpt.data.TextFiles\n"
     "      init_args: {name: en, val_split_fractoin: 0.1}\n", 6,
     "unknown key 'data.init_args.new.init_args.val_split_fractoin' "
     "(did you mean 'data.init_args.new.init_args.val_split_fraction'?)"),
    ("callbacks:\n- class_path: litcpt.callbacks.EMA\n  init_args: {decya: 0.9}\n", 3,
     "unknown key 'callbacks.init_args.decya' (did you mean 'callbacks.init_args.decay'?)"),
])
def test_unknown_recipe_keys_name_file_line_and_closest_key(tmp_path, text, line, message):
    path = _recipe(tmp_path, text)
    assert problem(["--config", path], ENTRY) == f"{path}, line {line}: {message}"


def test_known_keys_and_unknown_classes_are_left_alone(tmp_path):
    good = ("out_dir: o\ntrain: {max_tokens: 5}\nmodel_config: {anything: 1}\n"
            "data: {class_path: litcpt.data.Replay, init_args: {fraction: 0.2, new: {class_path: TextFiles}}}\n"
            "callbacks: [{class_path: my.own.Callback, init_args: {whatever: 1}}]\n")
    assert problem(["--config", _recipe(tmp_path, good)], ENTRY) is None
    assert problem(["--config", str(tmp_path / "missing.yaml")], ENTRY) is None  # the real parser says why


def test_init_args_flags_are_checked_against_the_class_given_to_the_option(tmp_path):
    recipe = _recipe(tmp_path, "data: {class_path: litcpt.data.Replay}\n")
    assert problem(["--config", recipe, "--data.init_args.fractoin", "0.1"], ENTRY) == (
        "unknown key '--data.init_args.fractoin' (did you mean '--data.init_args.fraction'?)")
    assert problem(["--data", "TextFiles", "--data.nmae=en"], ENTRY) == (
        "unknown key '--data.nmae' (did you mean '--data.name'?)")
    assert problem(["--optimizer.init_args.lrr", "1"], ENTRY) == (  # the default, AdamW
        "unknown key '--optimizer.init_args.lrr' (did you mean '--optimizer.init_args.lr'?)")
    assert problem(["--config", recipe, "--data.init_args.fraction", "0.1", "--data.help", "Replay"], ENTRY) is None
    assert problem(["--data.init_args.fractoin", "0.1"], ENTRY) is None  # no class given: left to the parser


TYPOS = [
    ("recipes/tiny/d1-pretrain.yaml", "max_tokens:", "max_tokenz:",
     "line 36: unknown key 'train.max_tokenz' (did you mean 'train.max_tokens'?)"),
    ("recipes/tiny/d2-continue.yaml", "    fraction:", "    fractoin:",
     "unknown key 'data.init_args.fractoin' (did you mean 'data.init_args.fraction'?)"),
]


@pytest.mark.slow
@pytest.mark.parametrize("shipped", [True, False], ids=["shipped-answers", "real-parser"])
def test_the_cli_says_the_same_line_from_the_shipped_answers_and_from_the_real_parser(tmp_path, shipped):
    env = {"LITCPT_CACHE_DIR": str(tmp_path / "cache"), **({} if shipped else {"LITCPT_NO_CLI_CACHE": "1"})}
    for source, old, new, message in TYPOS:
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text((REPO / source).read_text().replace(old, new, 1))
        proc = run_litcpt("pretrain", "--config", str(recipe), "--out_dir", str(tmp_path / "o"), check=False,
                          env=env)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert f"error: {recipe}, " in proc.stderr and message in proc.stderr, proc.stderr
    proc = run_litcpt("pretrain", "--config", str(REPO / "recipes/tiny/d2-continue.yaml"), "--data.init_args.fractoin",
                      "0.1", "--out_dir", str(tmp_path / "o"), check=False, env=env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "unknown key '--data.init_args.fractoin' (did you mean '--data.init_args.fraction'?)" in proc.stderr


def test_a_misspelt_command_gets_a_suggestion():
    proc = run_litcpt("pretrian", check=False)
    assert proc.returncode == 2 and "unknown command 'pretrian' (did you mean 'pretrain'?)" in proc.stderr
