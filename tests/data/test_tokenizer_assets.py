"""Bundled data and tokenizer: present, loadable by litgpt, exact round trips, reproducible."""

import gzip
import json

import pytest
import torch
from litgpt import Tokenizer

from litcpt.assets import data_dir, preference_file, pretrain_files, tokenizer_dir
from litcpt.assets.make_tokenizer import SPECIAL_TOKEN, train_tokenizer, write_tokenizer_dir


def test_files_present():
    assert [p.name for p in pretrain_files("en")] == ["tinyshakespeare.txt", "wonderland.txt"]
    assert [p.name for p in pretrain_files("fr")] == ["notre-dame-de-paris.txt", "wiki-fr-extract.txt"]
    for p in pretrain_files("en") + pretrain_files("fr"):
        assert p.stat().st_size > 50_000
    assert preference_file().is_file()
    readme = (data_dir() / "README.md").read_text(encoding="utf-8")
    for p in pretrain_files("en") + pretrain_files("fr") + [preference_file()]:
        assert p.name in readme
    assert "CC BY-SA" in readme and "MIT" in readme


def test_pretrain_files_bad_lang():
    with pytest.raises(ValueError, match="lang"):
        pretrain_files("de")


def test_preference_file_rows():
    with gzip.open(preference_file(), "rt", encoding="utf-8") as fp:
        rows = [json.loads(line) for line in fp]
    assert len(rows) == 2000
    assert set(rows[0]) == {"chosen", "rejected"}


def test_tokenizer_dir_litgpt(tokenizer):
    assert (tokenizer_dir() / "tokenizer.json").is_file()
    assert tokenizer.backend == "huggingface"
    assert tokenizer.vocab_size == 4096
    assert tokenizer.bos_id == 0 and tokenizer.eos_id == 0
    assert tokenizer.token_to_id(SPECIAL_TOKEN) == 0
    assert tokenizer.use_bos is False
    config = json.loads((tokenizer_dir() / "tokenizer_config.json").read_text())
    assert config["add_bos_token"] is False
    assert config["bos_token"] == config["eos_token"] == SPECIAL_TOKEN


@pytest.mark.parametrize(
    "text",
    [
        "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer",
        "Alice was beginning to get very tired of sitting by her sister on the bank.",
        "Notre-Dame de Paris : élève, garçon, cœur, Œuvre, « guillemets », déjà-vu, où, naïf.",
        "  leading spaces,\ttabs\n\n\nand trailing newline\n",
        "Ελληνικά, 日本語 and emoji 🙂 still round-trip at byte level",
        "",
    ],
)
def test_round_trip(tokenizer, text):
    ids = tokenizer.encode(text)
    assert ids.dtype == torch.int
    assert not (ids == 0).any(), "plain text must not produce the special token"
    assert tokenizer.decode(ids) == text


def test_bos_eos_flags(tokenizer):
    ids = tokenizer.encode("bonjour", bos=True, eos=True)
    assert ids[0].item() == 0 and ids[-1].item() == 0
    assert tokenizer.decode(ids[1:-1]) == "bonjour"


def test_real_text_round_trip_and_compression(tokenizer):
    for lang in ("en", "fr"):
        text = pretrain_files(lang)[-1].read_text(encoding="utf-8-sig")[:20_000]
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        # a trained BPE compresses: well under one token per 2 characters
        assert len(ids) < len(text) / 2.5, (lang, len(ids), len(text))
    assert not pretrain_files("fr")[0].read_text(encoding="utf-8-sig").startswith("\ufeff")


def test_training_is_deterministic(tmp_path):
    files = [pretrain_files("en")[1], pretrain_files("fr")[0]]
    a = train_tokenizer(files, vocab_size=600).to_str()
    b = train_tokenizer(files, vocab_size=600).to_str()
    assert a == b
    out = write_tokenizer_dir(tmp_path / "tok", files, vocab_size=600)
    small = Tokenizer(out)
    assert small.vocab_size == 600 and small.eos_id == 0
    assert small.decode(small.encode("garçon")) == "garçon"


def test_shipped_tokenizer_matches_script(tmp_path):
    """The shipped tokenizer.json is exactly what the script produces."""
    out = write_tokenizer_dir(tmp_path / "tok", pretrain_files("en") + pretrain_files("fr"))
    shipped = json.loads((tokenizer_dir() / "tokenizer.json").read_text(encoding="utf-8"))
    rebuilt = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    assert shipped == rebuilt
