"""RewardBench-style scoring engine: score every (chosen, rejected) pair once, whatever the number of ranks.

How a run is batched (:func:`score_tokenized`): pairs are sorted by length (longest first: out-of-memory shows at
once) and cut into batches of ``batch_size`` pairs; with several ranks, batch ``k`` goes to rank ``k mod
world_size`` and the per-pair results are gathered (:func:`litcpt.runtime.inference.gather_in_order`), so every pair is
counted exactly once whatever the world size. The chosen and rejected sequences of a pair are always scored together.
For a scorer that shares prompts (``scorer.shares_prompt``), a scorer call takes ``share_group`` batches, runs their
prompts sorted by length ``batch_size`` per forward, then all responses sorted by length ``batch_size`` per forward.
Otherwise a batch is one forward pass of ``2B`` rows. Everything runs in eval mode without autograd (bf16 autocast
on GPUs by default). The ranks are those of an initialised process group (a plain loop), or of a ``trainer``: then
the calls run through ``Trainer.predict`` (:func:`litcpt.runtime.inference.predict_planned`), whose strategy may shard
the
models (``fsdp``/``fsdp2``).

Any callable ``batch -> {"chosen": Tensor[B], "rejected": Tensor[B], ...}`` is a
:class:`~litcpt.rewardbench.scorers.Scorer`: extra per-pair tensors it returns (e.g. log-probs) end up in the
per-pair records (:class:`PairScore`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from litcpt.rewardbench.scorers import ImplicitRewardScorer, RewardModelScorer, Scorer
from litcpt.runtime.inference import (
    autocast_context,
    gather_in_order,
    progress_bar,
    resolve_precision,
    to_device,
)
from litcpt.runtime.ranks import group_rank_world

__all__ = [
    "DEFAULT_SUBSET",
    "PairScore",
    "plan_batches",
    "plan_calls",
    "score_pairs",
    "score_tokenized",
    "scorer_models",
    "shared_prompt_bytes",
]

DEFAULT_SUBSET = "all"
"""Subset name of pairs whose data has no ``subset`` field."""


@dataclass(frozen=True)
class PairScore:
    """The scores of one pair. ``index`` is the pair's position in the data (``TokenizedPair.index``)."""

    index: int
    subset: str
    chosen: float
    rejected: float
    id: str | None = None
    extras: dict[str, float] = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        """RewardBench's rule: strictly ``chosen > rejected`` (a tie is wrong)."""
        return self.chosen > self.rejected

    def to_record(self) -> dict[str, Any]:
        """One line of ``scores.jsonl``."""
        return {"index": self.index, "id": self.id, "subset": self.subset, "score_chosen": self.chosen,
                "score_rejected": self.rejected, "correct": self.correct, **self.extras}


# ------------------------------------------------------------------------------------------------- batching
def plan_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Positions ``0..n-1`` sorted by length (longest first, ties in input order), cut into ``batch_size`` chunks."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]



def plan_calls(batches: Sequence[list[int]], group: int) -> list[list[int]]:
    """Concatenate ``group`` consecutive batches into one scorer call (prompt sharing sorts inside a call)."""
    if group < 1:
        raise ValueError(f"share_group: expected a positive integer, got {group}")
    return [[i for b in batches[k:k + group] for i in b] for k in range(0, len(batches), group)]


def _plan(scorer: Scorer, items: Sequence[Any], batch_size: int, share_group: int, rank: int,
          world_size: int) -> list[list[int]]:
    """The item positions of each scorer call of this rank (see :func:`score_tokenized`)."""
    local_batches = plan_batches([int(item.length) for item in items], batch_size)[rank::world_size]
    return plan_calls(local_batches, share_group) if getattr(scorer, "shares_prompt", False) else local_batches


def shared_prompt_bytes(scorer: Scorer, items: Sequence[Any], *, batch_size: int = 8, share_group: int = 16,
                        rank: int = 0, world_size: int = 1) -> int:
    """Upper bound of the memory that prompt sharing holds for the prompts' keys and values in one scorer call of
    this rank (0 when the scorer does not share prompts): the largest call's prompt tokens x, summed over the
    scorer's models, ``2 x n_layer x n_query_groups x head_size x bytes per value``."""
    models = [m for m in (getattr(scorer, "policy", None), getattr(scorer, "reference", None)) if m is not None]
    if not models and getattr(scorer, "model", None) is not None:
        models = [getattr(scorer.model, "model", scorer.model)]
    if not getattr(scorer, "shares_prompt", False) or not models:
        return 0
    per_token = 0
    for model in models:
        config = getattr(getattr(model, "module", model), "config", None)
        if config is None:
            return 0
        size = next(model.parameters()).element_size()
        per_token += 2 * config.n_layer * config.n_query_groups * config.head_size * size
    calls = _plan(scorer, items, batch_size, share_group, rank, world_size)
    tokens = max((sum(min(items[i].chosen_prompt_length, items[i].rejected_prompt_length) for i in call)
                  for call in calls), default=0)
    return tokens * per_token


def _score_call(scorer: Scorer, items: Sequence[Any], positions: Sequence[int], device: torch.device, *,
                pad_id: int, batch_size: int, default_subset: str) -> list[PairScore]:
    """The :class:`PairScore` of the pairs at ``positions``: one scorer call."""
    from litcpt.data.preference.batching import collate_preference

    chunk = [items[i] for i in positions]
    batch = to_device(collate_preference(chunk, pad_id=pad_id, padding_side="right"), device)
    out = scorer(batch, rows_per_forward=batch_size) if getattr(scorer, "shares_prompt", False) else scorer(batch)
    values = {k: v.detach().float().cpu().tolist() for k, v in out.items()}
    if len(values.get("chosen", ())) != len(chunk) or len(values.get("rejected", ())) != len(chunk):
        raise ValueError(f"scorer: expected 'chosen' and 'rejected' with {len(chunk)} scores each, got "
                         f"{ {k: len(v) for k, v in values.items()} }")
    return [PairScore(index=int(item.index), subset=item.subset or default_subset, chosen=values["chosen"][j],
                      rejected=values["rejected"][j], id=item.id,
                      extras={k: v[j] for k, v in values.items() if k not in ("chosen", "rejected")})
            for j, item in enumerate(chunk)]


def scorer_models(scorer: Any) -> dict[str, torch.nn.Module]:
    """The modules a scorer runs (reward model, or DPO policy and reference), for a strategy to move or shard."""
    names = ("model", "policy", "reference")
    return {name: getattr(scorer, name) for name in names if isinstance(getattr(scorer, name, None), torch.nn.Module)}


def run_planned(trainer: Any, scorer: Any, items: Sequence[Any], plan: Any, run: Any, *, unit: str,
                precision: str | None, progress: bool) -> list[Any]:
    """``plan``'s calls on ``trainer`` (:func:`litcpt.runtime.inference.predict_planned`): the models as the strategy
    places
    them (sharded under ``fsdp``/``fsdp2``, where every rank then runs the same number of calls)."""
    from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

    from litcpt.runtime.inference import predict_planned

    even = isinstance(trainer.strategy, (FSDPStrategy, ModelParallelStrategy))
    device = torch.device("cuda" if trainer.strategy.root_device.type == "cuda" else "cpu")
    return predict_planned(trainer, scorer_models(scorer), plan, run, order=items, unit=unit,
                           precision=resolve_precision(precision, device), progress=progress, even=even)


def score_tokenized(scorer: Scorer, items: Sequence[Any], *, batch_size: int = 8, pad_id: int = 0,
                    device: torch.device | str | None = None, precision: str | None = None,
                    default_subset: str = DEFAULT_SUBSET, rank: int | None = None, world_size: int | None = None,
                    progress: bool = False, share_group: int = 16, trainer: Any = None) -> list[PairScore]:
    """Score tokenised pairs (:class:`~litcpt.data.preference.pair_tokens.TokenizedPair`) and return one
    :class:`PairScore`
    per pair, in the order of ``items``, on every rank.

    Args:
        scorer: see :class:`Scorer`.
        items: the pairs (``index`` must be unique).
        batch_size: pairs per batch: ``2 * batch_size`` sequences per forward, or, for a scorer that shares
            prompts, ``batch_size`` rows per forward in each of its two phases.
        pad_id: padding token id (right padding; its value never matters).
        device: where batches go (default: the scorer's ``device`` attribute, else CPU; with ``trainer``, its).
        precision: ``*-mixed`` turns on autocast (default: bf16 on GPUs); ``*-true`` expects a model already cast.
        default_subset: subset name of pairs without one.
        rank, world_size: default to ``torch.distributed``'s when it is initialised, else 0 and 1.
        progress: show a progress bar (rank 0).
        share_group: for a scorer that shares prompts (``scorer.shares_prompt``): batches per scorer call. A call
            sorts its prompts and its responses by length independently, so larger groups pad less; the prompts'
            keys and values of one call are held in memory at once.
        trainer: run the calls with ``Trainer.predict`` on it (:func:`litcpt.runtime.inference.predict_trainer`: it
            launches the ranks and shards the models under ``fsdp``/``fsdp2``); ranks and device are its. Without
            it, a plain loop in this process (one device, or a process group that is already initialised).
    """
    options = {"pad_id": pad_id, "batch_size": batch_size, "default_subset": default_subset}

    def run(positions: Sequence[int], on: torch.device) -> list[PairScore]:
        return _score_call(scorer, items, positions, on, **options)

    def plan(r: int, world: int) -> list[list[int]]:
        return _plan(scorer, items, batch_size, share_group, r, world)

    if trainer is not None:
        return run_planned(trainer, scorer, items, plan, run, unit="pairs", precision=precision, progress=progress)
    if rank is None or world_size is None:
        rank, world_size = group_rank_world()
    device = torch.device(device if device is not None else getattr(scorer, "device", "cpu"))
    calls = plan(rank, world_size)
    local: list[PairScore] = []
    with torch.inference_mode(), autocast_context(precision, device), \
            progress_bar(progress and rank == 0, sum(map(len, calls))) as bar:
        for positions in calls:
            local.extend(run(positions, device))
            bar.update(len(positions))
    return gather_in_order(local, items, world_size, "pairs")


def score_pairs(model: torch.nn.Module | Scorer, pairs: Sequence[Any], tokenizer: Any, batch_size: int = 8, *,
                max_length: int | None = None, truncation: str = "left", precision: str | None = None,
                device: torch.device | str | None = None, convention: str = "litcpt",
                max_prompt_length: int | None = None) -> list[tuple[float, float]]:
    """``(r_chosen, r_rejected)`` of each pair, in input order — the reusable entry point for other commands.

    Args:
        model: a reward model (``forward(input_ids, last_index)``, wrapped in :class:`RewardModelScorer`) or any
            :class:`Scorer` (e.g. an :class:`ImplicitRewardScorer`).
        pairs: :class:`~litcpt.data.preference.pair_rows.PreferencePair` objects or rows any format of
            :func:`~litcpt.data.preference.pair_rows.parse_preference_row` accepts.
        tokenizer: a ``litgpt.Tokenizer``.
        batch_size: pairs per forward pass.
        max_length: tokens per sequence (default: the model's ``block_size`` when it has a config).
        truncation: ``left`` or ``keep_end`` (see :func:`~litcpt.data.preference.pair_tokens.truncate_sequence`).
        convention: ``litcpt`` or ``rewardbench``: tokenise as the official code does
            (:func:`~litcpt.rewardbench.conventions.tokenize_pairs_rewardbench`; ``max_length`` defaults to 2048 or
            the block size when smaller, ``max_prompt_length`` to 128 or half of it). For RewardBench's rewards, pass
            :func:`~litcpt.rewardbench.conventions.rewardbench_scorer`.
    """
    from litcpt.data.preference.pair_rows import PreferencePair, parse_preference_row
    from litcpt.data.preference.pair_tokens import tokenize_pairs

    parsed = []
    for number, pair in enumerate(pairs, start=1):
        if isinstance(pair, PreferencePair):
            parsed.append(pair)
            continue
        try:
            parsed.append(parse_preference_row(pair))
        except ValueError as err:
            raise ValueError(f"pairs: row {number}: {err}") from None
    if not parsed:
        raise ValueError("pairs: expected at least one preference pair, got none")
    scorer = model if not isinstance(model, torch.nn.Module) else RewardModelScorer(model)
    if max_length is None:
        config = getattr(model, "config", None) or getattr(getattr(scorer, "policy", None), "config", None)
        max_length = getattr(config, "block_size", None)
    if convention == "rewardbench":
        from litcpt.rewardbench.conventions import MAX_LENGTH, MAX_PROMPT_LENGTH, tokenize_pairs_rewardbench

        max_length = min(MAX_LENGTH, max_length or MAX_LENGTH)
        kind = "dpo" if isinstance(scorer, ImplicitRewardScorer) else "reward"
        items, _ = tokenize_pairs_rewardbench(parsed, tokenizer, kind=kind, max_length=max_length,
                                              max_prompt_length=max_prompt_length or min(MAX_PROMPT_LENGTH,
                                                                                         max_length // 2))
    elif convention == "litcpt":
        items, _ = tokenize_pairs(parsed, tokenizer, max_length=max_length, truncation=truncation)
    else:
        raise ValueError(f"convention: expected 'litcpt' or 'rewardbench', got {convention!r}")
    if len(items) != len(parsed):
        raise ValueError(f"pairs: {len(parsed) - len(items)} pairs did not fit max_length={max_length} "
                         f"(truncation={truncation!r})")
    pad_id = 0 if getattr(tokenizer, "eos_id", None) is None else int(tokenizer.eos_id)
    scores = score_tokenized(scorer, items, batch_size=batch_size, pad_id=pad_id, precision=precision, device=device,
                             rank=0, world_size=1)
    return [(s.chosen, s.rejected) for s in scores]

