"""Unknown RewardBench subset names: near misses are warned about, subsets never take a section's place in
results.json, and the Score row counts only the pairs that are scored."""

from __future__ import annotations

import logging

from litcpt.rewardbench.engine import PairScore
from litcpt.rewardbench.results import format_table, results_json, summarize
from litcpt.rewardbench.sections import edit_distance, subset_name_warnings


def test_edit_distance_closed_forms():
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "abc") == 0
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("mt-bench-hardd", "mt-bench-hard") == 1


def test_near_miss_and_section_names_are_warned_about():
    warnings = subset_name_warnings(["mt-bench-hardd", "Chat", "my-own-set", "alpacaeval-easy"])
    assert len(warnings) == 3
    assert "'mt-bench-hardd'" in warnings[0] and "did you mean 'mt-bench-hard'?" in warnings[0]
    assert "'Chat' has the name of a section" in warnings[1]
    assert warnings[2].startswith("subsets ['my-own-set'] are not RewardBench subsets: they count towards no section")
    assert subset_name_warnings(["my-own-set"]) == []  # data of one's own (no RewardBench subset): nothing to say


def _scores(names):
    return [PairScore(index=i, subset=name, chosen=float(i % 2), rejected=0.5) for i, name in enumerate(names)]


def test_results_keep_subsets_and_sections_apart_and_score_counts_scored_pairs(caplog):
    names = ["Chat", "Chat", "alpacaeval-easy", "alpacaeval-easy", "alpacaeval-easy", "mt-bench-hardd"]
    with caplog.at_level(logging.WARNING):
        summary = summarize(_scores(names))
    assert "did you mean 'mt-bench-hard'?" in caplog.text and "'Chat' has the name of a section" in caplog.text
    results = results_json(summary, {"model": "m"})
    assert "Chat" not in results  # the subset named "Chat" does not pose as the Chat section
    assert results["litcpt"]["subsets"]["Chat"] == 0.5 and abs(results["litcpt"]["sections"]["Chat"] - 1 / 3) < 1e-12
    assert abs(results["alpacaeval-easy"] - 1 / 3) < 1e-12 and results["mt-bench-hardd"] == 1.0
    score_row = format_table(summary).splitlines()[-1].split()
    assert score_row[0] == "Score" and score_row[1] == "3", score_row  # the 3 alpacaeval-easy pairs, not all 6
