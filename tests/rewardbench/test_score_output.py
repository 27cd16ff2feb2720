"""`litcpt score` writes under --out_dir (never next to the data), keeps the data's full stem and gives every row
its index and line."""

from __future__ import annotations

import json

import pytest

from litcpt.commands.score import main as score
from litcpt.rewardbench.score import scores_file_name


def test_scores_file_name_keeps_the_full_stem():
    assert scores_file_name("data/test.v2.final.jsonl") == "test.v2.final.scores.jsonl"
    assert scores_file_name("pairs.jsonl.gz") == "pairs.scores.jsonl"


@pytest.fixture
def reward_checkpoint(tmp_path, tiny_checkpoint):
    from litcpt.models.reward import RewardModel
    from litcpt.runtime.checkpoint import load_config, save_litgpt_dir

    config = load_config(tiny_checkpoint)
    rm = RewardModel(config, checkpoint_dir=tiny_checkpoint)
    weights, extra = rm.litgpt_export({f"{k}": v for k, v in rm.state_dict().items()})
    return save_litgpt_dir(weights, config, tmp_path / "rm", tokenizer_dir=tiny_checkpoint, extra_objects=extra)


def test_score_writes_under_out_dir_with_index_and_line(tmp_path, reward_checkpoint, monkeypatch):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    rows = tmp_path / "data" / "eval.v2.jsonl"
    rows.write_text('{"prompt": "a", "response": "b"}\n\n{"prompt": "c", "response": "d"}\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    summary = score(reward_checkpoint, rows, out_dir=tmp_path / "scores")
    assert [p.name for p in data_dir.iterdir()] == ["eval.v2.jsonl"]  # nothing written next to the data
    out = tmp_path / "scores" / "eval.v2.scores.jsonl"
    assert summary["scores"] == str(out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["index"], r["line"], r["prompt"]) for r in records] == [(0, 1, "a"), (1, 3, "c")]
    assert all(isinstance(r["score"], float) for r in records)

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": f"q{i}", "chosen": "yes", "rejected": "no"}) for i in range(3))
                     + "\n", encoding="utf-8")
    score(reward_checkpoint, pairs, out_dir=tmp_path / "scores")
    records = [json.loads(line) for line in (tmp_path / "scores" / "pairs.scores.jsonl").read_text().splitlines()]
    assert [(r["index"], r["line"]) for r in records] == [(0, 1), (1, 2), (2, 3)]
    assert {"score_chosen", "score_rejected"} <= records[0].keys()


def test_score_prints_a_table_and_keeps_the_json_in_a_file(tmp_path, reward_checkpoint, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": f"q{i}", "chosen": "yes", "rejected": "no",
                                           "subset": "alpacaeval-easy" if i % 2 else "hep-cpp"}) for i in range(4))
                     + "\n", encoding="utf-8")
    summary = score(reward_checkpoint, pairs, out_dir=tmp_path / "scores")
    out = capsys.readouterr().out
    assert "{" not in out, out  # a table, not a JSON blob
    lines = out.splitlines()
    assert lines[1].split() == ["subset", "pairs", "accuracy"]
    assert [ln.split()[:2] for ln in lines if ln.startswith("  ")] == [["hep-cpp", "2"], ["alpacaeval-easy", "2"]]
    assert f"accuracy (all pairs)        4  {summary['accuracy']:8.4f}" in out
    assert f"summary: {tmp_path / 'scores' / 'pairs.scores.summary.json'}" in out
    assert json.loads((tmp_path / "scores" / "pairs.scores.summary.json").read_text()) == summary
    assert summary["subsets"]["hep-cpp"]["pairs"] == 2

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c", "response": "d"}\n', encoding="utf-8")
    summary = score(reward_checkpoint, rows, out_dir=tmp_path / "scores")
    out = capsys.readouterr().out
    assert "{" not in out and out.splitlines()[1].split() == ["rows", "mean", "std", "min", "max"], out
    assert out.splitlines()[2].split()[0] == "2"
    assert json.loads((tmp_path / "scores" / "rows.scores.summary.json").read_text()) == summary
