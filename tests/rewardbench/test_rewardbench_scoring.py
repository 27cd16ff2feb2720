"""Tests for litcpt.rewardbench.scoring: pairwise accuracy, tie rules, per-subset accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from litcpt.rewardbench import REWARDBENCH_TIES, accuracy_by_subset, pair_accuracy, pair_outcomes, section_scores

CHOSEN = [3.0, 2.0, 1.0, 0.5]
REJECTED = [1.0, 2.0, 3.0, -0.5]  # win, tie, loss, win


class TestPairAccuracy:
    def test_ties_half_is_default(self):
        assert pair_accuracy(CHOSEN, REJECTED) == pytest.approx(2.5 / 4)
        assert pair_accuracy(CHOSEN, REJECTED, ties="half") == pytest.approx(2.5 / 4)

    def test_ties_loss_matches_rewardbench_strict_greater(self):
        assert REWARDBENCH_TIES == "loss"
        got = pair_accuracy(CHOSEN, REJECTED, ties="loss")
        # RewardBench: results.append(1) if chosen > rejected else results.append(0)
        reference = sum(1 if c > r else 0 for c, r in zip(CHOSEN, REJECTED)) / len(CHOSEN)
        assert got == pytest.approx(reference) == pytest.approx(0.5)

    def test_all_equal_scores(self):
        assert pair_accuracy([1.0] * 5, [1.0] * 5) == 0.5
        assert pair_accuracy([1.0] * 5, [1.0] * 5, ties="loss") == 0.0

    def test_outcomes(self):
        np.testing.assert_array_equal(pair_outcomes(CHOSEN, REJECTED), [1.0, 0.5, 0.0, 1.0])
        np.testing.assert_array_equal(pair_outcomes(CHOSEN, REJECTED, ties="loss"), [1.0, 0.0, 0.0, 1.0])

    def test_accepts_tensors_and_arrays(self):
        c = torch.tensor(CHOSEN, requires_grad=True)
        assert pair_accuracy(c, np.array(REJECTED)) == pytest.approx(2.5 / 4)
        assert pair_accuracy(torch.tensor(CHOSEN, dtype=torch.bfloat16), torch.tensor(REJECTED)) == pytest.approx(
            2.5 / 4
        )

    def test_errors(self):
        with pytest.raises(ValueError, match="same length, got 2 and 1"):
            pair_accuracy([1.0, 2.0], [1.0])
        with pytest.raises(ValueError, match="at least one pair"):
            pair_accuracy([], [])
        with pytest.raises(ValueError, match=r"rejected_scores\[1\]: expected a finite score, got nan"):
            pair_accuracy([1.0, 2.0], [0.0, float("nan")])
        with pytest.raises(ValueError, match="ties: expected one of 'half', 'loss', got 'win'"):
            pair_accuracy([1.0], [0.0], ties="win")
        with pytest.raises(ValueError, match="1-D"):
            pair_accuracy([[1.0]], [[0.0]])
        with pytest.raises(ValueError, match="chosen_scores: expected a sequence of numbers"):
            pair_accuracy(["a"], [0.0])


def _records():
    return [
        {"subset": "hep-go", "score_chosen": 1.0, "score_rejected": 0.0},
        {"subset": "hep-go", "score_chosen": 0.0, "score_rejected": 0.0},
        {"subset": "hep-go", "score_chosen": -1.0, "score_rejected": 0.0},
        {"subset": "math-prm", "score_chosen": 2, "score_rejected": 1},
        {"subset": "alpacaeval-easy", "score_chosen": 5.0, "score_rejected": 5.0},
    ]


class TestAccuracyBySubset:
    def test_default_is_rewardbench_rule(self):
        got = accuracy_by_subset(_records())
        assert got == {"alpacaeval-easy": (0.0, 1), "hep-go": (pytest.approx(1 / 3), 3), "math-prm": (1.0, 1)}
        assert list(got) == ["alpacaeval-easy", "hep-go", "math-prm"]

    def test_half_ties(self):
        got = accuracy_by_subset(_records(), ties="half")
        assert got["hep-go"] == (pytest.approx(0.5), 3)
        assert got["alpacaeval-easy"] == (0.5, 1)

    def test_custom_keys_and_generator(self):
        recs = ({"s": r["subset"], "c": r["score_chosen"], "r": r["score_rejected"]} for r in _records())
        got = accuracy_by_subset(recs, subset_key="s", chosen_key="c", rejected_key="r")
        assert got["hep-go"] == (pytest.approx(1 / 3), 3)

    def test_feeds_section_scores(self):
        acc = {name: value for name, (value, _) in accuracy_by_subset(_records()).items()}
        got = section_scores(acc)
        # Reasoning: (1/3 * 164 + 1 * 984) / (164 + 984)
        assert got["Reasoning"] == pytest.approx((164 / 3 + 984) / 1148)
        assert got["Chat"] == 0.0

    def test_errors_name_source_row_and_field(self):
        recs = _records()
        recs[2] = {"subset": "hep-go", "score_chosen": 1.0}
        with pytest.raises(ValueError, match=r"out\.jsonl: row 3: field 'score_rejected' missing"):
            accuracy_by_subset(recs, source="out.jsonl")
        recs[2] = {"subset": "hep-go", "score_chosen": "high", "score_rejected": 0.0}
        msg = r"records: row 3: field 'score_chosen': expected a finite number, got 'high'"
        with pytest.raises(ValueError, match=msg):
            accuracy_by_subset(recs)
        recs[2] = {"subset": "hep-go", "score_chosen": float("inf"), "score_rejected": 0.0}
        with pytest.raises(ValueError, match="row 3: field 'score_chosen'"):
            accuracy_by_subset(recs)
        recs[2] = {"subset": "", "score_chosen": 1.0, "score_rejected": 0.0}
        with pytest.raises(ValueError, match="row 3: field 'subset': expected a non-empty string"):
            accuracy_by_subset(recs)
        with pytest.raises(ValueError, match="row 1: expected a mapping"):
            accuracy_by_subset([[1, 2]])
        with pytest.raises(ValueError, match="ties"):
            accuracy_by_subset([], ties="draw")

    def test_empty(self):
        assert accuracy_by_subset([]) == {}
