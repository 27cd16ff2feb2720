"""Tests for litcpt.data.preference.datamodule (parsing, split, truncation, collation, batching, DataModule)."""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from litgpt import Tokenizer
from litgpt.prompts import ChatML, PromptStyle

from litcpt.assets import preference_file, tokenizer_dir
from litcpt.data.preference.batching import (
    LengthBucketBatchSampler,
    PreferenceDataset,
    collate_preference,
    padding_fraction,
)
from litcpt.data.preference.chat import ASSISTANT_MARKER, render_chat_pair, split_conversation
from litcpt.data.preference.datamodule import Preference
from litcpt.data.preference.pair_loading import load_preference_pairs, load_preference_pairs_with_report, split_pairs
from litcpt.data.preference.pair_rows import PreferencePair, parse_preference_row
from litcpt.data.preference.pair_tokens import TokenizedPair, tokenize_pairs, truncate_sequence
from tests.helpers import run_script_on_two_ranks

# 1-based lines of the bundled file where chosen and rejected differ before the last reply.
ODD_HH_LINES = (1255, 1689, 1951, 1953)


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def bos_tokenizer(tmp_path_factory) -> Tokenizer:
    """The bundled tokenizer with ``add_bos_token: true``."""
    directory = tmp_path_factory.mktemp("bos_tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir() / name, directory / name)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["add_bos_token"] = True
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    tok = Tokenizer(directory)
    assert tok.use_bos and tok.bos_id is not None
    return tok


@pytest.fixture(scope="module")
def raw_bundled_rows() -> list[dict]:
    with gzip.open(preference_file(), "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def bundled_pairs() -> list[PreferencePair]:
    return load_preference_pairs(preference_file())


@pytest.fixture(scope="module")
def bundled_items(bundled_pairs, tokenizer) -> list[TokenizedPair]:
    return tokenize_pairs(bundled_pairs, tokenizer)[0]


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


PROMPT_ROW = {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "margin": 1.5, "subset": "math", "id": 7}
HH_ROW = {
    "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Help me\n\nAssistant: Sure.",
    "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Help me\n\nAssistant: No.",
}
CHAT_ROW = {
    "chosen": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Help me"},
        {"role": "assistant", "content": "Sure."},
    ],
    "rejected": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Help me"},
        {"role": "assistant", "content": "No."},
    ],
}


# ------------------------------------------------------------------------------ formats


def test_prompt_format_carries_optional_fields(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [PROMPT_ROW, {"prompt": "a", "chosen": "b", "rejected": "c"}])
    first, second = load_preference_pairs(path)
    assert first == PreferencePair("What is 2+2?", "4", "5", margin=1.5, subset="math", id="7")
    assert (second.margin, second.subset, second.id) == (None, None, None)


def test_hh_format_splits_after_last_shared_assistant_marker():
    pair = parse_preference_row(HH_ROW)
    assert pair.prompt == "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Help me\n\nAssistant:"
    assert (pair.chosen, pair.rejected) == (" Sure.", " No.")


def test_hh_format_when_conversations_differ_earlier():
    row = {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Bye\n\nAssistant: Ciao",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Go away.",
    }
    pair = parse_preference_row(row)
    assert pair.prompt == "\n\nHuman: Hi\n\nAssistant:"
    assert pair.chosen == " Hello!\n\nHuman: Bye\n\nAssistant: Ciao"
    assert pair.rejected == " Go away."


def test_split_conversation_rejects_unshared_marker():
    with pytest.raises(ValueError, match="share no"):
        split_conversation("\n\nHuman: a\n\nAssistant: b", "\n\nHuman: c\n\nAssistant: d")


def test_bundled_hh_file_parses_and_round_trips(bundled_pairs, raw_bundled_rows):
    pairs, report = load_preference_pairs_with_report(preference_file())
    assert len(pairs) == report.kept == report.rows == 2000
    assert report.formats == {"hh": 2000} and report.skipped == {}
    assert report.blank_responses == 4  # silent refusals: chosen reply is " "
    for pair, row in zip(bundled_pairs, raw_bundled_rows):
        assert pair.prompt.endswith(ASSISTANT_MARKER)
        assert pair.prompt + pair.chosen == row["chosen"]
        assert pair.prompt + pair.rejected == row["rejected"]
        assert pair.chosen and pair.rejected and pair.chosen != pair.rejected


def test_bundled_odd_rows(bundled_pairs, raw_bundled_rows):
    odd = []
    for number, (pair, row) in enumerate(zip(bundled_pairs, raw_bundled_rows), start=1):
        last_turns = {text[: text.rfind(ASSISTANT_MARKER) + len(ASSISTANT_MARKER)] for text in row.values()}
        if last_turns != {pair.prompt}:  # not "everything but the last reply" for both
            odd.append(number)
    assert tuple(odd) == ODD_HH_LINES
    for number in ODD_HH_LINES:
        pair = bundled_pairs[number - 1]
        assert pair.chosen.strip() and pair.rejected.strip()
        assert pair.chosen != pair.rejected
        assert pair.prompt.startswith("\n\nHuman: ")


def test_chat_format_implicit_prompt_matches_hh_rendering():
    pair = parse_preference_row(CHAT_ROW)
    assert pair == parse_preference_row(HH_ROW)


def test_chat_format_explicit_prompt_and_string_prompt():
    explicit = {
        "prompt": [{"role": "user", "content": "Hi"}],
        "chosen": [{"role": "assistant", "content": "Hello"}],
        "rejected": [{"role": "assistant", "content": "Go away"}],
    }
    pair = parse_preference_row(explicit)
    assert pair == PreferencePair("\n\nHuman: Hi\n\nAssistant:", " Hello", " Go away")
    as_string = dict(explicit, prompt="Hi")
    assert parse_preference_row(as_string) == pair
    full = dict(explicit, chosen=explicit["prompt"] + explicit["chosen"])  # full conversation also accepted
    assert parse_preference_row(full) == pair


def test_chat_format_with_litgpt_prompt_style():
    row = {
        "prompt": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"}],
        "chosen": [{"role": "assistant", "content": "Hello"}],
        "rejected": [{"role": "assistant", "content": "Go away"}],
    }
    pair = parse_preference_row(row, prompt_style=ChatML())
    assert pair.prompt == (
        "<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert (pair.chosen, pair.rejected) == ("Hello", "Go away")
    multi = parse_preference_row(CHAT_ROW, prompt_style="llama3")
    assert multi.prompt.count("<|start_header_id|>user") == 2 and multi.chosen == "Sure."
    with pytest.raises(ValueError, match="field 'prompt'.*cannot render"):
        parse_preference_row(CHAT_ROW, prompt_style="alpaca")


def test_forced_format(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [HH_ROW])
    with pytest.raises(ValueError, match=r"line 1: field 'prompt': missing"):
        load_preference_pairs(path, format="prompt")
    with pytest.raises(ValueError, match=r"line 1: field 'chosen': expected a list of messages"):
        load_preference_pairs(path, format="chat")
    assert len(load_preference_pairs(path, format="hh")) == 1
    with pytest.raises(ValueError, match="format must be one of"):
        load_preference_pairs(path, format="xml")


# ------------------------------------------------------------------------------ sources


def test_sources_json_gz_parquet_rows_and_dataset_dict(tmp_path):
    rows = [PROMPT_ROW, HH_ROW, CHAT_ROW]
    expected = [parse_preference_row(r) for r in rows]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    with gzip.open(tmp_path / "a.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    assert load_preference_pairs(tmp_path / "a.json") == expected
    assert load_preference_pairs(str(tmp_path / "a.jsonl.gz")) == expected
    assert load_preference_pairs(rows) == expected

    import pyarrow as pa
    import pyarrow.parquet as pq

    text_rows = [PROMPT_ROW, {"prompt": "q", "chosen": "x", "rejected": "y"}]  # missing margin -> null
    pq.write_table(pa.Table.from_pylist(text_rows), tmp_path / "a.parquet")
    parquet = load_preference_pairs(tmp_path / "a.parquet")
    assert parquet == [parse_preference_row(r) for r in text_rows]

    class FakeDataset(list):  # duck-types a datasets.Dataset
        column_names = ["prompt", "chosen", "rejected"]

    dataset_dict = {"train": FakeDataset(text_rows), "test": FakeDataset(text_rows[:1])}
    assert load_preference_pairs(dataset_dict, split="test") == parquet[:1]
    with pytest.raises(ValueError, match="pass split="):
        load_preference_pairs(dataset_dict)


def _save_to_disk(directory: Path, rows: list[dict]) -> None:
    """A real ``datasets.Dataset.save_to_disk`` directory."""
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(directory))


def test_save_to_disk_directory(tmp_path):
    rows = [PROMPT_ROW, {"prompt": "q", "chosen": "x", "rejected": "y"}]
    _save_to_disk(tmp_path / "single", rows)
    assert load_preference_pairs(tmp_path / "single") == [parse_preference_row(r) for r in rows]
    _save_to_disk(tmp_path / "dict" / "train", rows)
    _save_to_disk(tmp_path / "dict" / "test", rows[1:])
    (tmp_path / "dict" / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    assert len(load_preference_pairs(tmp_path / "dict", split="test")) == 1
    with pytest.raises(ValueError, match="pass split="):
        load_preference_pairs(tmp_path / "dict")


def test_missing_and_unsupported_sources(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_preference_pairs(tmp_path / "nope.jsonl")
    (tmp_path / "a.csv").write_text("prompt,chosen,rejected\n")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_preference_pairs(tmp_path / "a.csv")
    (tmp_path / "obj.json").write_text('{"prompt": "a"}')
    with pytest.raises(ValueError, match="expected a JSON list"):
        load_preference_pairs(tmp_path / "obj.json")
    (tmp_path / "broken.json").write_text('[\n{"prompt": "a",\n}]')
    with pytest.raises(ValueError, match=r"broken.json: line 3: invalid JSON"):
        load_preference_pairs(tmp_path / "broken.json")


# ------------------------------------------------------------------------------ bad rows

GOOD = {"prompt": "p", "chosen": "a", "rejected": "b"}
BAD_ROWS = [
    # (row as a JSONL line, reason, field or None, message fragment)
    ('{"prompt": "p", "chosen": "a",', "invalid_json", None, "invalid JSON"),
    ("[1, 2]", "not_an_object", None, "expected an object"),
    (json.dumps({"prompt": "p", "chosen": "a"}), "missing_field", "rejected", "missing"),
    (json.dumps({"prompt": "p", "chosen": None, "rejected": "b"}), "missing_field", "chosen", "missing"),
    (json.dumps({"prompt": "p", "chosen": "a", "rejected": 3}), "wrong_type", "rejected", "expected a string"),
    (json.dumps(dict(GOOD, margin="high")), "wrong_type", "margin", "expected a number"),
    (json.dumps(dict(GOOD, subset=1)), "wrong_type", "subset", "expected a string"),
    (json.dumps(dict(GOOD, chosen="")), "empty_response", "chosen", "empty"),
    (json.dumps(dict(GOOD, rejected="a")), "identical_responses", "chosen", "identical"),
    (json.dumps(dict(HH_ROW, rejected=HH_ROW["chosen"])), "identical_responses", "chosen", "identical"),
    (json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c"}), "no_shared_prompt",
     "chosen", "share"),
    (json.dumps({"chosen": "\n\nHuman: a\n\nAssistant:", "rejected": "\n\nHuman: a\n\nAssistant: b"}),
     "empty_response", "chosen", "empty"),
    (
        json.dumps({"chosen": [{"role": "bot", "content": "x"}], "rejected": [{"role": "assistant", "content": "y"}]}),
        "wrong_type",
        "chosen[0].role",
        "expected one of",
    ),
    (
        json.dumps({"chosen": [{"role": "user", "content": "x"}], "rejected": [{"role": "user", "content": "y"}]}),
        "no_shared_prompt",
        "chosen",
        "share",
    ),
    (
        json.dumps({"prompt": "q", "chosen": [{"role": "assistant", "content": ""}],
                    "rejected": [{"role": "assistant", "content": "y"}]}),
        "empty_response",
        "chosen",
        "empty",
    ),
    (
        json.dumps({"prompt": "q", "chosen": [{"role": "user", "content": "x"}],
                    "rejected": [{"role": "assistant", "content": "y"}]}),
        "wrong_type",
        "chosen[0].role",
        "start with 'assistant'",
    ),
]


@pytest.mark.parametrize(("line", "reason", "field_name", "fragment"), BAD_ROWS)
def test_bad_row_error_names_file_line_and_field(tmp_path, line, reason, field_name, fragment):
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD, "", line])  # blank line 2 is not a row; bad row is line 3
    with pytest.raises(ValueError) as info:
        load_preference_pairs(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: line 3")
    if field_name is not None:
        assert f"field '{field_name}'" in message
    assert fragment in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_skip_counts_bad_rows_per_reason(tmp_path, caplog):
    lines = [GOOD] + [line for line, *_ in BAD_ROWS] + [dict(GOOD, chosen="c")]
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    with caplog.at_level("WARNING"):
        pairs, report = load_preference_pairs_with_report(path, on_bad_row="skip")
    assert len(pairs) == report.kept == 2
    expected: dict[str, int] = {}
    for _, reason, _, _ in BAD_ROWS:
        expected[reason] = expected.get(reason, 0) + 1
    assert report.skipped == expected
    assert report.rows == len(lines)
    assert "skipped" in caplog.text and "missing_field=2" in report.summary()


def test_json_list_errors_name_the_row(tmp_path):
    (tmp_path / "rows.json").write_text(json.dumps([GOOD, dict(GOOD, chosen=[1])]))
    with pytest.raises(ValueError, match=r"rows.json: row 2: field 'chosen\[0\]': expected a message object"):
        load_preference_pairs(tmp_path / "rows.json")


# ------------------------------------------------------------------------------ split


def test_split_is_deterministic_and_order_independent(bundled_pairs):
    train, test = split_pairs(bundled_pairs, 0.1, seed=42)
    assert (len(train), len(test)) == (1800, 200)
    assert split_pairs(bundled_pairs, 0.1, seed=42) == (train, test)
    shuffled = list(bundled_pairs)
    random.Random(0).shuffle(shuffled)
    assert {p.chosen for p in split_pairs(shuffled, 0.1, seed=42)[1]} == {p.chosen for p in test}
    assert {p.chosen for p in split_pairs(bundled_pairs, 0.1, seed=43)[1]} != {p.chosen for p in test}
    position = {id(p): i for i, p in enumerate(bundled_pairs)}
    assert [position[id(p)] for p in test] == sorted(position[id(p)] for p in test)  # input order kept
    assert len({id(p) for p in train} | {id(p) for p in test}) == 2000


def test_split_edge_cases(bundled_pairs):
    assert split_pairs(bundled_pairs[:3], 0.0) == (bundled_pairs[:3], [])
    assert [len(x) for x in split_pairs(bundled_pairs[:3], 0.01)] == [2, 1]
    assert [len(x) for x in split_pairs(bundled_pairs[:2], 0.99)] == [1, 1]
    with pytest.raises(ValueError, match="test_fraction"):
        split_pairs(bundled_pairs, 1.0)


# ------------------------------------------------------------------------------ truncation


def test_truncate_sequence_modes():
    prompt, response = [1, 2, 3, 4, 5], [6, 7, 8]
    assert truncate_sequence(prompt, response, 8, "left") == (prompt, response)  # fits: unchanged
    assert truncate_sequence(prompt, response, 6, "left") == ([3, 4, 5], [6, 7, 8])
    assert truncate_sequence(prompt, response, 6, "left", keep_first=1) == ([1, 4, 5], [6, 7, 8])
    assert truncate_sequence(prompt, response, 2, "left") == ([], [6, 7])  # response cut from the right
    assert truncate_sequence(prompt, response, 3, "left", keep_first=1) == ([1], [6, 7])
    assert truncate_sequence(prompt, response, 6, "keep_end") == ([3, 4, 5], [6, 7, 8])
    assert truncate_sequence(prompt, response, 2, "keep_end") == ([], [7, 8])  # response cut from the left
    assert truncate_sequence(prompt, response, 3, "keep_end", keep_first=1) == ([1], [7, 8])
    assert truncate_sequence(prompt, response, 6, "drop") is None
    assert truncate_sequence(prompt, response, 8, "drop") == (prompt, response)
    with pytest.raises(ValueError, match="max_length"):
        truncate_sequence(prompt, response, 1, "left", keep_first=1)


@settings(max_examples=200, deadline=None)
@given(
    n_prompt=st.integers(0, 30),
    n_response=st.integers(1, 30),
    max_length=st.integers(2, 70),
    mode=st.sampled_from(["left", "keep_end", "drop"]),
    keep_first=st.integers(0, 1),
)
def test_truncate_sequence_properties(n_prompt, n_response, max_length, mode, keep_first):
    prompt = list(range(100, 100 + n_prompt))
    response = list(range(n_response))
    keep_first = min(keep_first, n_prompt)
    out = truncate_sequence(prompt, response, max_length, mode, keep_first)
    if n_prompt + n_response <= max_length:
        assert out == (prompt, response)
        return
    if mode == "drop":
        assert out is None
        return
    new_prompt, new_response = out
    assert len(new_prompt) + len(new_response) == max_length
    assert new_response  # never emptied
    assert new_prompt[:keep_first] == prompt[:keep_first]
    body = new_prompt[keep_first:]
    assert body == prompt[len(prompt) - len(body) :] if body else True  # prompt keeps its end
    if mode == "left":
        assert new_response == response[: len(new_response)]  # response keeps its start
        if len(new_response) < n_response:
            assert body == []
    else:
        assert new_response == response[n_response - len(new_response) :]  # sequence keeps its end


def test_tokenize_pairs_eos_and_limits(bundled_pairs, tokenizer):
    pairs = bundled_pairs[:200]
    items, stats = tokenize_pairs(pairs, tokenizer)
    assert stats.truncated == stats.dropped == 0 and stats.kept == 200
    first = items[0]
    assert first.chosen_ids[-1] == tokenizer.eos_id and first.rejected_ids[-1] == tokenizer.eos_id
    assert first.chosen_ids.dtype == torch.long
    assert tokenizer.decode(first.chosen_ids[: first.chosen_prompt_length]) == pairs[0].prompt
    assert tokenizer.decode(first.chosen_ids[first.chosen_prompt_length : -1]) == pairs[0].chosen
    longest = stats.longest
    for mode in ("left", "keep_end"):
        cut, cut_stats = tokenize_pairs(pairs, tokenizer, max_length=64, truncation=mode)
        assert len(cut) == 200 and cut_stats.truncated > 0 and cut_stats.longest <= 64
        for item in cut:
            assert len(item.chosen_ids) <= 64 and len(item.rejected_ids) <= 64
            assert item.chosen_prompt_length < len(item.chosen_ids)
    dropped, drop_stats = tokenize_pairs(pairs, tokenizer, max_length=64, truncation="drop")
    assert drop_stats.dropped > 0 and len(dropped) == drop_stats.kept == 200 - drop_stats.dropped
    assert all(item.length <= 64 for item in dropped)
    assert [i.index for i in dropped] == sorted(i.index for i in dropped)
    assert tokenize_pairs(pairs, tokenizer, max_length=longest)[1].truncated == 0
    assert "truncated" in drop_stats.summary()


def test_tokenize_keeps_bos_when_truncating(bundled_pairs, bos_tokenizer):
    items, _ = tokenize_pairs(bundled_pairs[:50], bos_tokenizer, max_length=16, truncation="keep_end")
    for item in items:
        assert item.chosen_ids[0] == bos_tokenizer.bos_id and item.rejected_ids[0] == bos_tokenizer.bos_id
        assert item.chosen_ids[-1] == bos_tokenizer.eos_id  # keep_end keeps the EOS


# ------------------------------------------------------------------------------ collation


def _item(index, chosen, rejected, prompt_length, **kwargs) -> TokenizedPair:
    return TokenizedPair(
        index,
        torch.tensor(chosen),
        torch.tensor(rejected),
        prompt_length,
        prompt_length,
        **kwargs,
    )


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_collate_layout(padding_side):
    items = [
        _item(3, [1, 2, 10, 11], [1, 2, 20], 2, margin=0.5, subset="s", id="a"),
        _item(5, [7, 30], [7, 40, 41, 42, 43], 1),
    ]
    batch = collate_preference(items, pad_id=-1, padding_side=padding_side)
    ids, attn, resp = batch["input_ids"], batch["attention_mask"], batch["response_mask"]
    assert ids.shape == (4, 5) and ids.dtype == torch.long and attn.dtype == resp.dtype == torch.bool
    rows = [[1, 2, 10, 11], [7, 30], [1, 2, 20], [7, 40, 41, 42, 43]]  # chosen first, then rejected
    for row, expected in enumerate(rows):
        assert ids[row][attn[row]].tolist() == expected
        assert (ids[row][~attn[row]] == -1).all()
        assert ids[row, batch["last_index"][row]] == expected[-1]
    assert batch["lengths"].tolist() == [4, 2, 3, 5]
    assert batch["prompt_lengths"].tolist() == [2, 1, 2, 1]
    assert [ids[r][resp[r]].tolist() for r in range(4)] == [[10, 11], [30], [20], [40, 41, 42, 43]]
    assert not (resp & ~attn).any()
    if padding_side == "right":
        assert batch["last_index"].tolist() == [3, 1, 2, 4]
        assert ids[1].tolist() == [7, 30, -1, -1, -1]
    else:
        assert batch["last_index"].tolist() == [4, 4, 4, 4]
        assert ids[1].tolist() == [-1, -1, -1, 7, 30]
    assert batch["margin"].tolist() == [0.5, 0.0] and batch["margin"].dtype == torch.float
    assert batch["index"].tolist() == [3, 5]
    assert batch["is_duplicate"].tolist() == [False, False]
    assert batch["subset"] == ["s", None] and batch["id"] == ["a", None]


def test_collate_response_mask_decodes_to_response(bundled_pairs, tokenizer):
    items, _ = tokenize_pairs(bundled_pairs[:4], tokenizer)
    batch = collate_preference(items, pad_id=tokenizer.eos_id)
    for i, pair in enumerate(bundled_pairs[:4]):
        chosen_tokens = batch["input_ids"][i][batch["response_mask"][i]]
        rejected_tokens = batch["input_ids"][4 + i][batch["response_mask"][4 + i]]
        assert tokenizer.decode(chosen_tokens[:-1]) == pair.chosen
        assert tokenizer.decode(rejected_tokens[:-1]) == pair.rejected


# ------------------------------------------------------------------------------ batching


def test_bucketing_reduces_padding(bundled_items):
    dataset = PreferenceDataset(bundled_items)
    lengths, rows = dataset.lengths, dataset.row_lengths
    bucketed = LengthBucketBatchSampler(batch_size=8, lengths=lengths, shuffle=True, bucket=True, seed=1)
    plain = LengthBucketBatchSampler(batch_size=8, lengths=lengths, shuffle=True, bucket=False, seed=1)
    bucketed_waste = padding_fraction(bucketed, rows)
    random_waste = padding_fraction(plain, rows)
    assert bucketed_waste < 0.5 * random_waste, (bucketed_waste, random_waste)
    eval_waste = padding_fraction(LengthBucketBatchSampler(batch_size=8, lengths=lengths, shuffle=False), rows)
    assert eval_waste <= bucketed_waste
    # padding_fraction agrees with what the collated batches actually contain
    batches = list(bucketed)[:20]
    collated = [collate_preference([dataset[i] for i in b]) for b in batches]
    actual = sum((~c["attention_mask"]).sum().item() for c in collated) / sum(c["input_ids"].numel() for c in collated)
    assert actual == pytest.approx(padding_fraction(batches, rows))
    assert padding_fraction([[0, 1]], [3, 5]) == pytest.approx(0.2)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("drop_last", [True, False])
def test_batch_sampler_deterministic_and_complete(shuffle, drop_last):
    lengths = [random.Random(i).randint(1, 100) for i in range(103)]
    make = lambda: LengthBucketBatchSampler(
        batch_size=10, drop_last=drop_last, lengths=lengths, shuffle=shuffle, mega_batch_factor=3, seed=5
    )
    sampler = make()
    batches = list(sampler)
    assert batches == list(make()) and len(batches) == len(sampler)
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat)) == (100 if drop_last else 103)
    assert sorted(len(b) for b in batches)[1:] == [10] * (len(batches) - 1)  # at most one short batch
    sampler.set_epoch(1)
    if shuffle:
        assert list(sampler) != batches
    else:
        assert list(sampler) == batches


def test_batch_sampler_shards_evenly_with_flagged_duplicates(bundled_items):
    dataset = PreferenceDataset(bundled_items[:23])
    lengths = dataset.lengths
    for shuffle in (True, False):
        shards = [
            list(LengthBucketBatchSampler(batch_size=4, lengths=lengths, shuffle=shuffle, num_replicas=3, rank=r))
            for r in range(3)
        ]
        assert len({len(s) for s in shards}) == 1  # same number of batches on every rank (6 -> 2 each)
        seen = []
        for shard in shards:
            for indices in shard:
                batch = collate_preference([dataset[i] for i in indices])
                seen += batch["index"][~batch["is_duplicate"]].tolist()
        assert sorted(seen) == list(range(23))  # every pair exactly once unflagged
    shards = [list(LengthBucketBatchSampler(batch_size=4, lengths=lengths, num_replicas=4, rank=r)) for r in range(4)]
    assert [len(s) for s in shards] == [2, 2, 2, 2]  # 6 batches padded to 8
    assert any(i >= 23 for s in shards for b in s for i in b)
    with pytest.raises(IndexError):
        dataset[46]


def test_lightning_injects_distributed_sampler(bundled_items):
    """Lightning replaces the sampler of a custom BatchSampler; ours adopts its rank."""
    from lightning.fabric.utilities.data import _replace_dunder_methods, _set_sampler_epoch, _update_dataloader
    from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

    dataset = PreferenceDataset(bundled_items[:40])
    with _replace_dunder_methods(BatchSampler):
        loader = DataLoader(
            dataset,
            batch_sampler=LengthBucketBatchSampler(batch_size=4, lengths=dataset.lengths, seed=3),
            collate_fn=collate_preference,
        )
    full = list(loader.batch_sampler)
    ranks = []
    for rank in range(2):
        injected = _update_dataloader(loader, DistributedSampler(dataset, num_replicas=2, rank=rank))
        assert (injected.batch_sampler.num_replicas, injected.batch_sampler.rank) == (2, rank)
        assert len(injected) == 5
        ranks.append(list(injected.batch_sampler))
        _set_sampler_epoch(injected, 1)
        assert injected.batch_sampler.epoch == 1
    assert ranks[0] + ranks[1] != [] and sorted(ranks[0] + ranks[1]) == sorted(full)
    _set_sampler_epoch(loader, 2)
    assert loader.batch_sampler.epoch == 2


# ------------------------------------------------------------------------------ DataModule


def test_datamodule_end_to_end_with_bundled_file(tokenizer, capsys):
    data = Preference(max_length=128, seed=42)
    data.connect(tokenizer, batch_size=4, max_seq_length=256)
    data.setup()
    data.setup()  # idempotent
    out = capsys.readouterr().out
    assert out.count("Preference data:") == 1
    assert "2000 pairs kept" in out and "1800 train / 200 test" in out and "truncated" in out
    assert data.effective_max_length == 128

    train = data.train_dataloader()
    batch = next(iter(train))
    assert batch["input_ids"].shape[0] == 8 and batch["input_ids"].shape[1] <= 128
    assert batch["response_mask"].any(dim=1).all()
    assert (batch["input_ids"][:4] != batch["input_ids"][4:]).any()
    assert len(train) == 450

    seen = []
    for batch in data.val_dataloader():
        assert batch["input_ids"].shape[1] <= 128
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(200))
    assert len(data.test_dataloader()) == 50


def test_datamodule_with_test_path_and_skip(tmp_path, tokenizer, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", [PROMPT_ROW, HH_ROW, CHAT_ROW, "{oops"])
    test = write_jsonl(tmp_path / "test.jsonl", [PROMPT_ROW])
    data = Preference(train_data_path=train, val_data_path=test, on_bad_row="skip", padding_side="left", bucket=False)
    data.connect(tokenizer, batch_size=2)
    data.setup()
    assert "invalid_json=1" in capsys.readouterr().out
    assert len(data.train_dataset) == 3 and len(data.test_dataset) == 1
    batch = next(iter(data.val_dataloader()))
    assert batch["margin"].tolist() == [1.5] and batch["subset"] == ["math"] and batch["id"] == ["7"]
    assert (batch["last_index"] == batch["input_ids"].shape[1] - 1).all()


def test_datamodule_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="truncation must be one of"):
        Preference(truncation="right")
    with pytest.raises(ValueError, match="padding_side"):
        Preference(padding_side="middle")
    with pytest.raises(ValueError, match="unknown prompt_style"):
        Preference(prompt_style="nope")
    with pytest.raises(ValueError, match="connect"):
        Preference().setup()


DDP_SCRIPT = '''
import lightning as L
import torch
from litgpt import Tokenizer

from litcpt.assets import tokenizer_dir
from litcpt.data.preference.datamodule import Preference


class Scorer(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(4096, 1)
        self.seen = []

    def training_step(self, batch, batch_idx):
        scores = self.embedding(batch["input_ids"]).squeeze(-1).gather(1, batch["last_index"][:, None])[:, 0]
        half = len(batch["margin"])
        return -torch.nn.functional.logsigmoid(scores[:half] - scores[half:]).mean()

    def validation_step(self, batch, batch_idx):
        self.seen += batch["index"][~batch["is_duplicate"]].tolist()
        self.log("dummy", 1.0, sync_dist=True)  # a collective per step: hangs if ranks are uneven

    def on_validation_epoch_end(self):
        gathered = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(gathered, self.seen)
        if self.global_rank == 0:
            seen = sorted(i for part in gathered for i in part)
            print("RESULT", seen == list(range(len(self.trainer.datamodule.test_dataset))), flush=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


if __name__ == "__main__":
    data = Preference(max_length=48, val_split_fraction=0.0105)  # 21 test pairs -> 6 batches of 4
    data.connect(Tokenizer(tokenizer_dir()), batch_size=4)
    trainer = L.Trainer(
        max_steps=2, val_check_interval=2, num_sanity_val_steps=0, accelerator="cpu", devices=2, strategy="ddp",
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
    )
    trainer.fit(Scorer(), datamodule=data)
    torch.distributed.destroy_process_group()  # gloo's threads may otherwise abort the exit ("terminate called")
'''


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_evaluation_counts_every_pair_once(tmp_path):
    script = tmp_path / "ddp_preference.py"
    script.write_text(DDP_SCRIPT)
    result = run_script_on_two_ranks(script, cwd=tmp_path, timeout=300)
    assert "RESULT True" in result.stdout, result.stdout[-3000:]


def test_render_chat_pair_errors():
    user = [{"role": "user", "content": "Hi"}]
    two = [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]
    one = [{"role": "assistant", "content": "c"}]
    assert render_chat_pair(user, two, one) == ("\n\nHuman: Hi\n\nAssistant:", " a\n\nHuman: b", " c")
    with pytest.raises(ValueError, match="field 'chosen': with prompt style Llama3 the response must be one"):
        render_chat_pair(user, two, one, PromptStyle.from_name("llama3"))


def test_left_truncation_keeps_one_prompt_for_both_responses():
    """The longer response decides the prompt cut; chosen and rejected keep identical prompt tokens."""
    from litgpt import Tokenizer

    from litcpt.assets import tokenizer_dir
    from litcpt.data.preference.pair_tokens import tokenize_pairs

    tok = Tokenizer(tokenizer_dir())
    pair = PreferencePair(prompt="word " * 60, chosen=" yes " * 3, rejected=" no, because " * 12)
    (item,), stats = tokenize_pairs([pair], tok, max_length=64, truncation="left")
    assert stats.truncated == 1
    assert len(item.rejected_ids) <= 64 and len(item.chosen_ids) <= 64
    assert item.chosen_prompt_length == item.rejected_prompt_length
    n = item.chosen_prompt_length
    assert torch.equal(item.chosen_ids[:n], item.rejected_ids[:n])
