"""Scorers: what turns a preference batch into one scalar per response (see :class:`Scorer`).

* :class:`RewardModelScorer` — a classifier reward model: ``r`` = the head's output at the last token
  (:func:`litcpt.models.reward.load_reward_model`);
* :class:`ImplicitRewardScorer` — a DPO policy: the implicit reward
  ``β · Σ_t [log π(y_t|x,y_<t) − log π_ref(y_t|x,y_<t)]`` over the response tokens only, or length-averaged
  (``average_logps``), or reference-free (``β · Σ log π``) as RewardBench's ``DPOInference`` offers. β scales every
  reward equally, so it never changes an accuracy; it is reported.

By default (``share_prompt``) a pair's common prompt goes through the model once and both responses continue from
its keys and values (:func:`litcpt.models.shared_prefix.pair_hidden_states`). For DPO the policy and the reference
score the same call one after the other, and the LM head runs only on the positions that predict response tokens.
Batching, ranks and precision are the engine's (:mod:`litcpt.rewardbench.engine`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import torch
from torch import Tensor

from litcpt.losses.preference import DEFAULT_BETA

__all__ = ["ImplicitRewardScorer", "RewardModelScorer", "Scorer"]


class Scorer(Protocol):
    """Scores a preference batch (:func:`litcpt.data.preference.batching.collate_preference` layout, chosen rows
    first).

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

    def __init__(self, policy: torch.nn.Module, reference: torch.nn.Module | None = None, *, beta: float = DEFAULT_BETA,
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

