"""Which checkpoint a resume uses, and what interrupted saves leave behind (fast, no training)."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from litcpt.runtime.checkpoint import atomic_torch_save
from litcpt.runtime.resume import check_loadable, clean_stale_saves, pick_resume_checkpoint


def _ckpt(path, step):
    atomic_torch_save({"global_step": step, "state_dict": {"w": torch.zeros(4)}}, path)
    return path


def test_last_wins_while_it_loads_else_the_newest_step_that_loads(tmp_path, capsys):
    ckpts = tmp_path / "checkpoints"
    assert pick_resume_checkpoint(ckpts) is None
    for step in (2, 4, 6):
        _ckpt(ckpts / f"step-{step:08d}.ckpt", step)
    last = _ckpt(ckpts / "last.ckpt", 4)  # killed between step-6 and its last.ckpt: last is whole, so it is used
    assert pick_resume_checkpoint(ckpts) == last and capsys.readouterr().err == ""

    last.write_bytes(last.read_bytes()[:300])  # truncated (what a copy across filesystems used to leave)
    (ckpts / "step-00000006.ckpt").write_bytes(b"")
    assert pick_resume_checkpoint(ckpts) == ckpts / "step-00000004.ckpt"
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot load last.ckpt (" in err and "step-00000006.ckpt (" in err
    assert err.endswith("resuming from " + str(ckpts / "step-00000004.ckpt") + " (step 4) instead")

    for name in ("step-00000002.ckpt", "step-00000004.ckpt"):
        (ckpts / name).write_bytes(b"PK")
    with pytest.raises(ValueError, match=r"^resume: no checkpoint in .* can be loaded: last.ckpt \(.*step-00000002"):
        pick_resume_checkpoint(ckpts)
    with pytest.raises(ValueError, match=r"resume: checkpoint .*step-00000002.ckpt' cannot be loaded"):
        check_loadable(ckpts / "step-00000002.ckpt")


def test_stale_temporary_files_and_dirs_are_removed_and_nothing_else(tmp_path):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    fd, _ = tempfile.mkstemp(dir=ckpts, prefix=".last.ckpt.", suffix=".tmp")
    os.close(fd)
    fd, _ = tempfile.mkstemp(dir=tmp_path, prefix=".ref_logps.pt.", suffix=".tmp")
    os.close(fd)
    (tmp_path / ".config.yaml.1234.tmp").write_text("x")
    (tmp_path / ".step-00000001.tmp-deadbeef").mkdir()
    (tmp_path / ".final.old-0badc0de").mkdir()  # stale: the swap finished, final/ is there
    keep = ["keep.tmp", ".hidden", "step-00000001", "final"]
    (tmp_path / "final").mkdir()
    (tmp_path / "keep.tmp").write_text("x")
    (tmp_path / ".hidden").write_text("x")
    (tmp_path / "step-00000001").mkdir()
    _ckpt(ckpts / "last.ckpt", 1)
    assert len(clean_stale_saves(tmp_path)) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*keep, "checkpoints"])
    assert [p.name for p in ckpts.iterdir()] == ["last.ckpt"]


def test_atomic_save_leaves_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = _ckpt(tmp_path / "last.ckpt", 1)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        _ckpt(path, 2)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


class Killed(BaseException):
    """A SIGKILL: no ``except`` or ``finally`` of the code under test runs after it."""


def test_a_kill_between_the_two_renames_of_a_checkpoint_dir_keeps_the_intact_one(tmp_path, monkeypatch, config):
    """save_litgpt_dir moves the old dir aside, then the new one in: a kill between the renames leaves neither
    ``final/`` nor a whole new one for sure; the next start's cleanup must put the old one back, not delete both."""
    from litcpt.runtime import checkpoint

    final = tmp_path / "final"
    old_weights = {"w": torch.zeros(2)}
    checkpoint.save_litgpt_dir(old_weights, config, final)
    renames = []

    def killed_on_the_second_rename(src, dst):
        renames.append((src, dst))
        if len(renames) == 2:
            raise Killed
        os.rename(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", killed_on_the_second_rename)
    monkeypatch.setattr(checkpoint.shutil, "rmtree", lambda *args, **kwargs: None)  # finally blocks do not run
    with pytest.raises(Killed):
        checkpoint.save_litgpt_dir({"w": torch.ones(2)}, config, final)
    monkeypatch.undo()
    assert not final.exists()
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == [".final.old", ".final.tmp"]

    clean_stale_saves(tmp_path)  # the next start
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    assert torch.equal(torch.load(final / "lit_model.pth", weights_only=True)["w"], old_weights["w"])
    assert (final / "model_config.yaml").is_file()


def test_keeping_several_step_checkpoints_ranks_them_by_step(tmp_path):
    """``train.keep_checkpoints: 3`` (the GPU recipes') made Lightning refuse to start ("No quantity for top_k to
    track"); kept checkpoints are now the latest by step. 1 and -1 stay Lightning's own unmonitored behaviour."""
    from litcpt.runtime.resume import StepCheckpoint

    keep = StepCheckpoint(dirpath=tmp_path, save_top_k=3)
    assert (keep.monitor, keep.mode, keep.save_top_k) == ("step", "max", 3)
    assert all(StepCheckpoint(dirpath=tmp_path, save_top_k=k).monitor is None for k in (-1, 0, 1))
