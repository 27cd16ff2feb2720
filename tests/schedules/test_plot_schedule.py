"""`litcpt plot-schedule`: recipes -> resolved LR schedules (the callbacks' own resolution) -> PNG."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from litcpt.schedules.formulas import Infinite, WarmupCosine
from litcpt.training.recipe_stages import plot_recipe_schedules, recipe_curve, recipe_stages
from tests.helpers import REPO

PRETRAIN = REPO / "recipes/tiny/pretrain.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_recipe(path, **overrides):
    """The tiny pretrain recipe with top-level keys replaced (``None`` removes a key)."""
    recipe = yaml.safe_load(PRETRAIN.read_text())
    for key, value in overrides.items():
        if value is None:
            recipe.pop(key, None)
        else:
            recipe[key] = value
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_cosine_recipe_equals_closed_form():
    (stage,) = recipe_stages(PRETRAIN)
    # recipes/tiny/pretrain.yaml: 409600 tokens / (16 x 128) = 200 steps, warmup 1%, cosine to 0.1 x 3e-3
    assert (stage.steps, stage.tokens_per_step, stage.unit, stage.callback) == (200, 2048, "steps", "WarmupCosineLR")
    xs, lrs = recipe_curve([stage], x="tokens")
    assert xs[0] == 0 and xs[-1] == 409600
    expected = [WarmupCosine(warmup=2, total=200, max_lr=3e-3, min_lr=0.1 * 3e-3)(x / 2048) for x in xs]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12, atol=0)
    assert [stage.lr_at_step(k) for k in (0, 1, 2, 199)] == [
        WarmupCosine(warmup=2, total=200, max_lr=3e-3, min_lr=0.1 * 3e-3)(k) for k in (0, 1, 2, 199)]


def test_infinite_recipe_in_tokens_equals_closed_form(tmp_path):
    schedule = {"class_path": "litcpt.callbacks.InfiniteLR",
                "init_args": {"unit": "tokens", "warmup_steps": 10, "cooldown": 0.5, "anneal_tokens": 40960,
                              "const_lr_ratio": 0.5, "min_lr": 1e-4, "cooldown_shape": "inv_sqrt",
                              "anneal_shape": "cosine"}}
    recipe = write_recipe(tmp_path / "inf.yaml", lr_schedule=schedule,
                          train={"global_batch_size": 16, "micro_batch_size": 8, "max_steps": 100,
                                 "max_seq_length": 64})
    (stage,) = recipe_stages(recipe)
    assert (stage.steps, stage.tokens_per_step, stage.unit) == (100, 16 * 64, "tokens")
    total = 100 * 1024
    closed = dict(warmup=10 * 1024, cooldown=0.5 * total, constant=total - 10 * 1024 - 0.5 * total - 40960,
                  anneal=40960, max_lr=3e-3, const_lr=1.5e-3, min_lr=1e-4, cooldown_shape="inv_sqrt",
                  anneal_shape="cosine")
    xs, lrs = recipe_curve([stage], x="tokens")
    np.testing.assert_allclose(lrs, [Infinite(**closed)(x) for x in xs], rtol=1e-12, atol=0)
    xs_steps, lrs_steps = recipe_curve([stage], x="steps")  # same curve, other axis
    assert xs_steps[-1] == 100
    np.testing.assert_allclose(lrs_steps, lrs, rtol=1e-12)


def test_stages_rewarm_and_png(tmp_path):
    out = plot_recipe_schedules([PRETRAIN, PRETRAIN, PRETRAIN], tmp_path / "img" / "lr.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert not list(out.parent.glob(".*"))  # atomic: no temporary file left behind
    stages = recipe_stages([PRETRAIN, PRETRAIN, PRETRAIN])
    assert [s.name for s in stages] == ["pretrain", "pretrain #2", "pretrain #3"]
    xs, lrs = recipe_curve(stages, x="tokens", num_per_stage=50)
    assert xs[-1] == 3 * 409600 and np.all(np.diff(xs) >= 0)
    end_of_1, start_of_2 = lrs[49], lrs[50]
    assert xs[50] == 409600
    assert end_of_1 == pytest.approx(3e-4)  # stage 1 decayed to 0.1 x peak ...
    assert start_of_2 == 0.0  # ... and stage 2 re-warms from 0
    assert max(lrs[50:100]) == pytest.approx(3e-3, rel=1e-3)
    assert stages[1].lr_at_step(0) == 0.0 and stages[1].lr_at_step(2) == pytest.approx(3e-3)  # warmup: 2 steps


def test_continued_stage_takes_the_previous_sequence_length(tmp_path):
    first = write_recipe(tmp_path / "d1.yaml", lr_schedule={"class_path": "litcpt.callbacks.InfiniteLR",
                                                            "init_args": {"cooldown_shape": "inv_sqrt"}})
    second = write_recipe(tmp_path / "d2.yaml", model_config=None,
                          initial_checkpoint_dir=str(tmp_path / "not-yet" / "final"),
                          lr_schedule={"class_path": "litcpt.callbacks.InfiniteLR",
                                       "init_args": {"stage_start": "constant", "anneal": 0.25,
                                                     "anneal_shape": "linear"}})
    s1, s2 = recipe_stages([first, second], labels=["D1", "D2"])
    assert (s1.name, s2.name) == ("D1", "D2")
    assert s2.tokens_per_step == s1.tokens_per_step == 2048 and s2.steps == 200
    assert s2.lr_at_step(0) == pytest.approx(0.55 * 3e-3)  # continues at the constant LR: no re-warming
    assert s1.lr_at_step(199) == pytest.approx(0.55 * 3e-3)
    with pytest.raises(ValueError, match="cannot tell the sequence length"):
        recipe_stages([second])


def test_optimizer_name_alone_uses_its_default_lr(tmp_path):
    """`optimizer: AdamW` trains with torch's default lr (1e-3), so that is the plotted peak."""
    (stage,) = recipe_stages([write_recipe(tmp_path / "r.yaml", optimizer="AdamW")])
    assert max(stage.lr_at_step(t) for t in range(stage.steps)) == pytest.approx(1e-3)


@pytest.mark.parametrize("overrides, match", [
    ({"optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": -1.0}}}, r"optimizer.init_args.lr=-1.0"),
    ({"optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.0}}}, r"optimizer.init_args.lr"),
    ({"lr_schedule": {"class_path": "litcpt.callbacks.NoSuchLR"}}, r"lr_schedule|NoSuchLR"),
    ({"lr_schedule": {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"}},
     r"subclass of LRScheduleCallback"),
    ({"lr_schedule": {"class_path": "litcpt.callbacks.WSDLR", "init_args": {"warmup_steps": 150, "decay": 0.5}}},
     r"longer than the stage"),
    ({"train": {"global_batch_size": 16, "micro_batch_size": 8, "max_tokens": 100}}, r"less than one optimizer step"),
    ({"trian": {"max_steps": 3}}, r"trian"),
])
def test_bad_recipes_give_one_line_errors(tmp_path, overrides, match):
    recipe = write_recipe(tmp_path / "bad.yaml", **overrides)
    with pytest.raises(ValueError, match=match) as info:
        plot_recipe_schedules([PRETRAIN, recipe], tmp_path / "lr.png")
    message = str(info.value)
    assert "\n" not in message and str(recipe) in message
    assert not (tmp_path / "lr.png").exists()


def test_missing_recipe(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        recipe_stages([tmp_path / "nope.yaml"])


def cli(capsys, *args):
    from litcpt.cli.main import main

    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli(tmp_path, capsys):
    out = tmp_path / "stages.png"
    code, stdout, _ = cli(capsys, "plot-schedule", "--recipes", f"[{PRETRAIN}, {PRETRAIN}]", "--out", str(out),
                          "--x", "steps")
    assert code == 0 and out.read_bytes()[:8] == PNG_MAGIC
    assert "pretrain #2: WarmupCosineLR, 200 steps" in stdout
    # start, peak (the recipe's 3e-3, after 2 warmup steps) and end: not only start -> end, which hides the peak
    assert "= 409600 tokens, LR start 0, peak 0.003 (step 2), end 0.0003\n" in stdout, stdout
    code, _, _ = cli(capsys, "plot_schedule", "--recipes", str(PRETRAIN), "--out", str(tmp_path / "one.png"))
    assert code == 0 and (tmp_path / "one.png").is_file()
    code, stdout, _ = cli(capsys, "plot-schedule", "--recipes+", str(PRETRAIN), "--recipes+", str(PRETRAIN),
                          "--labels", "[D1, D2]", "--out", str(tmp_path / "two.png"))
    assert code == 0 and "D2: WarmupCosineLR" in stdout


def test_cli_errors(tmp_path, capsys):
    bad = write_recipe(tmp_path / "bad.yaml", optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": -1.0}})
    code, _, err = cli(capsys, "plot-schedule", "--recipes+", str(bad), "--out", str(tmp_path / "bad.png"))
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("litcpt plot-schedule: error:") and "optimizer.init_args.lr" in line
    code, _, err = cli(capsys, "plot-schedule", "--out", str(tmp_path / "bad.png"))
    assert code == 2 and "recipes" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "plot-schedule", "--recipes", str(PRETRAIN), "--x", "epochs")
    assert code == 2 and "epochs" in err
    code, out, _ = cli(capsys, "plot-schedule", "--help")
    assert code == 0 and "--recipes+" in out and "--recipes" in out
