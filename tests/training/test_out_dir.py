"""What a training command does with its ``out_dir`` before it trains: nothing is written in an existing ``out_dir``
until the run is known to start (a refused run, a dry run and a refused re-run leave it byte-identical), a re-run
into a run's dir is refused unless it resumes, output paths and the optimizer's values are checked before any work,
a resume of another model config names the keys, and ``train.keep_checkpoints`` keeps the newest k."""

from __future__ import annotations

import hashlib

import pytest

from tests.helpers import run_litcpt, tiny_recipe


def _snapshot(directory):
    """Every file under ``directory`` with the hash of its bytes (and every dir)."""
    return {str(p.relative_to(directory)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(directory.rglob("*"))}


def _error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 4-step tiny pretrain run (its recipe and its out_dir)."""
    tmp = tmp_path_factory.mktemp("run")
    recipe = tiny_recipe(tmp, **{"train.max_steps": 4, "train.save_interval": 2, "eval.interval": 4})
    run_litcpt("pretrain", "--config", str(recipe))
    return recipe, tmp / "out"


@pytest.mark.slow
def test_rerun_into_a_finished_run_is_refused_and_leaves_it_untouched(finished_run):
    recipe, out = finished_run
    before = _snapshot(out)
    proc = run_litcpt("pretrain", "--config", str(recipe), check=False)
    assert proc.returncode == 2
    line = _error_line(proc)
    assert f"out_dir: '{out}' already holds a run (final/, checkpoints/*.ckpt, step-*/)" in line
    assert "--resume auto" in line
    assert _snapshot(out) == before


@pytest.mark.slow
def test_resume_with_another_model_config_names_the_keys_and_leaves_the_run_untouched(finished_run):
    recipe, out = finished_run
    before = _snapshot(out)
    proc = run_litcpt("pretrain", "--config", str(recipe), "--resume", str(out / "checkpoints" / "last.ckpt"),
                      "--model_config.n_layer", "3", "--train.max_steps", "6", check=False)
    assert proc.returncode == 1
    line = _error_line(proc)
    assert "was trained with another model config: n_layer (checkpoint 2, now 3)" in line
    assert _snapshot(out) == before  # config.yaml of the run included: written only once the run starts


@pytest.mark.slow
def test_dry_run_into_a_finished_run_writes_nothing(finished_run):
    recipe, out = finished_run
    before = _snapshot(out)
    run_litcpt("pretrain", "--config", str(recipe), "--resume", "auto", "--dry_run", "true")
    assert _snapshot(out) == before


@pytest.mark.slow
def test_dry_run_into_a_new_dir_writes_no_config_yaml(tmp_path):
    recipe = tiny_recipe(tmp_path)
    proc = run_litcpt("pretrain", "--config", str(recipe), "--dry_run", "true")
    assert "dry run" in proc.stdout.lower() or proc.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_out_dir_that_is_a_file_is_refused_in_one_line(tmp_path):
    recipe = tiny_recipe(tmp_path)
    (tmp_path / "out").write_text("not a dir")
    proc = run_litcpt("pretrain", "--config", str(recipe), check=False)
    assert proc.returncode == 2
    assert f"out_dir: '{tmp_path / 'out'}' is a file, expected a directory" in _error_line(proc)


@pytest.mark.slow
def test_negative_lr_names_the_key(tmp_path):
    recipe = tiny_recipe(tmp_path)
    proc = run_litcpt("pretrain", "--config", str(recipe), "--optimizer.init_args.lr", "-0.001", check=False)
    assert proc.returncode == 2
    assert "optimizer.init_args.lr: Invalid learning rate: -0.001" in _error_line(proc)
    assert not (tmp_path / "out").exists()


def test_dpo_negative_beta_is_refused_before_the_checkpoint_is_read(tmp_path):
    proc = run_litcpt("dpo", "--checkpoint_dir", str(tmp_path / "missing"), "--out_dir", str(tmp_path / "o"),
                      "--beta", "-0.1", check=False)
    assert proc.returncode == 2
    assert "beta: expected a finite number > 0, got -0.1" in _error_line(proc)  # not "checkpoint_dir: ... missing"


def test_dpo_ipo_with_an_f_divergence_is_refused(tmp_path):
    proc = run_litcpt("dpo", "--checkpoint_dir", str(tmp_path / "missing"), "--loss_type", "ipo",
                      "--f_divergence_type", "forward_kl", check=False)
    assert proc.returncode == 2
    assert "f_divergence_type='forward_kl': only for loss_type in" in _error_line(proc)


@pytest.mark.slow
def test_keep_checkpoints_keeps_the_newest_k(tmp_path):
    recipe = tiny_recipe(tmp_path, **{"train.max_steps": 8, "train.save_interval": 2, "eval.interval": 8,
                                      "train.keep_checkpoints": 2})
    run_litcpt("pretrain", "--config", str(recipe))
    ckpts = sorted(p.name for p in (tmp_path / "out" / "checkpoints").glob("*.ckpt"))
    assert ckpts == ["last.ckpt", "step-00000006.ckpt", "step-00000008.ckpt"]
    run_litcpt("pretrain", "--config", str(recipe), "--resume", "true", "--train.max_steps", "10")
    ckpts = sorted(p.name for p in (tmp_path / "out" / "checkpoints").glob("*.ckpt"))
    assert ckpts == ["last.ckpt", "step-00000008.ckpt", "step-00000010.ckpt"]
