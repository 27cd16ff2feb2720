"""RewardBench-style evaluation: pairwise accuracy and RewardBench v1 section scores; RewardBench 2 rules (``v2``)."""

from litcpt.rewardbench.scoring import REWARDBENCH_TIES, accuracy_by_subset, pair_accuracy, pair_outcomes
from litcpt.rewardbench.sections import (
    CORE_SECTIONS,
    OTHER,
    PRIOR_SETS,
    SCORE,
    SectionSpec,
    group_subsets,
    load_spec,
    section_scores,
)
from litcpt.rewardbench.v2 import best_of_n, final_score, ties_score

__all__ = [
    "CORE_SECTIONS",
    "OTHER",
    "PRIOR_SETS",
    "REWARDBENCH_TIES",
    "SCORE",
    "SectionSpec",
    "accuracy_by_subset",
    "best_of_n",
    "final_score",
    "group_subsets",
    "load_spec",
    "pair_accuracy",
    "pair_outcomes",
    "section_scores",
    "ties_score",
]
