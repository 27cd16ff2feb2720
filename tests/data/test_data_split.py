"""The data side: one row reader for pairs and text, one HH template, and `litcpt score` truncating as training does."""

from __future__ import annotations

import json

import pytest
import torch


def test_json_lines_saved_as_json_read_alike_by_pairs_and_text(tmp_path, tokenizer):
    from litcpt.data.preference.pair_loading import load_preference_pairs
    from litcpt.data.text.sources import iter_documents, resolve_source

    rows = [{"prompt": "p1", "chosen": " a", "rejected": " b", "text": "one"},
            {"prompt": "p2", "chosen": " c", "rejected": " d", "text": "two"}]
    lines = tmp_path / "rows.json"
    lines.write_text("\ufeff" + "\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")  # BOM dropped
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(rows), encoding="utf-8")
    for path in (lines, listed):
        assert [p.prompt for p in load_preference_pairs(path)] == ["p1", "p2"]
        assert [t for t, _ in iter_documents(resolve_source(path))] == ["one", "two"]
    single = tmp_path / "one.json"
    single.write_text(json.dumps(rows[0]), encoding="utf-8")
    with pytest.raises(ValueError, match="one.json: expected a JSON list"):
        load_preference_pairs(single)
    with pytest.raises(ValueError, match="one.json: expected a JSON list"):
        list(iter_documents(resolve_source(single)))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(rows[0]) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.json: line 2: invalid JSON"):
        load_preference_pairs(broken)
    with pytest.raises(ValueError, match=r"broken.json:2: invalid JSON"):
        list(iter_documents(resolve_source(broken)))


def test_hh_template_is_the_one_hh_rows_and_chat_rows_use():
    from litcpt.data.preference.chat import hh_prompt, hh_response, render_chat_pair, split_conversation

    prompt, chosen, rejected = hh_prompt("Hi?"), hh_response("Hello."), hh_response("\nGo away.")
    assert prompt == "\n\nHuman: Hi?\n\nAssistant:" and chosen == " Hello." and rejected == "\nGo away."
    assert split_conversation(prompt + chosen, prompt + rejected) == (prompt, chosen, rejected)
    rendered = render_chat_pair([{"role": "user", "content": "Hi?"}], [{"role": "assistant", "content": "Hello."}],
                                [{"role": "assistant", "content": "No."}])
    assert rendered == (prompt, chosen, hh_response("No."))


class _Recorder(torch.nn.Module):
    """A reward model that records the real tokens of every row it scores."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.rows: list[list[int]] = []

    def forward(self, input_ids, last_index):
        self.rows += [ids[: int(i) + 1].tolist() for ids, i in zip(input_ids, last_index)]
        return torch.zeros(len(input_ids))


def test_score_truncates_a_long_pair_as_training_does(tmp_path, tiny_checkpoint, tokenizer, monkeypatch):
    import litcpt.models.reward as reward
    from litcpt.commands.score import main as score
    from litcpt.data import Preference

    prompt, chosen, rejected = "tell me a long story " * 30, " once upon a time " * 3, " no, not today " * 12
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}) + "\n", encoding="utf-8")
    single = tmp_path / "single.jsonl"
    single.write_text(json.dumps({"prompt": prompt, "response": rejected}) + "\n", encoding="utf-8")
    data = Preference(train_data_path=pairs, val_data_path=pairs, max_length=24)
    data.connect(tokenizer, batch_size=1)
    data.setup()
    batch = next(iter(data.val_dataloader()))
    trained = [ids[:n].tolist() for ids, n in zip(batch["input_ids"], batch["lengths"])]
    n_prompt = int(batch["prompt_lengths"][0])
    assert len(trained[1]) == 24 and trained[0][:n_prompt] == trained[1][:n_prompt]  # cut by the longer, shared

    recorder = _Recorder()
    monkeypatch.setattr(reward, "load_reward_model", lambda *a, **k: recorder)
    score(tiny_checkpoint, pairs, out_dir=tmp_path / "scores", max_length=24)
    assert sorted(recorder.rows) == sorted(trained)
    recorder.rows.clear()
    # the longer response, itself over max_length: training keeps its start, so must score
    score(tiny_checkpoint, single, out_dir=tmp_path / "scores", max_length=24)
    assert recorder.rows == [trained[1]]
