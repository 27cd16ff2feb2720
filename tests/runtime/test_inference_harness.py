"""The shared inference harness (:mod:`litcpt.runtime.inference`): each rank's share of a plan, and the ordered
gather."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from litcpt.runtime.inference import gather_in_order, rank_share


def plan(calls_per_rank):
    return lambda rank, world: [[10 * rank + k] for k in range(calls_per_rank[rank])]


def test_rank_share_pads_shorter_shares_with_flagged_repeats_only_when_even():
    uneven = plan([3, 1])
    assert rank_share(uneven, 1, 2) == [([10], False)]
    assert rank_share(uneven, 1, 2, even=True) == [([10], False), ([0], True), ([0], True)]
    assert rank_share(uneven, 0, 2, even=True) == [([0], False), ([1], False), ([2], False)]
    # a rank with no call of its own repeats another rank's (it must still enter every collective)
    assert rank_share(plan([2, 0]), 1, 2, even=True) == [([0], True), ([0], True)]
    assert rank_share(plan([0, 0]), 0, 2, even=True) == []


@dataclass
class Item:
    index: int


def test_gather_in_order_puts_results_in_data_order_and_names_the_caller():
    assert gather_in_order([Item(2), Item(0), Item(1)], [Item(0), Item(1), Item(2)], 1, "pairs") == [
        Item(0),
        Item(1),
        Item(2),
    ]
    with pytest.raises(RuntimeError, match=r"^reference log-probs: expected each of 2 train pairs exactly once"):
        gather_in_order([Item(0), Item(0)], [Item(0), Item(1)], 1, "train pairs", what="reference log-probs")
    with pytest.raises(RuntimeError, match="exactly once"):  # right count, wrong pairs
        gather_in_order([Item(0), Item(5)], [Item(0), Item(1)], 1, "pairs")
