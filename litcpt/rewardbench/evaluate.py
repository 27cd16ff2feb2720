"""RewardBench-style scoring engine: score every (chosen, rejected) pair, then accuracy per subset and section.

Two kinds of models give a scalar per response:

* a classifier reward model (:class:`RewardModelScorer`): ``r`` = the head's output at the last token
  (:func:`litcpt.models.reward.load_reward_model`);
* a DPO policy (:class:`ImplicitRewardScorer`): the implicit reward
  ``β · Σ_t [log π(y_t|x,y_<t) − log π_ref(y_t|x,y_<t)]`` over the response tokens only, or length-averaged
  (``average_logps``), or reference-free (``β · Σ log π``) as RewardBench's ``DPOInference`` offers. β scales every reward equally, so it never changes an accuracy; it is
  reported.

How a run is batched (:func:`score_tokenized`): pairs are sorted by length (longest first: out-of-memory shows at
once) and cut into batches of ``batch_size`` pairs; with several ranks, batch ``k`` goes to rank ``k mod
world_size`` and the per-pair results are gathered, so every pair is counted exactly once whatever the world size.
The chosen and rejected sequences of a pair are always scored together. By default (``share_prompt``) their common
prompt goes through the model once and both responses continue from its keys and values
(:func:`litcpt.models.shared_prefix.pair_hidden_states`): a scorer call takes ``share_group`` batches, runs their
prompts sorted by length ``batch_size`` per forward, then all responses sorted by length ``batch_size`` per forward.
Otherwise a batch is one forward pass of ``2B`` rows. For DPO the policy and the reference score the same call one
after the other, and the LM head runs only on the positions that predict response tokens. Everything runs in eval
mode under ``torch.inference_mode`` (bf16 autocast on GPUs by default).

Any callable ``batch -> {"chosen": Tensor[B], "rejected": Tensor[B], ...}`` is a :class:`Scorer`: extra per-pair
tensors it returns (e.g. log-probs) end up in the per-pair records. Accuracy follows RewardBench's tie rule
(:data:`litcpt.rewardbench.REWARDBENCH_TIES`: a tie is wrong) and the sections of
:func:`litcpt.rewardbench.section_scores`; subsets that count towards no section are reported under "other".
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from litcpt.rewardbench.scoring import REWARDBENCH_TIES, accuracy_by_subset
from litcpt.rewardbench.sections import (CORE_SECTIONS, OTHER, PRIOR_SETS, SCORE, group_subsets, section_scores,
                                         subset_name_warnings)

__all__ = [
    "DEFAULT_SUBSET",
    "ImplicitRewardScorer",
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

DEFAULT_SUBSET = "all"
"""Subset name of pairs whose data has no ``subset`` field."""
PRECISIONS = ("32-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true")


# ---------------------------------------------------------------------------------------------------- scorers
class Scorer(Protocol):
    """Scores a preference batch (:func:`litcpt.data.preference.collate_preference` layout, chosen rows first).

    Returns ``{"chosen": [B], "rejected": [B]}`` plus any other per-pair ``[B]`` tensors to record. A scorer whose
    ``shares_prompt`` attribute is true is called with a whole group of batches and ``rows_per_forward=batch_size``
    (see :func:`score_tokenized`).
    """

    def __call__(self, batch: Mapping[str, Any]) -> Mapping[str, Tensor]: ...


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class RewardModelScorer:
    """A classifier reward model: ``model(input_ids, last_index) -> [2B]``
    (e.g. :class:`~litcpt.models.reward.RewardModel`).

    Args:
        model: the reward model.
        share_prompt: for a :class:`~litcpt.models.reward.RewardModel` on a plain ``litgpt.GPT``, compute each
            pair's prompt once and both responses from its keys and values
            (:func:`litcpt.models.shared_prefix.pair_hidden_states`; same scores up to float rounding). Other
            models are scored with one plain forward per batch.
    """

    kind = "reward"

    def __init__(self, model: torch.nn.Module, *, share_prompt: bool = True) -> None:
        from litcpt.models.reward import RewardModel
        from litcpt.models.shared_prefix import supports_shared_prefix

        self.model = model.eval()
        self.device = _model_device(model)
        self.shares_prompt = bool(share_prompt and isinstance(model, RewardModel)
                                  and supports_shared_prefix(model.model))

    def __call__(self, batch: Mapping[str, Any], *, rows_per_forward: int | None = None) -> dict[str, Tensor]:
        if self.shares_prompt:
            scores = self._shared(batch, rows_per_forward)
        else:
            scores = self.model(batch["input_ids"], batch["last_index"]).float()
        half = scores.shape[0] // 2
        return {"chosen": scores[:half], "rejected": scores[half:]}

    def _shared(self, batch: Mapping[str, Any], rows_per_forward: int | None) -> Tensor:
        from litcpt.models.logprobs import batch_shared_lengths
        from litcpt.models.shared_prefix import pair_hidden_states

        input_ids = batch["input_ids"]
        _check_right_padded(batch)
        wanted = torch.zeros_like(input_ids, dtype=torch.bool)
        wanted[torch.arange(input_ids.shape[0], device=input_ids.device), batch["last_index"]] = True
        hidden = pair_hidden_states(self.model.model, input_ids, batch["lengths"], batch_shared_lengths(batch),
                                    wanted, rows_per_forward=rows_per_forward)
        return self.model.head(hidden).squeeze(-1).float()

    def score_rows(self, batch: Mapping[str, Any], *, rows_per_forward: int | None = None) -> dict[str, Tensor]:
        """``{"score": [R]}`` of a row batch whose rows share prompts in groups (:mod:`litcpt.models.row_scores`;
        RewardBench 2)."""
        from litcpt.models.row_scores import row_rewards

        if self.shares_prompt:
            _check_right_padded(batch)
        return {"score": row_rewards(self.model, batch, share_prompt=self.shares_prompt,
                                     rows_per_forward=rows_per_forward)}


class ImplicitRewardScorer:
    """A DPO policy's implicit reward ``β (log π − log π_ref)`` of each response (``β log π`` without a reference).

    Args:
        policy: the DPO-trained ``litgpt.GPT``.
        reference: the reference ``GPT`` (None: reference-free).
        beta: β of the run (scales all rewards; accuracies do not depend on it).
        average_logps: length-average the log-probs over response tokens instead of summing them.
        reduction: ``sum``, ``avg`` or ``norm`` (``-‖per-token log-probs‖₂``, RewardBench's reference-free ``norm``)
            of the response log-probs; overrides ``average_logps`` (default: ``avg`` if ``average_logps`` else
            ``sum``).
        share_prompt: compute each pair's prompt once and both responses from its keys and values
            (:func:`litcpt.models.logprobs.pair_logps`; same scores up to float rounding); models it does not
            cover are scored with a plain forward whose LM head runs on response positions only.
    """

    kind = "dpo"

    def __init__(self, policy: torch.nn.Module, reference: torch.nn.Module | None = None, *, beta: float = 0.1,
                 average_logps: bool = False, share_prompt: bool = True, reduction: str | None = None) -> None:
        from litcpt.models.logprobs import supports_fast_inference
        from litcpt.models.row_scores import REDUCTIONS
        from litcpt.models.shared_prefix import supports_shared_prefix

        beta = float(beta)
        if not (beta > 0 and math.isfinite(beta)):
            raise ValueError(f"beta: expected a finite number > 0, got {beta}")
        self.policy, self.reference = policy.eval(), reference.eval() if reference is not None else None
        self.beta, self.average_logps, self.share_prompt = beta, bool(average_logps), bool(share_prompt)
        if reduction is None:
            reduction = "avg" if self.average_logps else "sum"
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction: expected one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction
        self.average_logps = reduction == "avg"
        self.device = _model_device(policy)
        models = [m for m in (policy, reference) if m is not None]
        self.shares_prompt = self.share_prompt and all(
            supports_fast_inference(m) and supports_shared_prefix(getattr(m, "module", m)) for m in models)

    def __call__(self, batch: Mapping[str, Any], *, rows_per_forward: int | None = None) -> dict[str, Tensor]:
        from litcpt.models.logprobs import pair_logps

        if self.shares_prompt:
            _check_right_padded(batch)
        if self.reduction == "norm":
            def logps(model: torch.nn.Module) -> tuple[Tensor, Tensor]:
                from litcpt.models.row_scores import row_logps

                values = row_logps(model, batch, reduction="norm", share_prompt=self.shares_prompt,
                                   rows_per_forward=rows_per_forward)
                return values[: values.shape[0] // 2], values[values.shape[0] // 2:]
        else:
            def logps(model: torch.nn.Module) -> tuple[Tensor, Tensor]:
                return pair_logps(model, batch, average=self.average_logps, share_prompt=self.shares_prompt,
                                  rows_per_forward=rows_per_forward)
        pc, pr = logps(self.policy)
        out = {"logps_chosen": pc, "logps_rejected": pr}
        if self.reference is None:
            rc, rr = torch.zeros_like(pc), torch.zeros_like(pr)
        else:
            rc, rr = logps(self.reference)
            out.update(ref_logps_chosen=rc, ref_logps_rejected=rr)
        out.update(chosen=self.beta * (pc - rc), rejected=self.beta * (pr - rr))
        return out

    def score_rows(self, batch: Mapping[str, Any], *, rows_per_forward: int | None = None) -> dict[str, Tensor]:
        """``{"score": [R], "logps": [R], "ref_logps": [R]}`` of a row batch whose rows share prompts in groups
        (:mod:`litcpt.models.row_scores`; RewardBench 2): ``score = β (logps - ref_logps)``."""
        from litcpt.models.row_scores import row_logps

        if self.shares_prompt:
            _check_right_padded(batch)
        options = {"reduction": self.reduction, "share_prompt": self.shares_prompt,
                   "rows_per_forward": rows_per_forward}
        out = {"logps": row_logps(self.policy, batch, **options)}
        ref = torch.zeros_like(out["logps"])
        if self.reference is not None:
            ref = out["ref_logps"] = row_logps(self.reference, batch, **options)
        out["score"] = self.beta * (out["logps"] - ref)
        return out


def _check_right_padded(batch: Mapping[str, Any]) -> None:
    """Prompt sharing reads rows as right-padded (``collate_preference(padding_side="right")``)."""
    mask, lengths = batch.get("attention_mask"), batch.get("lengths")
    if mask is None or lengths is None:
        raise ValueError("batch: prompt sharing needs 'attention_mask' and 'lengths' (collate_preference)")
    expected = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0) < lengths.to(mask.device).unsqueeze(1)
    if not torch.equal(mask.bool(), expected):
        raise ValueError("batch: prompt sharing expects right-padded rows (collate_preference(..., "
                         "padding_side='right'))")


# --------------------------------------------------------------------------------------------------- records
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


def _dist_rank_world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(local: list[Any], world_size: int) -> list[Any]:
    if world_size == 1:
        return list(local)
    parts: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(parts, local)
    return [x for part in parts for x in part]


def _gather_in_order(local: list[Any], order: Sequence[Any], world_size: int, unit: str) -> list[Any]:
    """Every rank's scores (each with an ``index``), in the order of ``order``'s items; each item exactly once."""
    gathered = _gather(local, world_size)
    by_index = {score.index: score for score in gathered}
    if len(by_index) != len(gathered) or len(gathered) != len(order):
        raise RuntimeError(f"scoring: expected each of {len(order)} {unit} exactly once, got {len(gathered)} results "
                           f"for {len(by_index)} distinct {unit}")
    return [by_index[int(item.index)] for item in order]


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``None`` -> ``bf16-mixed`` on a bf16-capable GPU, else ``32-true``; other values are checked."""
    if precision is None:
        return "bf16-mixed" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "32-true"
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)} or null, got {precision!r}")
    return precision


def autocast_context(precision: str | None, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for the ``*-mixed`` precisions (``*-true``: cast the model instead), else a no-op."""
    precision = resolve_precision(precision, device)
    if precision.endswith("-mixed"):
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    return contextlib.nullcontext()


def model_dtype(precision: str | None, device: torch.device) -> torch.dtype:
    """The dtype to cast the weights to: bf16/fp16 for ``*-true``, else float32."""
    precision = resolve_precision(precision, device)
    return {"bf16-true": torch.bfloat16, "16-true": torch.float16}.get(precision, torch.float32)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None


def _progress(enabled: bool, total: int, unit: str = "pair") -> Any:
    """A tqdm bar counting pairs (or ``unit``; a no-op bar when disabled or without tqdm)."""
    if enabled:
        try:
            from tqdm import tqdm

            return tqdm(total=total, desc="scoring", unit=unit)
        except ImportError:  # pragma: no cover - tqdm comes with lightning
            pass
    return _NoBar()


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


@torch.inference_mode()
def score_tokenized(scorer: Scorer, items: Sequence[Any], *, batch_size: int = 8, pad_id: int = 0,
                    device: torch.device | str | None = None, precision: str | None = None,
                    default_subset: str = DEFAULT_SUBSET, rank: int | None = None, world_size: int | None = None,
                    progress: bool = False, share_group: int = 16) -> list[PairScore]:
    """Score tokenised pairs (:class:`~litcpt.data.preference.TokenizedPair`) and return one :class:`PairScore`
    per pair, in the order of ``items``, on every rank.

    Args:
        scorer: see :class:`Scorer`.
        items: the pairs (``index`` must be unique).
        batch_size: pairs per batch: ``2 * batch_size`` sequences per forward, or, for a scorer that shares
            prompts, ``batch_size`` rows per forward in each of its two phases.
        pad_id: padding token id (right padding; its value never matters).
        device: where batches go (default: the scorer's ``device`` attribute, else CPU).
        precision: ``*-mixed`` turns on autocast (default: bf16 on GPUs); ``*-true`` expects a model already cast.
        default_subset: subset name of pairs without one.
        rank, world_size: default to ``torch.distributed``'s when it is initialised, else 0 and 1.
        progress: show a progress bar (rank 0).
        share_group: for a scorer that shares prompts (``scorer.shares_prompt``): batches per scorer call. A call
            sorts its prompts and its responses by length independently, so larger groups pad less; the prompts'
            keys and values of one call are held in memory at once.
    """
    from litcpt.data.preference import collate_preference

    if rank is None or world_size is None:
        rank, world_size = _dist_rank_world()
    device = torch.device(device if device is not None else getattr(scorer, "device", "cpu"))
    calls = _plan(scorer, items, batch_size, share_group, rank, world_size)
    shares = bool(getattr(scorer, "shares_prompt", False))
    local: list[PairScore] = []
    with autocast_context(precision, device), _progress(progress and rank == 0, sum(map(len, calls))) as bar:
        for positions in calls:
            chunk = [items[i] for i in positions]
            batch = _to_device(collate_preference(chunk, pad_id=pad_id, padding_side="right"), device)
            out = scorer(batch, rows_per_forward=batch_size) if shares else scorer(batch)
            values = {k: v.detach().float().cpu().tolist() for k, v in out.items()}
            if len(values.get("chosen", ())) != len(chunk) or len(values.get("rejected", ())) != len(chunk):
                raise ValueError(f"scorer: expected 'chosen' and 'rejected' with {len(chunk)} scores each, got "
                                 f"{ {k: len(v) for k, v in values.items()} }")
            for j, item in enumerate(chunk):
                extras = {k: v[j] for k, v in values.items() if k not in ("chosen", "rejected")}
                local.append(PairScore(index=int(item.index), subset=item.subset or default_subset,
                                       chosen=values["chosen"][j], rejected=values["rejected"][j], id=item.id,
                                       extras=extras))
            bar.update(len(chunk))
    return _gather_in_order(local, items, world_size, "pairs")


def score_pairs(model: torch.nn.Module | Scorer, pairs: Sequence[Any], tokenizer: Any, batch_size: int = 8, *,
                max_length: int | None = None, truncation: str = "left", precision: str | None = None,
                device: torch.device | str | None = None, convention: str = "litcpt",
                max_prompt_length: int | None = None) -> list[tuple[float, float]]:
    """``(r_chosen, r_rejected)`` of each pair, in input order — the reusable entry point for other commands.

    Args:
        model: a reward model (``forward(input_ids, last_index)``, wrapped in :class:`RewardModelScorer`) or any
            :class:`Scorer` (e.g. an :class:`ImplicitRewardScorer`).
        pairs: :class:`~litcpt.data.preference.PreferencePair` objects or rows any format of
            :func:`~litcpt.data.preference.parse_preference_row` accepts.
        tokenizer: a ``litgpt.Tokenizer``.
        batch_size: pairs per forward pass.
        max_length: tokens per sequence (default: the model's ``block_size`` when it has a config).
        truncation: ``left`` or ``keep_end`` (see :func:`~litcpt.data.preference.truncate_sequence`).
        convention: ``litcpt`` or ``rewardbench``: tokenise as the official code does
            (:func:`~litcpt.rewardbench.conventions.tokenize_pairs_rewardbench`; ``max_length`` defaults to 2048 or
            the block size when smaller, ``max_prompt_length`` to 128 or half of it). For RewardBench's rewards, pass
            :func:`~litcpt.rewardbench.conventions.rewardbench_scorer`.
    """
    from litcpt.data.preference import PreferencePair, parse_preference_row, tokenize_pairs

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


# ------------------------------------------------------------------------------------------------ aggregation
@dataclass
class Summary:
    """Accuracies of a run.

    Attributes:
        subsets: ``{subset: (accuracy, pairs)}`` (RewardBench ties: a tie is wrong).
        groups: section -> its subsets present, in leaderboard order; ``"other"`` holds subsets of no section.
        sections: :func:`~litcpt.rewardbench.section_scores` of the subsets (``"Score"`` when any section exists).
        section_names: the benchmark's section names, whether scored in this run or not: a subset of that name stays
            out of ``results.json``'s top level (RewardBench v1's four sections and Prior Sets by default).
    """

    subsets: dict[str, tuple[float, int]]
    groups: dict[str, list[str]]
    sections: dict[str, float]
    section_names: tuple[str, ...] = (*CORE_SECTIONS, PRIOR_SETS)

    @property
    def num_pairs(self) -> int:
        return sum(n for _, n in self.subsets.values())

    @property
    def num_scored_pairs(self) -> int:
        """Pairs of the subsets that count towards a section (what the Score is computed from)."""
        return sum(self.subsets[m][1] for group, members in self.groups.items() if group != OTHER for m in members)

    @property
    def accuracy(self) -> float:
        """Accuracy over all pairs (what a single-subset run reports)."""
        return sum(acc * n for acc, n in self.subsets.values()) / max(self.num_pairs, 1)


def summarize(scores: Sequence[PairScore]) -> Summary:
    """Per-subset accuracies, section scores and the section grouping of ``scores``."""
    if not scores:
        raise ValueError("scores: expected at least one scored pair, got none")
    subsets = accuracy_by_subset((s.to_record() for s in scores), ties=REWARDBENCH_TIES, source="scores")
    groups = group_subsets(sorted(subsets))
    sections = section_scores({name: acc for name, (acc, _) in subsets.items()})
    for warning in subset_name_warnings(sorted(subsets)):
        logging.getLogger(__name__).warning("rewardbench: %s", warning)
    return Summary(subsets=subsets, groups=groups, sections=sections)


def format_table(summary: Summary, *, title: str | None = None, unit: str = "pairs") -> str:
    """The terminal table: subsets grouped by section, each section's score, the final score (``unit``: what the
    count column counts, ``prompts`` for RewardBench 2)."""
    other_label = "other (no RewardBench section)"
    width = max([len(s) + 2 for s in summary.subsets] + [len(g) for g in summary.groups] + [len(other_label), 20])
    rule = "-" * (width + 20)
    lines = [title] if title else []
    lines += [f"{'section / subset':<{width}}  {unit:>7}  {'accuracy':>8}", rule]
    for group, members in summary.groups.items():
        count = sum(summary.subsets[m][1] for m in members)
        value = summary.sections.get(group)
        shown = f"{value:8.4f}" if value is not None else f"{'':>8}"
        label = group if group != OTHER else other_label
        lines.append(f"{label:<{width}}  {count:>7}  {shown}")
        for name in members:
            acc, n = summary.subsets[name]
            lines.append(f"  {name:<{width - 2}}  {n:>7}  {acc:8.4f}")
    lines.append(rule)
    if SCORE in summary.sections:
        lines.append(f"{SCORE:<{width}}  {summary.num_scored_pairs:>7}  {summary.sections[SCORE]:8.4f}")
    else:
        lines.append(f"{f'accuracy (all {unit})':<{width}}  {summary.num_pairs:>7}  {summary.accuracy:8.4f}")
    return "\n".join(lines)


def results_json(summary: Summary, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """RewardBench's results shape: model metadata and one top-level ``subset: accuracy`` entry per subset; litcpt's
    extras (sections, pair counts, "other" subsets, run details) under ``"litcpt"``."""
    out: dict[str, Any] = {key: metadata.get(key) for key in ("model", "ref_model", "model_type", "chat_template")}
    # A subset named like a metadata key, a section or "litcpt" stays out of the top level (only under
    # litcpt.subsets), so a section's name at the top level never holds a subset's accuracy.
    reserved = {*out, "litcpt", SCORE, OTHER, *summary.section_names}
    out.update({name: acc for name, (acc, _) in summary.subsets.items() if name not in reserved})
    extras = {k: v for k, v in metadata.items() if k not in out and k not in summary.subsets}
    out["litcpt"] = {"sections": summary.sections, "subsets": {k: acc for k, (acc, _) in summary.subsets.items()},
                     "num_pairs": {k: n for k, (_, n) in summary.subsets.items()},
                     "other_subsets": summary.groups.get(OTHER, []), "tie_rule": REWARDBENCH_TIES, **extras}
    return out


_SECTION_COLORS = {"Chat": "#4C72B0", "Chat Hard": "#DD8452", "Safety": "#55A868", "Reasoning": "#C44E52",
                   PRIOR_SETS: "#8172B3", OTHER: "#937860"}


def plot_accuracies(summary: Summary, path: Path | str, *, title: str = "", xlabel: str | None = None,
                    chance: float = 0.5) -> Path:
    """Horizontal bar chart of per-subset accuracy, coloured by section, with the ``chance`` line (PNG, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for members in summary.groups.values() for name in members]
    section_of = {name: group for group, members in summary.groups.items() for name in members}
    values = [summary.subsets[name][0] for name in names]
    fig, ax = plt.subplots(figsize=(9, 1.4 + 0.32 * len(names)))
    bars = ax.barh(range(len(names)), values, color=[_SECTION_COLORS.get(section_of[n], "#777777") for n in names])
    ax.set_yticks(range(len(names)), labels=[f"{n} ({summary.subsets[n][1]})" for n in names])
    ax.invert_yaxis()
    ax.set_xlim(min(0.0, *values), 1)
    ax.axvline(chance, color="black", linestyle="--", linewidth=0.8)
    ax.set_xlabel(xlabel or "accuracy (chosen scored above rejected; ties count as wrong)")
    for bar, value in zip(bars, values):
        inside = value > 0.15
        ax.text(value - 0.01 if inside else value + 0.01, bar.get_y() + bar.get_height() / 2, f"{value:.3f}",
                va="center", ha="right" if inside else "left", fontsize=8, color="white" if inside else "black")
    handles = [plt.Rectangle((0, 0), 1, 1, color=_SECTION_COLORS.get(g, "#777777")) for g in summary.groups]
    ax.legend(handles, list(summary.groups), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False)
    score = summary.sections.get(SCORE)
    suffix = f" - Score {score:.3f}" if score is not None else f" - accuracy {summary.accuracy:.3f}"
    ax.set_title((title or "RewardBench-style accuracy") + suffix, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_outputs(out_dir: Path | str, scores: Sequence[PairScore], summary: Summary, metadata: Mapping[str, Any],
                  *, plot: bool = False, xlabel: str | None = None, chance: float = 0.5) -> dict[str, Path]:
    """Write ``results.json`` (:func:`results_json`), ``scores.jsonl`` (one :meth:`PairScore.to_record` per line)
    and, with ``plot``, ``accuracy.png``. Returns the paths by kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"results": out_dir / "results.json", "scores": out_dir / "scores.jsonl"}
    _atomic_write(paths["results"], json.dumps(results_json(summary, metadata), indent=2, default=str) + "\n")
    _atomic_write(paths["scores"], "".join(json.dumps(s.to_record()) + "\n" for s in scores))
    if plot:
        paths["plot"] = plot_accuracies(summary, out_dir / "accuracy.png", title=str(metadata.get("model") or ""),
                                        xlabel=xlabel, chance=chance)
    return paths


class Timer:
    """Wall-clock seconds of a block (``with Timer() as t: ...; t.seconds``)."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start

