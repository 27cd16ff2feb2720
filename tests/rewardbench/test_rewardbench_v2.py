"""RewardBench 2 rules (litcpt.rewardbench.v2): best-of-N with the tie penalty, the Ties formula worked out by hand,
the final score, and one-line errors for bad rows."""

from __future__ import annotations

import math

import pytest

from litcpt.rewardbench.v2 import SUBSETS, best_of_n, final_score, subset_scores, ties_score


@pytest.mark.parametrize(("scores", "expected"), [
    ([2.0, 1.0, 0.5, -1.0], 1.0),           # correct completion strictly best
    ([2.0, 2.0, 0.5, -1.0], 0.5),           # tied with one other at the top: 1/2
    ([2.0, 2.0, 0.5, 2.0], 1 / 3),          # three at the top: 1/3
    ([1.0, 1.0, 1.0, 1.0], 0.25),           # all equal: 1/4 (= chance)
    ([1.0, 2.0, 0.0, 0.0], 0.0),            # not the maximum
    ([0.5], 1.0),
])
def test_best_of_n_tie_penalty(scores, expected):
    assert best_of_n(scores) == pytest.approx(expected, abs=0)


def test_best_of_n_rejects_bad_scores():
    with pytest.raises(ValueError, match="at least one"):
        best_of_n([])
    with pytest.raises(ValueError, match=r"scores\[1\]: expected a finite number"):
        best_of_n([1.0, math.nan])
    with pytest.raises(ValueError, match=r"scores\[0\]"):
        best_of_n(["a"])


# Worked by hand (see the comments): ref/tied prompt 1 and 2 overlap, tied:3 has no reference.
TIES_ROWS = [
    {"id": "ref:1", "num_correct": 1, "scores": [3.0, 1.0, 2.0]},             # m = 3 - 2 = 1, accurate
    {"id": "tied:1", "num_correct": 3, "scores": [5.0, 4.0, 4.5, 3.0, 1.0]},  # m = 4 - 3 = 1, d = 5 - 4 = 1
    {"id": "ref:2", "num_correct": 1, "scores": [0.0, 1.0]},                  # m = -1, wrong
    {"id": "tied:2", "num_correct": 2, "scores": [2.0, 2.0, 1.0]},            # m = 1, d = 0
    {"id": "tied:3", "num_correct": 2, "scores": [1.0, 3.0, 2.0]},            # m = -1, d = 2, wrong
]
# acc_ref = 1/2, acc_tied = 2/3; over pids {1, 2}: m_tied > d: [1 > 1, 1 > 0] -> 1/2;
# min(m_ref, m_tied) > d: [1 > 1, -1 > 0] -> 0; tanh(min/d - 1): [tanh(0), tanh(-inf)] = [0, -1] -> -1/2
TIES_EXPECTED = 0.30 * (2 / 3) + 0.30 * 0.5 + 0.20 * 0.5 + 0.20 * 0.0 + 0.01 * (-0.5)


def test_ties_score_by_hand():
    assert ties_score(TIES_ROWS) == pytest.approx(TIES_EXPECTED, abs=1e-12)
    assert TIES_EXPECTED == pytest.approx(0.445)


def test_ties_rows_with_the_same_id_are_pooled_and_zero_over_zero_counts_zero():
    split = [{"id": "tied:1", "num_correct": 2, "scores": [5.0, 4.0]},      # both correct ...
             {"id": "tied:1", "num_correct": 1, "scores": [4.5, 3.0, 1.0]}]  # ... pooled with this row's
    assert ties_score(TIES_ROWS[:1] + split + TIES_ROWS[2:]) == pytest.approx(TIES_EXPECTED, abs=1e-12)
    # d = 0 and min(m_ref, m_tied) = 0: 0/0 is NaN, counted as 0; m = 0 is not accurate
    rows = [{"id": "ref:7", "num_correct": 1, "scores": [1.0, 1.0]},
            {"id": "tied:7", "num_correct": 2, "scores": [1.0, 1.0, 1.0]}]
    assert ties_score(rows) == pytest.approx(0.0, abs=1e-12)
    # a clear win everywhere: accuracies 1, m (= 2) > d (= 1) both ways, tanh(2/1 - 1) = tanh(1)
    rows = [{"id": "ref:7", "num_correct": 1, "scores": [3.0, 1.0]},
            {"id": "tied:7", "num_correct": 2, "scores": [4.0, 3.0, 1.0]}]
    assert ties_score(rows) == pytest.approx(0.3 + 0.3 + 0.2 + 0.2 + 0.01 * math.tanh(1.0), abs=1e-12)


def test_ties_without_overlap_is_nan_and_missing_kind_counts_zero():
    assert math.isnan(ties_score([{"id": "ref:1", "num_correct": 1, "scores": [2.0, 1.0]}]))


@pytest.mark.parametrize(("row", "message"), [
    ({"id": "1", "num_correct": 1, "scores": [1.0, 0.0]}, "expected 'ref:<prompt id>'"),
    ({"id": "ref:x", "num_correct": 1, "scores": [1.0, 0.0]}, "integer prompt id"),
    ({"id": "ref:1", "scores": [1.0, 0.0]}, "field 'num_correct' missing"),
    ({"id": "ref:1", "num_correct": 3, "scores": [1.0, 0.0]}, r"num_correct': expected an integer in \[1, 2\]"),
    ({"id": "ref:1", "num_correct": 2, "scores": [1.0, 0.0]}, "at least one incorrect"),
    ({"id": "ref:1", "num_correct": 1, "scores": [1.0, None]}, r"scores'\[1\]"),
])
def test_ties_bad_rows_one_line(row, message):
    with pytest.raises(ValueError, match=message) as info:
        ties_score([row])
    assert "\n" not in str(info.value)


def test_tied_prompt_needs_two_correct_answers():
    rows = [{"id": "ref:1", "num_correct": 1, "scores": [1.0, 0.0]},
            {"id": "tied:1", "num_correct": 1, "scores": [1.0, 0.0]}]
    with pytest.raises(ValueError, match="tied:1: expected at least two correct"):
        ties_score(rows)


def test_subset_scores_and_final_score():
    rows = [{"subset": "Math", "id": "a", "num_correct": 1, "scores": [2.0, 1.0, 0.0, 0.0]},   # 1
            {"subset": "Math", "id": "b", "num_correct": 1, "scores": [2.0, 2.0, 0.0, 0.0]},   # 1/2
            {"subset": "Focus", "id": "c", "num_correct": 1, "scores": [0.0, 1.0, 0.0, 0.0]},  # 0
            *({"subset": "Ties", **row} for row in TIES_ROWS)]
    scores = subset_scores(rows)
    assert scores == {"Focus": (0.0, 1), "Math": (0.75, 2), "Ties": (pytest.approx(TIES_EXPECTED), 5)}
    assert final_score(scores) == pytest.approx((0.0 + 0.75 + TIES_EXPECTED) / 3)
    assert final_score({"Factuality": 0.5, "ties": 0.7, "model": "m", "my-set": 0.0}) == pytest.approx(0.6)
    assert final_score(dict.fromkeys(SUBSETS, 0.25)) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="expected at least one of Factuality"):
        final_score({"model": "m"})
    with pytest.raises(ValueError, match="subset_scores\\['Math'\\]: expected a number"):
        final_score({"Math": "high"})
