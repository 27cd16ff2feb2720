"""RewardBench-style evaluation in one import: scorers, the scoring engine and the results.

The parts live in modules with one job each; this module gathers their public names (the stable import path that
commands, docs and user code use):

* :mod:`litcpt.rewardbench.scorers` — a reward model's or a DPO policy's scalar per response;
* :mod:`litcpt.rewardbench.engine` — batching, ranks and per-pair records (:func:`score_tokenized`,
  :func:`score_pairs`);
* :mod:`litcpt.rewardbench.results` — accuracies per subset and section, table, ``results.json``, plot;
* :mod:`litcpt.inference` — rank/gather/precision plumbing shared with DPO's reference log-probs.
"""

from __future__ import annotations

from litcpt.inference import PRECISIONS, autocast_context, model_dtype, resolve_precision
from litcpt.rewardbench.engine import (DEFAULT_SUBSET, PairScore, plan_batches, plan_calls, score_pairs,
                                       score_tokenized, shared_prompt_bytes)
from litcpt.rewardbench.results import (Summary, Timer, format_table, plot_accuracies, results_json, summarize,
                                        write_outputs)
from litcpt.rewardbench.scorers import ImplicitRewardScorer, RewardModelScorer, Scorer

__all__ = [
    "DEFAULT_SUBSET",
    "ImplicitRewardScorer",
    "PRECISIONS",
    "PairScore",
    "RewardModelScorer",
    "Scorer",
    "Summary",
    "Timer",
    "autocast_context",
    "format_table",
    "model_dtype",
    "plan_batches",
    "plan_calls",
    "plot_accuracies",
    "resolve_precision",
    "results_json",
    "score_pairs",
    "score_tokenized",
    "shared_prompt_bytes",
    "summarize",
    "write_outputs",
]
