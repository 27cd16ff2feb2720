"""litcpt.runtime.atomic: one way to write a file whole or not at all."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from litcpt.runtime import atomic
from litcpt.runtime.resume import _STALE_FILE


def test_write_text_json_yaml_lines(tmp_path):
    assert atomic.write_text(tmp_path / "a" / "x.txt", "héllo").read_text(encoding="utf-8") == "héllo"
    assert json.loads(atomic.write_json(tmp_path / "x.json", {"a": 1}).read_text()) == {"a": 1}
    assert atomic.write_yaml(tmp_path / "x.yaml", {"b": [1, 2]}).read_text() == "b:\n- 1\n- 2\n"
    assert atomic.write_lines(tmp_path / "x.jsonl", ["1", "2"]).read_text() == "1\n2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "x.json", "x.jsonl", "x.yaml"]


def test_error_while_writing_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = atomic.write_text(tmp_path / "x.txt", "old")

    def fail(fp):
        fp.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic.write_atomic(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_kill_before_the_rename_leaves_the_old_file_and_a_temporary_that_resume_cleans(tmp_path):
    """A SIGKILL inside the write (simulated with os._exit) keeps the old content; the leftover is named as
    litcpt.runtime.resume.clean_stale_saves expects, so the next start removes it."""
    path = atomic.write_text(tmp_path / "x.txt", "old")
    code = (f"import os; from litcpt.runtime import atomic\n"
            f"with atomic.atomic_file({str(path)!r}) as fp:\n"
            f"    fp.write('new'); fp.flush(); os._exit(9)\n")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert path.read_text() == "old"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "x.txt"]
    assert len(leftovers) == 1 and _STALE_FILE.match(leftovers[0]), leftovers


def test_temporary_lives_in_the_destination_directory_whatever_tmpdir_is(tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.setenv("TMPDIR", str(other))
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (seen.append(src), real_replace(src, dst)))
    atomic.write_atomic(tmp_path / "d" / "x.bin", lambda fp: fp.write(b"\0"))
    assert os.path.dirname(seen[0]) == str(tmp_path / "d")
    assert re.match(r"^\.x\.bin\..{8}\.tmp$", os.path.basename(seen[0]))
    assert not list(other.iterdir())


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode must be"):
        with atomic.atomic_file(tmp_path / "x", "a"):
            pass


def test_importing_atomic_does_not_import_torch():
    out = subprocess.run([sys.executable, "-c", "import sys, litcpt.runtime.atomic; print('torch' in sys.modules)"],
                         capture_output=True, text=True, env={**os.environ, "LITCPT_SKIP_VERSION_CHECK": "1"})
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_files_get_the_mode_of_the_umask_as_any_file_does(tmp_path, umask):
    """Not mkstemp's 0600: teammates on a shared cluster read the run's config.yaml and checkpoints."""
    from litcpt.runtime.checkpoint import atomic_torch_save

    before = os.umask(umask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open() gives
        written = [atomic.write_text(tmp_path / "config.yaml", "a: 1\n"), atomic.write_json(tmp_path / "r.json", {}),
                   atomic.write_atomic(tmp_path / "b.bin", lambda fp: fp.write(b"x"))]
        atomic_torch_save({"global_step": 1}, tmp_path / "last.ckpt")
        written.append(tmp_path / "last.ckpt")
        assert atomic.process_umask() == umask  # read, not changed
        assert os.umask(umask) == umask
    finally:
        os.umask(before)
    assert plain.stat().st_mode & 0o777 == 0o666 & ~umask
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name
