"""`litcpt anneal`: branch from a constant-phase checkpoint of an infinite-schedule run and anneal the LR."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from litcpt.commands.anneal import setup
from litcpt.schedules.config import StageFacts
from litcpt.schedules.formulas import ANNEAL_SHAPES, Infinite, WarmupCosine
from litcpt.training.anneal import anneal_callback, check_out_dir
from litcpt.training.anneal_source import infinite_phase, read_source
from tests.helpers import read_metrics, run_litcpt, series, tiny_recipe

# The source run: 20 steps of 8 x 64 tokens; InfiniteLR: warmup 2 steps, cosine cooldown 6 steps, then constant
# (t in [8, 20]). Checkpoints every 5 steps: step 5 is in the cooldown, 10, 15, 20 in the constant phase.
SOURCE_SCHEDULE = {"class_path": "litcpt.callbacks.InfiniteLR", "init_args": {"warmup": 0.1, "cooldown": 0.3}}
MAX_LR, CONST_LR, MIN_LR = 3e-3, 0.55 * 3e-3, 0.1 * 3e-3
TOKENS_PER_STEP = 8 * 64


def closed_form(k: int, steps: int, shape: str, const_lr: float = CONST_LR, min_lr: float = MIN_LR) -> float:
    """The LR of step ``k`` of an anneal of ``steps`` steps (first step const_lr, last step min_lr)."""
    return Infinite(warmup=0, cooldown=0, constant=0, anneal=steps - 1, max_lr=const_lr, const_lr=const_lr,
                    min_lr=min_lr, anneal_shape=shape)(k)


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def lr_state(schedule, *, stage_start_step=0, last_step=0, unit="steps", tokens_seen=0.0, step_tokens=0.0):
    return {"version": 1, "stage_name": None, "unit": unit, "schedule": schedule.to_dict(), "base_lr": MAX_LR,
            "stage_start_step": stage_start_step, "last_step": last_step, "tokens_seen": tokens_seen,
            "step_tokens": step_tokens}


def fake_ckpt(path: Path, step: int, state: dict | None) -> Path:
    """A Lightning-checkpoint-shaped file with only what ``read_source`` reads (no weights)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    callbacks = {"InfiniteLR{'stage_name': None}": state} if state is not None else {}
    torch.save({"global_step": step, "callbacks": callbacks, "state_dict": {}}, path)
    return path


SCHEDULE = Infinite(warmup=2, cooldown=6, constant=12, anneal=0, max_lr=MAX_LR, const_lr=CONST_LR, min_lr=MIN_LR)


# ------------------------------------------------------------------------------------------------ fast: no training
def test_infinite_phase_boundaries():
    s = Infinite(warmup=2, cooldown=6, constant=10, anneal=4, max_lr=MAX_LR, const_lr=CONST_LR, min_lr=MIN_LR)
    phases = [infinite_phase(s, t) for t in (0, 2, 2.5, 7.9, 8, 13, 18, 18.5, 21.9, 22, 30)]
    assert phases == ["warmup", "warmup", "cooldown", "cooldown", "constant", "constant", "constant", "anneal",
                      "anneal", "end", "end"]
    later = Infinite(warmup=0, cooldown=0, constant=50, anneal=0, max_lr=MAX_LR, const_lr=CONST_LR, min_lr=MIN_LR)
    assert infinite_phase(later, 0) == infinite_phase(later, 50) == "constant"  # a continued stage


@pytest.mark.parametrize("shape", ANNEAL_SHAPES)
def test_anneal_callback_is_the_closed_form(shape):
    steps = 7
    callback = anneal_callback(steps, const_lr=CONST_LR, min_lr=MIN_LR, shape=shape)
    schedule = callback.resolve(StageFacts(steps=steps, tokens_per_step=512, peak_lr=MAX_LR))
    lrs = [schedule(k) for k in range(steps)]
    assert lrs == [closed_form(k, steps, shape) for k in range(steps)]
    assert lrs[0] == CONST_LR and lrs[-1] == MIN_LR
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_read_source_progress_in_steps_and_tokens(tmp_path):
    source = read_source(fake_ckpt(tmp_path / "a" / "checkpoints" / "step-00000015.ckpt", 15,
                                   lr_state(SCHEDULE, last_step=14)))
    assert (source.kind, source.step, source.progress, source.unit) == ("lightning", 15, 15.0, "steps")
    assert source.run_dir == tmp_path / "a" and source.schedule == SCHEDULE
    # resumed stage that started at global step 100, counted in tokens: t = tokens before step 115
    tokens = Infinite(warmup=0, cooldown=0, constant=20 * 512, anneal=0, max_lr=MAX_LR, const_lr=CONST_LR,
                      min_lr=MIN_LR)
    source = read_source(fake_ckpt(tmp_path / "b.ckpt", 115, lr_state(
        tokens, unit="tokens", stage_start_step=100, last_step=114, tokens_seen=14 * 512, step_tokens=512)))
    assert source.progress == 15 * 512 and infinite_phase(source.schedule, source.progress) == "constant"


def test_checkpoint_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint: .*nope.ckpt' does not exist"):
        setup(checkpoint=tmp_path / "nope.ckpt", anneal_steps=4)


@pytest.mark.parametrize("kwargs, match", [
    ({"anneal_steps": 0}, r"anneal_steps=0 must be > 0"),
    ({"anneal_steps": -5}, r"anneal_steps=-5 must be > 0"),
    ({"anneal_tokens": 0}, r"anneal_tokens=0 must be > 0"),
    ({"anneal_tokens": -1e6}, r"anneal_tokens=-1000000.0 must be > 0"),
    ({"anneal_steps": 4, "anneal_tokens": 1e6}, r"give one of anneal_steps"),
    ({}, r"the anneal length is required"),
    ({"anneal_steps": 4, "shape": "step"}, r"shape='step' must be one of"),
    ({"anneal_steps": 4, "const_lr": 0}, r"const_lr=0 must be > 0"),
    ({"anneal_steps": 4, "min_lr": -1e-4}, r"min_lr=-0.0001 must be >= 0"),
])
def test_bad_anneal_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        setup(checkpoint=tmp_path / "whatever.ckpt", **kwargs)
    assert "\n" not in str(info.value)


def test_checkpoint_outside_the_constant_phase(tmp_path):
    ckpt = fake_ckpt(tmp_path / "run" / "checkpoints" / "step-00000005.ckpt", 5, lr_state(SCHEDULE, last_step=4))
    with pytest.raises(ValueError, match=r"is in the cooldown phase .* not in the constant phase \(t in \[8, 20\] "
                                         r"steps.*pass --const_lr to anneal from this one anyway"):
        setup(checkpoint=ckpt, anneal_steps=4)
    # an explicit const_lr anneals it anyway (with a warning); here it then stops at the missing run config
    with pytest.warns(UserWarning, match="annealing from the given const_lr anyway"):
        with pytest.raises(FileNotFoundError, match="no config.yaml"):
            setup(checkpoint=ckpt, anneal_steps=4, const_lr=1e-3)


def test_checkpoint_without_infinite_schedule_needs_const_lr(tmp_path):
    cosine = WarmupCosine(warmup=2, total=20, max_lr=MAX_LR, min_lr=MIN_LR)
    ckpt = fake_ckpt(tmp_path / "run" / "checkpoints" / "last.ckpt", 12, lr_state(cosine))
    with pytest.raises(ValueError, match=r"not trained with an infinite schedule .*warmup_cosine.*--const_lr"):
        setup(checkpoint=ckpt, anneal_steps=4)
    with pytest.raises(ValueError, match="not trained with an infinite schedule .*unknown"):
        setup(checkpoint=fake_ckpt(tmp_path / "none.ckpt", 3, None), anneal_steps=4)


@pytest.mark.parametrize("schedule, step, match", [
    (SOURCE_SCHEDULE, 5, r"step-00000005 is in the cooldown phase .*t in \[8, 20\] steps"),
    (None, 10, r"not trained with an infinite schedule \(InfiniteLR; its LR schedule is warmup_cosine\)"),
])
def test_litgpt_dir_phase_from_the_run_config(tmp_path, schedule, step, match):
    from tests.conftest import make_checkpoint

    recipe = tiny_recipe(tmp_path, **({"lr_schedule": schedule} if schedule else {}))  # 20 steps
    run = tmp_path / "out"
    run.mkdir()
    recipe.replace(run / "config.yaml")  # a recipe is what the CLI saves as the run's config.yaml
    directory = make_checkpoint(run / f"step-{step:08d}")
    with pytest.raises(ValueError, match=match):
        setup(checkpoint=directory, anneal_steps=4)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="cannot be read as a Lightning checkpoint"):
        setup(checkpoint=tmp_path / "notes.txt", anneal_steps=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a LitGPT checkpoint dir"):
        setup(checkpoint=tmp_path / "empty", anneal_steps=4)


def test_out_dir_holding_another_run_is_refused(tmp_path, capsys):
    from litcpt.cli.main import main

    run = tmp_path / "run"
    ckpt = fake_ckpt(run / "checkpoints" / "step-00000010.ckpt", 10, lr_state(SCHEDULE, last_step=9))
    (run / "config.yaml").write_text("out_dir: run\nmodel_name: pythia-14m\n")
    before = tree_hashes(run)
    with pytest.raises(ValueError, match="holds another run"):
        check_out_dir(run)
    assert check_out_dir(tmp_path / "new") == tmp_path / "new"
    with pytest.raises(SystemExit) as exc:  # refused before the CLI writes config.yaml: <run>/config.yaml untouched
        main(["anneal", "--checkpoint", str(ckpt), "--anneal_steps", "4", "--out_dir", str(run)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds another run" in err
    assert tree_hashes(run) == before


# ------------------------------------------------------------------------------------------------ slow: training
@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """A tiny infinite-schedule pretrain run (CLI, subprocess) with constant-phase checkpoints."""
    root = tmp_path_factory.mktemp("source")
    recipe = tiny_recipe(root)
    run_litcpt("pretrain", "--config", str(recipe), "--lr_schedule", json.dumps(SOURCE_SCHEDULE),
               "--train.save_interval", "5")
    out = root / "out"
    assert (out / "checkpoints" / "step-00000010.ckpt").is_file()
    return out


@pytest.mark.slow
def test_anneal_lightning_checkpoint(source_run):
    before = tree_hashes(source_run)
    steps = 6
    proc = run_litcpt("anneal", "--checkpoint", str(source_run / "checkpoints" / "step-00000010.ckpt"),
                      "--anneal_steps", str(steps))
    anneal_dir = source_run / "anneal-00000010"  # the default out_dir
    assert "LR 0.00165 -> 0.0003 (exponential) over 6 steps" in proc.stdout
    # the progress bar counts the anneal's own 6 steps (not 10/16 -> 16/16) at the rate of those steps
    bar = [(int(n), int(t)) for n, t in re.findall(r"train:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)", proc.stdout)]
    assert bar and bar[0] == (0, 6) and bar[-1] == (6, 6) and {t for _, t in bar} == {6}, bar
    rates = [float(r) for r in re.findall(r"([\d.]+)it/s", proc.stdout)]
    assert rates and max(rates) < 1000, rates  # was 1e5 it/s: the steps before the branch counted as done at once

    # The main run's files are untouched; the anneal only added its own dir.
    after = tree_hashes(source_run)
    assert {k: v for k, v in after.items() if not k.startswith("anneal-00000010/")} == before

    # LR: step 10 + k runs at closed_form(k): const_lr first, min_lr last.
    rows = read_metrics(anneal_dir)
    lrs = series(rows, "lr")
    assert [s for s, _ in lrs] == list(range(10, 10 + steps))
    assert [v for _, v in lrs] == pytest.approx([closed_form(k, steps, "exponential") for k in range(steps)],
                                                rel=1e-12)
    assert lrs[0][1] == pytest.approx(CONST_LR, rel=1e-12) and lrs[-1][1] == pytest.approx(MIN_LR, rel=1e-12)
    monitored = dict(series(rows, "lr"))  # what the optimizer really used (one LR column, read from the optimizer)
    assert [monitored[s] for s, _ in lrs] == pytest.approx([v for _, v in lrs], rel=1e-12)

    # Weights, Adam moments and the data stream continue from the checkpoint: the anneal's first two losses (steps
    # 10 and 11, both still trained at const_lr) are the main run's.
    main_losses = dict(series(read_metrics(source_run), "train/loss"))
    anneal_losses = dict(series(rows, "train/loss"))
    assert anneal_losses[10] == pytest.approx(main_losses[10], rel=1e-6)
    assert anneal_losses[11] == pytest.approx(main_losses[11], rel=1e-6)
    assert anneal_losses[12] != pytest.approx(main_losses[12], rel=1e-6)  # the LR differs from step 11 on

    # A deployable LitGPT checkpoint.
    from litgpt import GPT, Config

    final = anneal_dir / "final"
    config = Config.from_file(final / "model_config.yaml")
    model = GPT(config)
    model.load_state_dict(torch.load(final / "lit_model.pth", weights_only=True))
    assert (final / "tokenizer.json").is_file() and (final / "config.yaml").is_file()
    source = torch.load(source_run / "step-00000010" / "lit_model.pth", weights_only=True)
    assert any(not torch.equal(source[k], v) for k, v in model.state_dict().items() if k in source)

    record = json.loads((anneal_dir / "anneal.json").read_text())
    assert record["source_phase"] == "constant" and record["anneal_steps"] == steps
    assert record["first_global_step"] == 10 and record["last_global_step"] == 15
    assert yaml.safe_load((anneal_dir / "config.yaml").read_text())["anneal_steps"] == steps

    # The same command again (default out_dir, not given: the CLI cannot check it) is refused before anything is
    # written, in one line; the finished anneal stays byte-identical.
    before = tree_hashes(source_run)
    proc = run_litcpt("anneal", "--checkpoint", str(source_run / "checkpoints" / "step-00000010.ckpt"),
                      "--anneal_steps", str(steps), check=False)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"litcpt anneal: error: out_dir: '{anneal_dir}' already holds a run (final/, "
                           "checkpoints/*.ckpt, step-*/): --resume auto continues it"), line
    assert tree_hashes(source_run) == before


@pytest.mark.slow
def test_anneal_litgpt_dir_by_tokens_and_resume(source_run, tmp_path):
    out = tmp_path / "branch"
    args = ["anneal", "--checkpoint", str(source_run / "step-00000015"), "--anneal_tokens",
            str(4 * TOKENS_PER_STEP + 100), "--shape", "linear", "--min_lr", "1e-4", "--out_dir", str(out),
            "--train.save_interval", "2"]
    run_litcpt(*args)
    expected = [closed_form(k, 4, "linear", min_lr=1e-4) for k in range(4)]
    lrs = series(read_metrics(out), "lr")
    assert [s for s, _ in lrs] == [0, 1, 2, 3]  # a LitGPT dir starts a fresh trainer (and optimizer)
    assert [v for _, v in lrs] == pytest.approx(expected, rel=1e-12)
    assert (out / "final" / "lit_model.pth").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["shape"] == "linear"
    record = json.loads((out / "anneal.json").read_text())
    assert record["tokens_per_step"] == TOKENS_PER_STEP  # the run's batch size: only save_interval was overridden

    # Interrupted after step 2: --resume auto continues the anneal exactly where it was.
    (out / "checkpoints" / "last.ckpt").unlink()
    (out / "checkpoints" / "step-00000002.ckpt").rename(out / "checkpoints" / "last.ckpt")
    run_litcpt(*args, "--resume", "auto")
    resumed = series(read_metrics(out), "lr")[4:]  # logs/version_1
    assert resumed == [(2, pytest.approx(expected[2], rel=1e-12)), (3, pytest.approx(expected[3], rel=1e-12))]


@pytest.mark.slow
def test_cooldown_checkpoint_is_refused_by_the_cli(source_run):
    proc = run_litcpt("anneal", "--checkpoint", str(source_run / "checkpoints" / "step-00000005.ckpt"),
                      "--anneal_steps", "4", check=False)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("litcpt anneal: error: checkpoint:") and "cooldown phase" in line
    assert not (source_run / "anneal-00000005").exists()


@pytest.mark.slow
def test_anneal_hands_its_stage_to_lr_phases(source_run, tmp_path):
    """An anneal is a new stage from the source checkpoint's global step: a data phase triggered by the LR starts at
    the first anneal step whose LR is below the threshold, counted from there (not from step 0)."""
    from litcpt.data import Replay, TextFiles
    from litcpt.schedules import LRStage
    from tests.helpers import REPO

    steps, k = 6, 3
    threshold = (closed_form(k - 1, steps, "exponential") + closed_form(k, steps, "exponential")) / 2
    pretrain = REPO / "litcpt/assets/data/pretrain"
    data = Replay(new=TextFiles(pretrain / "en", name="en"), replay=TextFiles(pretrain / "fr", name="fr"), fraction=0.0,
                  phases=[{"lr_below": threshold, "fraction": 0.5}], cache_dir=tmp_path / "cache")
    setup(checkpoint=source_run / "checkpoints" / "step-00000010.ckpt", anneal_steps=steps, data=data,
          out_dir=tmp_path / "anneal")
    expected = Infinite(warmup=0, cooldown=0, constant=0, anneal=steps - 1, max_lr=CONST_LR, const_lr=CONST_LR,
                        min_lr=MIN_LR)
    assert data.lr_stage == LRStage(expected, first_step=10)
    per_step, at_10 = 8, data._resume[0] + (10 - data._resume[1]) * 8  # the stream position at the branch's start
    assert data.mixer().starts == [0, at_10 + k * per_step]  # step 10 + k: the anneal's k-th step
