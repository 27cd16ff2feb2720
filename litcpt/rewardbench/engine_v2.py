"""RewardBench 2 scoring engine: score every completion of every prompt, then the v2 rules
(:mod:`litcpt.rewardbench.v2`).

Works with the v1 scorers (:class:`~litcpt.rewardbench.scorers.RewardModelScorer`,
:class:`~litcpt.rewardbench.scorers.ImplicitRewardScorer`: a DPO policy's implicit reward, which the official v2
code does not offer) through their ``score_rows`` method. A prompt and all its completions always go to the same
batch; with prompt sharing the prompt is computed once for all of them (four completions per prompt in RewardBench 2,
more in Ties). Batching and ranks as in v1 (:func:`~litcpt.rewardbench.engine.score_tokenized`): prompts sorted by
their longest row, cut into batches of at most ``2 x batch_size`` rows (at least one prompt), batch ``k`` on rank
``k mod world_size``, results gathered so every prompt counts once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from litcpt.rewardbench.engine import DEFAULT_SUBSET, plan_calls, run_planned
from litcpt.rewardbench.results import Summary
from litcpt.rewardbench.sections import OTHER, SCORE
from litcpt.rewardbench.v2 import SUBSETS, TIES, best_of_n, final_score, subset_scores
from litcpt.runtime.inference import autocast_context, gather_in_order, progress_bar, to_device
from litcpt.runtime.ranks import group_rank_world

__all__ = ["GROUP", "GroupScore", "plan_group_batches", "score_groups", "summarize_groups"]

GROUP = "RewardBench 2"
"""Name of the group of the six RewardBench 2 subsets in tables and plots."""


@dataclass(frozen=True)
class GroupScore:
    """Scores of all completions of one prompt (the correct ones first). ``index``: the row's position in the data."""

    index: int
    subset: str
    num_correct: int
    scores: tuple[float, ...]
    id: str | None = None
    extras: dict[str, list[float]] = field(default_factory=dict)

    @property
    def result(self) -> float | None:
        """:func:`~litcpt.rewardbench.v2.best_of_n` (None in Ties, which is scored over the whole subset)."""
        return None if self.subset.lower() == TIES.lower() else best_of_n(self.scores)

    def to_record(self) -> dict[str, Any]:
        """One line of ``scores.jsonl``."""
        return {"index": self.index, "id": self.id, "subset": self.subset, "num_correct": self.num_correct,
                "scores": list(self.scores), "result": self.result, **self.extras}


def plan_group_batches(lengths: Sequence[int], sizes: Sequence[int], rows_per_batch: int) -> list[list[int]]:
    """Group positions sorted by length (longest first, ties in input order), cut into batches of at most
    ``rows_per_batch`` rows (``sizes[i]`` rows per group; a larger group is a batch of its own)."""
    if isinstance(rows_per_batch, bool) or not isinstance(rows_per_batch, int) or rows_per_batch < 1:
        raise ValueError(f"rows_per_batch: expected a positive integer, got {rows_per_batch!r}")
    batches: list[list[int]] = []
    rows = 0
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if batches and rows + sizes[i] <= rows_per_batch:
            batches[-1].append(i)
            rows += sizes[i]
        else:
            batches.append([i])
            rows = sizes[i]
    return batches


def _score_group_call(scorer: Any, groups: Sequence[Any], positions: Sequence[int], device: torch.device, *,
                      pad_id: int, rows_per_forward: int | None, default_subset: str) -> list[GroupScore]:
    """The :class:`GroupScore` of the groups at ``positions``: one scorer call."""
    from litcpt.data.preference.best_of_n import collate_groups

    chunk = [groups[i] for i in positions]
    batch = to_device(collate_groups(chunk, pad_id=pad_id), device)
    out = scorer.score_rows(batch, rows_per_forward=rows_per_forward)
    values = {k: v.detach().float().cpu().tolist() for k, v in out.items()}
    rows = len(batch["group"])
    if len(values.get("score", ())) != rows:
        raise ValueError(f"scorer: expected 'score' with {rows} values, got "
                         f"{ {k: len(v) for k, v in values.items()} }")
    local, start = [], 0
    for group in chunk:
        end = start + len(group.rows)
        extras = {k: v[start:end] for k, v in values.items() if k != "score"}
        local.append(GroupScore(index=int(group.index), subset=group.subset or default_subset,
                                num_correct=int(group.num_correct), scores=tuple(values["score"][start:end]),
                                id=group.id, extras=extras))
        start = end
    return local


def score_groups(scorer: Any, groups: Sequence[Any], *, batch_size: int = 8, pad_id: int = 0,
                 device: torch.device | str | None = None, precision: str | None = None,
                 default_subset: str = DEFAULT_SUBSET, rank: int | None = None, world_size: int | None = None,
                 progress: bool = False, share_group: int = 16, trainer: Any = None) -> list[GroupScore]:
    """Score tokenised groups (:class:`~litcpt.data.preference.best_of_n.TokenizedGroup`): one :class:`GroupScore` per
    group,
    in the order of ``groups``, on every rank. ``batch_size``: ``2 x batch_size`` rows per batch; with prompt
    sharing, ``share_group`` batches per scorer call and ``batch_size`` rows per forward in each phase. ``trainer``:
    run with ``Trainer.predict`` as :func:`~litcpt.rewardbench.engine.score_tokenized` does."""
    shares = bool(getattr(scorer, "shares_prompt", False))
    batches = plan_group_batches([g.length for g in groups], [len(g.rows) for g in groups], 2 * batch_size)
    options = {"pad_id": pad_id, "rows_per_forward": batch_size if shares else None, "default_subset": default_subset}

    def run(positions: Sequence[int], on: torch.device) -> list[GroupScore]:
        return _score_group_call(scorer, groups, positions, on, **options)

    def plan(r: int, world: int) -> list[list[int]]:
        return plan_calls(batches[r::world], share_group) if shares else batches[r::world]

    if trainer is not None:
        return run_planned(trainer, scorer, groups, plan, run, unit="prompts", precision=precision,
                           progress=progress)
    if rank is None or world_size is None:
        rank, world_size = group_rank_world()
    device = torch.device(device if device is not None else getattr(scorer, "device", "cpu"))
    calls = plan(rank, world_size)
    local: list[GroupScore] = []
    with autocast_context(precision, device), progress_bar(progress and rank == 0, sum(map(len, calls)),
                                                          "prompt") as bar:
        for positions in calls:
            local.extend(run(positions, device))
            bar.update(len(positions))
    return gather_in_order(local, groups, world_size, "prompts")


def summarize_groups(scores: Sequence[GroupScore]) -> Summary:
    """Per-subset scores (best-of-N accuracy; Ties by its formula), grouped as RewardBench 2 and "other", and the
    final score (``Score``, :func:`~litcpt.rewardbench.v2.final_score`) when a RewardBench 2 subset is present."""
    if not scores:
        raise ValueError("scores: expected at least one scored prompt, got none")
    subsets = subset_scores({"subset": s.subset, "id": s.id, "num_correct": s.num_correct, "scores": s.scores}
                            for s in scores)
    official = {name.lower() for name in SUBSETS}
    order = {name.lower(): k for k, name in enumerate(SUBSETS)}
    present = sorted((s for s in subsets if s.lower() in official), key=lambda s: order[s.lower()])
    groups = {GROUP: present} if present else {}
    others = sorted(s for s in subsets if s.lower() not in official)
    if others:
        groups[OTHER] = others
    sections = {SCORE: final_score({name: subsets[name][0] for name in present})} if present else {}
    return Summary(subsets=subsets, groups=groups, sections=sections, section_names=(GROUP,))
