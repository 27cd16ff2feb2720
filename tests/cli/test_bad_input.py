"""Bad input points at the row: undecodable bytes name file and line (one reader for text corpora and preference
files, BOM dropped by both), ``encoding`` reads other encodings, and bad values inside ``init_args`` give the
innermost message in one short line."""

from __future__ import annotations

import gzip
import json

import pytest

from litcpt.data.preference.pair_loading import load_preference_pairs
from litcpt.data.text.sources import iter_documents, resolve_source
from litcpt.data.textio import iter_lines

PAIR = {"prompt": "Q: café?", "chosen": "A: yes", "rejected": "A: no"}


def _jsonl(rows, bad_line=None):
    lines = [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in rows]
    if bad_line is not None:
        lines[bad_line - 1] = lines[bad_line - 1].replace("café".encode(), "café".encode("latin-1"))
    return b"\n".join(lines) + b"\n"


def test_preference_file_with_a_latin1_byte_names_file_and_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(_jsonl([PAIR] * 5, bad_line=4))
    with pytest.raises(ValueError) as err:
        load_preference_pairs(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: line 4: not valid utf-8 (byte 0xe9 at column")
    assert "encoding" in message
    assert len(load_preference_pairs(path, encoding="latin-1")) == 5


def test_text_corpus_with_a_bad_byte_names_file_and_line(tmp_path):
    txt = tmp_path / "corpus" / "a.txt"
    txt.parent.mkdir()
    txt.write_bytes(b"line one\nline two\nbad \xff here\n")
    with pytest.raises(ValueError, match=rf"^{txt}: line 3: not valid utf-8 \(byte 0xff at column 5\)"):
        list(iter_documents(resolve_source(txt.parent)))
    jsonl = tmp_path / "docs.jsonl.gz"
    with gzip.open(jsonl, "wb") as fp:
        fp.write(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=rf"^{jsonl}: line 2: not valid utf-8"):
        list(iter_documents(resolve_source(jsonl)))
    docs = [text for text, _ in iter_documents(resolve_source(jsonl), encoding="latin-1")]
    assert docs == ["ok", "café"]


def test_bom_is_dropped_in_preference_files_and_text_corpora(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(b"\xef\xbb\xbf" + _jsonl([PAIR, PAIR]))
    assert [p.prompt for p in load_preference_pairs(pairs)] == ["Q: café?"] * 2
    docs = tmp_path / "docs.jsonl"
    docs.write_bytes(b'\xef\xbb\xbf{"text": "hello"}\n')
    assert [t for t, _ in iter_documents(resolve_source(docs))] == ["hello"]
    txt = tmp_path / "a.txt"
    txt.write_bytes(b"\xef\xbb\xbfhello\n")
    assert "".join(t for t, _ in iter_documents(resolve_source(txt))) == "hello\n"
    assert list(iter_lines(txt)) == [(1, "hello\n")]


def test_unknown_encoding_is_a_one_line_error(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(_jsonl([PAIR]))
    with pytest.raises(ValueError, match=r"unknown encoding 'utf-9'"):
        load_preference_pairs(path, encoding="utf-9")
    with pytest.raises(ValueError, match=r"not ASCII-compatible"):
        load_preference_pairs(path, encoding="utf-16")


EN, FR = "litcpt/assets/data/pretrain/en", "litcpt/assets/data/pretrain/fr"


@pytest.mark.parametrize(("command", "args", "expected"), [
    ("pretrain", ["--data", "litcpt.data.Replay", "--data.new", FR, "--data.replay", f"[{EN}]",
                  "--data.fraction", "1.5"], "data (litcpt.data.Replay): Replay: fraction must be in [0, 1), got 1.5"),
    ("pretrain", ["--data", "litcpt.data.Replay", "--data.new", FR, "--data.replay", f"[{EN}, {FR}]",
                  "--data.weights", "[1, -1]"], "Replay: weights[1] must be a positive number, got -1"),
    ("pretrain", ["--data", "litcpt.data.Replay", "--data.new", FR, "--data.replay", f"[{EN}]",
                  "--data.weights", "[0]"], "Replay: weights[0] must be a positive number, got 0"),
    ("pretrain", ["--data", "litcpt.data.Replay",
                  "--data.new", json.dumps({"class_path": "litcpt.data.TextFiles",
                                              "init_args": {"train_data_path": str(FR), "name": "x"}}),
                  "--data.replay", json.dumps([{"class_path": "litcpt.data.TextFiles",
                                                 "init_args": {"train_data_path": str(EN), "name": "x"}}])],
     "Replay: source names must be unique, ['x'] used twice"),
    ("pretrain", ["--lr_schedule", "litcpt.callbacks.WarmupCosineLR", "--lr_schedule.warmup", "1.5"],
     "lr_schedule (litcpt.callbacks.WarmupCosineLR): warmup=1.5 must be in [0, 1]"),
    ("dpo", ["--checkpoint_dir", "ckpt", "--data", "litcpt.data.Preference", "--data.max_length", "1"],
     "data (litcpt.data.Preference): max_length must be >= 2 or None, got 1"),
])
def test_bad_init_args_give_the_innermost_message_in_one_short_line(command, args, expected, capsys, monkeypatch,
                                                                     repo_root):
    from litcpt.cli.main import main

    monkeypatch.chdir(repo_root)
    monkeypatch.setenv("LITCPT_NO_CLI_CACHE", "1")
    with pytest.raises(SystemExit) as exit_:
        main([command, *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Does not validate" not in err and "Namespace(" not in err, err
    message = err.split(" (arguments: ")[0]
    assert message.startswith(f"litcpt {command}: error: ") and expected in message, err
    assert len(message) < 200, message


@pytest.mark.parametrize("cache", ["off", "cold", "warm"])
def test_keys_are_not_completed_from_a_prefix(cache, capsys, monkeypatch, repo_root, tmp_path):
    from litcpt.cli.main import main

    monkeypatch.chdir(repo_root)
    monkeypatch.setenv("LITCPT_CACHE_DIR", str(tmp_path))
    if cache == "off":
        monkeypatch.setenv("LITCPT_NO_CLI_CACHE", "1")
    for _ in range(2 if cache == "warm" else 1):
        with pytest.raises(SystemExit) as exit_:
            main(["pretrain", "--train.max_token", "655360", "--print_config"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "error: unknown key '--train.max_token' (did you mean '--train.max_tokens'?)" in err, err
