"""A full disk during a save is one line (the file, "no space left on device", the bytes free and written), the
previous files stay intact, and a run that fills the disk ends with that line and exit status 1."""

from __future__ import annotations

import errno

import pytest
import torch

from litcpt.runtime.atomic import NoSpaceError, write_text
from litcpt.runtime.checkpoint import atomic_torch_save, save_litgpt_dir
from tests.conftest import tiny_config
from tests.helpers import run_litcpt, tiny_recipe


def _full_disk_save(real_save, when=lambda obj: True):
    """``torch.save`` that writes a few bytes and then fails as torch's writer does on a full disk: a RuntimeError
    raised while handling the OSError(ENOSPC) of the file's write."""
    def save(obj, f, *args, **kwargs):
        if not when(obj):
            return real_save(obj, f, *args, **kwargs)
        try:
            if hasattr(f, "write"):
                f.write(b"x" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:  # torch's writer: the OSError is only the context of its RuntimeError
            message = "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0"
            raise RuntimeError(message)  # noqa: B904
    return save


def test_atomic_save_on_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)
    old = path.read_bytes()
    monkeypatch.setattr(torch, "save", _full_disk_save(torch.save))
    with pytest.raises(NoSpaceError) as err:
        atomic_torch_save({"step": 2}, path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: no space left on device (")
    assert "bytes free" in message and "the 100 bytes it wrote" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no chained traceback
    assert path.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_text_write_on_a_full_disk(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    write_text(path, "a: 1\n")

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(NoSpaceError, match=rf"^{path}: no space left on device"):
        with monkeypatch.context() as m:
            m.setattr("os.fsync", fail)
            write_text(path, "a: 2\n")
    assert path.read_text() == "a: 1\n"


def test_litgpt_dir_on_a_full_disk_keeps_the_old_dir(tmp_path, monkeypatch):
    from litgpt import GPT

    config = tiny_config()
    state = GPT(config).state_dict()
    out = save_litgpt_dir(state, config, tmp_path / "step-00000002")
    before = (out / "lit_model.pth").read_bytes()
    monkeypatch.setattr(torch, "save", _full_disk_save(torch.save))
    with pytest.raises(NoSpaceError, match=rf"^{out}: no space left on device"):
        save_litgpt_dir(state, config, out)
    assert (out / "lit_model.pth").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000002"]


@pytest.mark.slow
def test_a_run_that_fills_the_disk_ends_in_one_line_and_resumes(tmp_path, monkeypatch):
    recipe = tiny_recipe(tmp_path, **{"train.max_steps": 4, "train.save_interval": 2, "eval.interval": 4})
    at_step_4 = _full_disk_save(torch.save, when=lambda obj: isinstance(obj, dict) and obj.get("global_step") == 4)
    monkeypatch.setattr(torch, "save", at_step_4)
    proc = run_litcpt("pretrain", "--config", str(recipe), check=False)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "checkpoints/step-00000004.ckpt: no space left on device (" in lines[0]
    monkeypatch.undo()
    out = tmp_path / "out"
    assert torch.load(out / "checkpoints" / "step-00000002.ckpt", weights_only=True)["global_step"] == 2
    run_litcpt("pretrain", "--config", str(recipe), "--resume", "auto")
    assert (out / "final" / "lit_model.pth").is_file()
