"""The CLI: recipes + overrides, --help, and one-line errors for bad keys, values and inputs."""

from __future__ import annotations

import pytest
import yaml

from litcpt.cli.main import main
from litcpt.cli.parser import COMMANDS


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def tiny_recipe(tmp_path, repo_root, **changes):
    recipe = yaml.safe_load((repo_root / "recipes/tiny/pretrain.yaml").read_text())
    recipe["out_dir"] = str(tmp_path / "out")
    recipe["data"]["init_args"]["train_data_path"] = str(repo_root / "litcpt/assets/data/pretrain/en")
    recipe.update(changes)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_usage_lists_commands(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for command in COMMANDS:
        assert command in out


def test_unknown_command(capsys):
    code, _, err = run_cli(capsys, "pretrian")
    assert code == 2 and "unknown command 'pretrian' (did you mean 'pretrain'?)" in err


def test_help_lists_recipe_keys(capsys):
    code, out, _ = run_cli(capsys, "pretrain", "--help")
    assert code == 0
    for key in ("--train.max_tokens", "--train.global_batch_size", "--initial_checkpoint_dir", "--strategy",
                "--lr_schedule", "--data", "--resume", "--print_config"):
        assert key in out


def test_print_config_applies_overrides(capsys, tmp_path, repo_root):
    recipe = tiny_recipe(tmp_path, repo_root)
    code, out, _ = run_cli(capsys, "pretrain", "--config", str(recipe), "--train.max_tokens", "2e6", "--print_config")
    assert code == 0
    printed = yaml.safe_load(out)
    assert printed["train"]["max_tokens"] == 2000000
    assert printed["model_config"]["n_layer"] == 4
    assert printed["lr_schedule"]["class_path"].endswith("WarmupCosineLR")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--train.foo", "1"], "train.foo"),
        (["--train.global_batch_size", "abc"], "train.global_batch_size"),
        (["--strategy", "zero3"], "strategy"),
    ],
)
def test_bad_keys_and_values_give_one_line_errors(capsys, tmp_path, repo_root, args, expected):
    recipe = tiny_recipe(tmp_path, repo_root)
    code, _, err = run_cli(capsys, "pretrain", "--config", str(recipe), *args)
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1, err


def test_unknown_recipe_key(capsys, tmp_path, repo_root):
    recipe = tiny_recipe(tmp_path, repo_root, learning_rate=0.1)
    code, _, err = run_cli(capsys, "pretrain", "--config", str(recipe))
    assert code == 2 and "learning_rate" in err and len(err.strip().splitlines()) == 1


def test_missing_checkpoint_dir(capsys, tmp_path, repo_root):
    recipe = tiny_recipe(tmp_path, repo_root)
    code, _, err = run_cli(capsys, "pretrain", "--config", str(recipe), "--initial_checkpoint_dir",
                           str(tmp_path / "nope"))
    assert code == 1
    assert "initial_checkpoint_dir" in err and "nope" in err and len(err.strip().splitlines()) == 1


def test_checkpoint_dir_missing_files(capsys, tmp_path, repo_root):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model_config.yaml").write_text("name: x\n")
    recipe = tiny_recipe(tmp_path, repo_root)
    code, _, err = run_cli(capsys, "pretrain", "--config", str(recipe), "--initial_checkpoint_dir",
                           str(tmp_path / "half"))
    assert code == 1 and "lit_model.pth" in err


def test_tokenizer_vocab_mismatch(capsys, tmp_path, repo_root):
    recipe = tiny_recipe(tmp_path, repo_root)
    code, _, err = run_cli(capsys, "pretrain", "--config", str(recipe), "--model_config.vocab_size", "100",
                           "--model_config.padded_vocab_size", "128")
    assert code == 1
    assert "4096" in err and "padded_vocab_size 128" in err


def test_checkpoint_config_mismatch(capsys, tmp_path, repo_root, tiny_checkpoint):
    """Weights whose shapes differ from the requested model config are named, not a torch traceback."""
    recipe = tiny_recipe(tmp_path, repo_root)
    code, _, err = run_cli(capsys, "pretrain", "--config", str(recipe), "--initial_checkpoint_dir",
                           str(tiny_checkpoint))
    assert code == 1
    assert "does not match" in err and "transformer" in err


def test_batch_sizes_must_divide(capsys, tmp_path, repo_root):
    recipe = tiny_recipe(tmp_path, repo_root)
    code, _, err = run_cli(capsys, "pretrain", "--config", str(recipe), "--train.global_batch_size", "12")
    assert code == 1 and "global_batch_size=12" in err


def test_optimizer_init_args_override(capsys, tmp_path, repo_root):
    recipe = tiny_recipe(tmp_path, repo_root)
    code, out, _ = run_cli(capsys, "pretrain", "--config", str(recipe), "--optimizer.init_args.lr", "0.0123",
                           "--print_config")
    assert code == 0
    printed = yaml.safe_load(out)["optimizer"]
    assert printed["class_path"] == "torch.optim.AdamW" and printed["init_args"]["lr"] == 0.0123
    assert printed["init_args"]["betas"] == [0.9, 0.95]  # the recipe's other init args are kept


def test_unknown_model_name(capsys, tmp_path, repo_root):
    recipe = tiny_recipe(tmp_path, repo_root)
    code, _, err = run_cli(capsys, "pretrain", "--config", str(recipe), "--model_config", "null",
                           "--model_name", "gpt-17")
    assert code == 1 and "model_name: 'gpt-17'" in err and len(err.strip().splitlines()) == 1


def test_the_cli_ends_the_process_group_after_the_command(tmp_path):
    """Left to interpreter exit, gloo's threads can abort a finished multi-process run (exit status -6)."""
    import torch.distributed as dist

    from litcpt.cli.main import _end_process_group

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    _end_process_group()
    assert not dist.is_initialized()
    _end_process_group()  # nothing to do without a group


@pytest.mark.parametrize("command", ["pretrain", "reward", "dpo"])
def test_help_is_plain_text_and_lists_what_each_key_takes(capsys, command):
    """No RST markup or ``<class '...'>`` from the docstrings; ``--lr_schedule`` lists litcpt's LR-schedule callbacks
    (not every Lightning callback); ``--logger_name`` names all four loggers."""
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0
    assert "``" not in out and "<class" not in out and ":class:" not in out
    lr_schedule = out[out.index("  --lr_schedule LR_SCHEDULE"):]
    lr_schedule = " ".join(lr_schedule[:lr_schedule.index("\n  --", 5)].split())
    assert "litcpt.callbacks.WarmupCosineLR" in lr_schedule and "litcpt.callbacks.InfiniteLR" in lr_schedule
    assert "lightning" not in lr_schedule and "EMA" not in lr_schedule, lr_schedule
    logger = out[out.index("  --logger_name"):]
    logger = " ".join(logger[:logger.index("\n  --", 5)].split())
    assert all(f"{name}," in logger or f"{name} " in logger for name in ("csv", "tensorboard", "wandb", "mlflow"))
    assert "csv or tensorboard." not in logger


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_docstring_parses_so_its_help_describes_every_key(command):
    """One malformed ``Args:`` entry makes docstring-parser give up, and ``--help`` then describes no key at all."""
    import docstring_parser

    from litcpt.cli.parser import load_command

    function = load_command(COMMANDS[command])
    docstring = docstring_parser.parse(function.__doc__, style=docstring_parser.DocstringStyle.GOOGLE)
    import inspect

    documented = {name for p in docstring.params for name in p.arg_name.replace(" ", "").split(",")}
    assert set(inspect.signature(function).parameters) <= documented
