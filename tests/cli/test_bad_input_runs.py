"""Bad input to whole commands: each is one line naming the file or the key, a non-zero exit status, and no work
done (or written) first."""

from __future__ import annotations

import pytest

from tests.helpers import run_litcpt, tiny_recipe

pytestmark = pytest.mark.slow  # each builds a command's parser in this process (a few seconds)


def _error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("command", ["reward", "dpo"])
def test_an_empty_data_file_is_refused_naming_it(command, tmp_path, tiny_checkpoint):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "out"
    proc = run_litcpt(command, "--checkpoint_dir", str(tiny_checkpoint), "--out_dir", str(out),
                      "--data", "litcpt.data.Preference", "--data.train_data_path", str(empty),
                      "--train.global_batch_size", "2", "--train.micro_batch_size", "2", check=False)
    assert proc.returncode == 1
    assert f"data.train_data_path: '{empty}' holds no preference pairs" in _error_line(proc)
    assert not (out / "config.yaml").exists()  # the run never started


def test_score_output_and_data_paths_are_checked_before_the_model_is_loaded(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    missing = str(tmp_path / "no-checkpoint")
    proc = run_litcpt("score", "--checkpoint_dir", missing, "--data", str(data), "--out_file", str(tmp_path),
                      check=False)
    assert proc.returncode == 2
    assert f"out_file: '{tmp_path}' is a directory, expected a file path" in _error_line(proc)
    proc = run_litcpt("score", "--checkpoint_dir", missing, "--data", str(tmp_path), check=False)
    assert proc.returncode == 1
    assert f"data: '{tmp_path}' is a directory, expected a .jsonl or .jsonl.gz file" in _error_line(proc)


def test_model_name_beside_model_config_says_which_wins(tmp_path):
    recipe = tiny_recipe(tmp_path)
    proc = run_litcpt("pretrain", "--config", str(recipe), "--model_name", "Llama-2-7b-hf", "--dry_run", "true")
    assert "litcpt: model_name 'Llama-2-7b-hf' is ignored: model_config (name " in proc.stderr
