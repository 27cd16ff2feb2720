"""What ``litcpt anneal`` passes on to the branch's pretrain run (no training: the run is recorded, not started):
``--train.*`` keys override the source run's whatever their value, and the run's callbacks (EMA, SkipSpikes) and
z-loss go with the branch."""

from __future__ import annotations

import json

import pytest
import torch

from litcpt.schedules.formulas import Infinite
from litcpt.training.anneal_source import merge_train
from litcpt.training.args import TrainArgs
from tests.helpers import tiny_recipe

MAX_LR = 3e-3
SCHEDULE = Infinite(warmup=2, cooldown=6, constant=12, anneal=0, max_lr=MAX_LR, const_lr=0.55 * MAX_LR,
                    min_lr=0.1 * MAX_LR)


def test_a_train_override_equal_to_the_default_is_kept():
    run = TrainArgs(global_batch_size=16, micro_batch_size=8, max_norm=0.5, z_loss=1e-4)
    merged = merge_train(run, {"micro_batch_size": 4, "max_norm": None})  # 4 is TrainArgs' default
    assert (merged.micro_batch_size, merged.max_norm) == (4, None)
    assert (merged.global_batch_size, merged.z_loss) == (16, 1e-4)  # the run's, where nothing was given
    assert merge_train(run, None) == run and merge_train(run, None) is not run
    assert merge_train(run, {"max_norm": 1}).max_norm == 1  # an int where a float is expected
    with pytest.raises(ValueError, match=r"^train.micro_batch_szie: not a training argument"):
        merge_train(run, {"micro_batch_szie": 4})
    with pytest.raises(ValueError, match=r"^train.micro_batch_size='four': expected int$"):
        merge_train(run, {"micro_batch_size": "four"})


def test_a_misspelled_train_key_is_refused_before_anything_is_read_or_written(tmp_path, capsys):
    from litcpt.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["anneal", "--checkpoint", str(tmp_path / "missing.ckpt"), "--anneal_steps", "3",
              "--out_dir", str(tmp_path / "out"), "--train.micro_batch_szie", "4"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("litcpt anneal: error: train.micro_batch_szie: not a training argument (did you mean "
                          "train.micro_batch_size?)") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


@pytest.fixture
def branched(tmp_path, monkeypatch):
    """Run ``litcpt anneal`` (the CLI, in process) on a fake constant-phase checkpoint of a run with an EMA, a
    SkipSpikes callback and z-loss; returns the keyword arguments it runs the pretrain with."""
    import litcpt.training.pretrain
    from litcpt.cli.main import main

    callbacks = [{"class_path": "litcpt.callbacks.EMA", "init_args": {"decay": 0.9}},
                 {"class_path": "litcpt.callbacks.SkipSpikes"}]
    recipe = tiny_recipe(tmp_path, callbacks=callbacks, **{"train.micro_batch_size": 8, "train.z_loss": 1e-4})
    run = tmp_path / "out"
    run.mkdir()
    recipe.replace(run / "config.yaml")
    state = {"version": 1, "stage_name": None, "unit": "steps", "schedule": SCHEDULE.to_dict(), "base_lr": MAX_LR,
             "stage_start_step": 0, "last_step": 9, "tokens_seen": 0.0, "step_tokens": 0.0}
    ckpt = run / "checkpoints" / "step-00000010.ckpt"
    ckpt.parent.mkdir()
    torch.save({"global_step": 10, "callbacks": {"InfiniteLR{'stage_name': None}": state}, "state_dict": {}}, ckpt)
    from litcpt.training.recipe import pretrain_parser

    pretrain_parser()  # built (and cached) from the real pretrain signature before the run is replaced
    seen: dict = {}
    monkeypatch.setattr(litcpt.training.pretrain, "run", lambda **kwargs: seen.update(kwargs))
    main(["anneal", "--checkpoint", str(ckpt), "--anneal_steps", "4", "--out_dir", str(tmp_path / "branch"),
          "--train.micro_batch_size", "4"])
    return seen


def test_the_branch_keeps_the_runs_callbacks_z_loss_and_the_given_train_keys(branched, tmp_path):
    from litcpt.callbacks import EMA, SkipSpikes

    train = branched["train"]
    assert train.micro_batch_size == 4  # given (and TrainArgs' default), over the run's 8
    assert train.z_loss == 1e-4 and train.global_batch_size == 8 and train.max_steps == 14  # 10 + 4 anneal steps
    kinds = [type(c) for c in branched["callbacks"]]
    assert kinds == [EMA, SkipSpikes] and branched["callbacks"][0].decay == 0.9
    assert branched["resume"] == tmp_path / "out" / "checkpoints" / "step-00000010.ckpt"
    record = json.loads((tmp_path / "branch" / "anneal.json").read_text())
    assert record["first_global_step"] == 10 and record["tokens_per_step"] == 8 * 64


def test_refused_arguments_leave_no_config_yaml(tmp_path, capsys):
    from litcpt.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["anneal", "--checkpoint", str(tmp_path / "x.ckpt"), "--anneal_steps", "-5", "--out_dir",
              str(tmp_path / "branch")])
    assert exc.value.code == 2 and "anneal_steps=-5 must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "branch").exists()  # the CLI writes config.yaml only after the command's checks
