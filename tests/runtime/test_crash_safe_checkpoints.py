"""Kills during checkpoint saves, with TMPDIR on the run's filesystem and on another one (/dev/shm): every ``.ckpt``
left behind loads, resume picks the newest loadable one, leftovers are cleaned, and the final weights equal those of
an uninterrupted run."""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, child_env, run_litcpt, start_paused_at_save, tiny_recipe, wait_for

pytestmark = pytest.mark.slow

STEPS = {"train.max_steps": 16, "train.save_interval": 1, "eval.interval": 8}


def _env(tmpdir: Path) -> dict[str, str]:
    return child_env(TMPDIR=str(tmpdir))


def _final_weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "final" / "lit_model.pth", weights_only=True)


def _assert_all_ckpts_load(out: Path) -> None:
    ckpts = sorted((out / "checkpoints").glob("*.ckpt"))
    assert ckpts
    for path in ckpts:
        torch.load(path, map_location="cpu", weights_only=True)  # raises on a truncated file


def _kill_in_save(recipe: Path, tmpdir: Path, nth: int, marker: Path) -> None:
    """Start a run whose ``nth`` .ckpt save pauses before its rename, wait for the pause, kill -9 it."""
    proc = start_paused_at_save(nth, marker, "pretrain", "--config", str(recipe), "--resume", "auto", env=_env(tmpdir))
    wait_for(marker, proc)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert marker.exists(), f"the run ended before its save #{nth}: {err.decode()[-2000:]}"
    marker.unlink()


def _kill_at_random(recipe: Path, tmpdir: Path, out: Path, seed: int) -> None:
    """Resume, then kill -9 at a random moment after the next checkpoint write began (saves every step). However
    loaded the machine, the kill comes before the run ends: its 6th save (3 steps on) pauses until the kill."""
    last = out / "checkpoints" / "last.ckpt"
    before = last.stat().st_mtime_ns
    paused = tmpdir / "paused-at-random"
    proc = start_paused_at_save(6, paused, "pretrain", "--config", str(recipe), "--resume", "auto", env=_env(tmpdir))
    while last.stat().st_mtime_ns == before and proc.poll() is None and not paused.exists():
        time.sleep(0.01)
    time.sleep(random.Random(seed).uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    paused.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict[str, torch.Tensor]:
    tmp = tmp_path_factory.mktemp("straight")
    run_litcpt("pretrain", "--config", str(tiny_recipe(tmp, **STEPS)))
    return _final_weights(tmp / "out")


def _resume_and_compare(recipe: Path, tmpdir: Path, out: Path, straight: dict[str, torch.Tensor]) -> str:
    proc = run_litcpt("pretrain", "--config", str(recipe), "--resume", "auto", env={"TMPDIR": str(tmpdir)}, check=False)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    final = _final_weights(out)
    assert final.keys() == straight.keys()
    for key in final:
        assert torch.equal(final[key], straight[key]), key
    names = {p.name for p in (out / "checkpoints").iterdir()}
    assert not any("-v" in n for n in names), names  # a redone step overwrote its checkpoint
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "stale temporary dirs were not removed"
    assert not [n for n in names if n.startswith(".")], names
    return proc.stderr


def test_kill_during_saves_with_tmpdir_on_another_filesystem(tmp_path, straight):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's tmp dir")
    tmpdir = Path(os.environ.get("LITCPT_TEST_SHM", shm)) / f"litcpt-test-{os.getpid()}-{tmp_path.name}"
    tmpdir.mkdir()
    try:
        recipe = tiny_recipe(tmp_path, **STEPS)
        out = tmp_path / "out"
        # 1. killed inside the 5th .ckpt save (step-00000003.ckpt written but not yet renamed)
        _kill_in_save(recipe, tmpdir, 5, tmp_path / "paused")
        _assert_all_ckpts_load(out)
        assert list((out / "checkpoints").glob(".step-00000003.ckpt.*.tmp"))
        # 2. resumed and killed at a random moment during the saves that follow
        _kill_at_random(recipe, tmpdir, out, seed=0)
        _assert_all_ckpts_load(out)
        assert not (out / "final").exists(), "killed too late to test resume"
        # 3. a truncated last.ckpt (what a copy across filesystems used to leave): resume uses the newest step-*.ckpt
        last = out / "checkpoints" / "last.ckpt"
        newest = max(int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("step-*.ckpt"))
        with open(last, "r+b") as fp:
            fp.truncate(4096)
        stderr = _resume_and_compare(recipe, tmpdir, out, straight)
        lines = [ln for ln in stderr.splitlines() if "cannot load" in ln]
        assert len(lines) == 1 and "last.ckpt" in lines[0] and f"step-{newest:08d}.ckpt (step {newest})" in lines[0], (
            stderr[-3000:]
        )
        left = [p for p in tmpdir.rglob("*") if p.is_file()]
        assert not left, f"temporary files were left in TMPDIR: {left}"
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def test_kill_during_save_with_tmpdir_on_the_same_filesystem(tmp_path, straight):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    recipe = tiny_recipe(tmp_path, **STEPS)
    out = tmp_path / "out"
    _kill_in_save(recipe, tmpdir, 8, tmp_path / "paused")  # last.ckpt of step 4 written, not renamed
    _assert_all_ckpts_load(out)
    _resume_and_compare(recipe, tmpdir, out, straight)


def test_no_loadable_checkpoint_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    from litcpt.cli.main import main

    ckpts = tmp_path / "out" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    (ckpts / "step-00000002.ckpt").write_bytes(b"")
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_:
        main(["pretrain", "--config", str(tiny_recipe(tmp_path)), "--resume", "true"])
    assert exit_.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("litcpt pretrain: error: resume: no checkpoint in"), lines
    assert "last.ckpt (" in lines[-1] and "step-00000002.ckpt (" in lines[-1]
