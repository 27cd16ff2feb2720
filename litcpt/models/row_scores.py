"""Per-row scores of a batch whose rows share prompts in groups: pairs (chosen/rejected) or N completions of a prompt.

A *row batch* is right-padded ``input_ids [R, T]`` with ``lengths``, ``prompt_lengths``, ``response_mask`` and
``last_index`` (the :func:`litcpt.data.preference.batching.collate_preference` fields) plus, for groups other than
pairs,
``group [R]`` (the prompt of each row, ``0..G-1``) and ``shared [G]`` (the leading tokens every row of the group has
in common inside its prompt, at most each row's length minus one:
:func:`~litcpt.data.preference.best_of_n.group_shared_lengths`). Without ``group``
the batch is read as pairs: rows ``i`` and ``B + i`` share prompt ``i``.

* :func:`row_logps`: ``log π`` of each row's response tokens, reduced by ``sum``, ``avg`` or ``norm``
  (``-‖per-token log-probs‖₂``, RewardBench's reference-free ``norm``; :func:`reduce_logps`);
* :func:`row_rewards`: a :class:`~litcpt.models.reward.RewardModel`'s score at each row's last token.

With ``share_prompt`` each group's prompt goes through the model once and its rows continue from its keys and values
(:func:`litcpt.models.shared_prefix.pair_hidden_states` with ``groups``); otherwise one plain forward (the LM head
on response positions only where :func:`~litcpt.models.logprobs.supports_fast_inference` allows). Inference only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import torch
from torch import Tensor

__all__ = ["REDUCTIONS", "reduce_logps", "row_logps", "row_rewards"]

REDUCTIONS: Final[tuple[str, ...]] = ("sum", "avg", "norm")


def reduce_logps(values: Tensor, rows: Tensor, num_rows: int, reduction: str = "sum") -> Tensor:
    """Per-row ``sum``, ``avg`` (a row without values gives 0) or ``norm`` (``-sqrt(Σ v²)``) of ``values [N]``
    that belong to ``rows [N]``: ``[num_rows]`` float32."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    values = values.float()
    zeros = torch.zeros(num_rows, dtype=torch.float32, device=values.device)
    if reduction == "norm":
        return -zeros.index_add(0, rows, values.square()).sqrt()
    total = zeros.index_add(0, rows, values)
    if reduction == "sum":
        return total
    counts = torch.bincount(rows, minlength=num_rows).clamp_min(1)
    return total / counts.to(total.dtype)


def _groups_and_shared(batch: Mapping[str, Any]) -> tuple[Tensor | None, Tensor]:
    from litcpt.models.logprobs import batch_shared_lengths

    if batch.get("group") is None:
        return None, batch_shared_lengths(batch)
    device = batch["input_ids"].device
    return batch["group"].to(device), batch["shared"].to(device)


def _lengths(batch: Mapping[str, Any]) -> Tensor:
    lengths = batch.get("lengths")
    return (batch["attention_mask"].sum(-1) if lengths is None else lengths).to(batch["input_ids"].device)


def row_logps(model: torch.nn.Module, batch: Mapping[str, Any], *, reduction: str = "sum", share_prompt: bool = False,
              rows_per_forward: int | None = None) -> Tensor:
    """``[R]`` reduced log-probs of each row's response tokens (see the module docstring). Call under
    ``torch.inference_mode()``."""
    from litcpt.models.logprobs import (
        _check_inputs,
        _unwrap_gpt,
        _without_lm_head,
        head_logps,
        supports_fast_inference,
        token_logps,
    )
    from litcpt.models.shared_prefix import pair_hidden_states, supports_shared_prefix

    input_ids, response_mask = batch["input_ids"], batch["response_mask"].bool()
    _check_inputs(input_ids, response_mask)
    wanted = torch.zeros_like(response_mask)
    wanted[:, :-1] = response_mask[:, 1:]            # position t predicts the (response) token at t + 1
    rows, cols = wanted.nonzero(as_tuple=True)
    gpt = _unwrap_gpt(model)
    fast = supports_fast_inference(model)
    if share_prompt and fast and supports_shared_prefix(gpt):
        groups, shared = _groups_and_shared(batch)
        hidden = pair_hidden_states(gpt, input_ids, _lengths(batch), shared, wanted,
                                    rows_per_forward=rows_per_forward, groups=groups)
        scored = head_logps(gpt.lm_head, hidden, input_ids[rows, cols + 1])
    elif fast:
        with _without_lm_head(gpt) as head:
            hidden = gpt(input_ids[:, :-1])
        scored = head_logps(head, hidden[rows, cols], input_ids[rows, cols + 1])
    else:
        per_token = token_logps(model(input_ids[:, :-1]), input_ids[:, 1:])
        scored = per_token[rows, cols]
    return reduce_logps(scored, rows, input_ids.shape[0], reduction)


def row_rewards(model: torch.nn.Module, batch: Mapping[str, Any], *, share_prompt: bool = False,
                rows_per_forward: int | None = None) -> Tensor:
    """``[R]`` scores of a reward model (``model.model`` the backbone, ``model.head`` the scalar head, or any
    ``model(input_ids, last_index)``) at each row's ``last_index``."""
    from litcpt.models.shared_prefix import pair_hidden_states, supports_shared_prefix

    input_ids, last_index = batch["input_ids"], batch["last_index"].to(batch["input_ids"].device)
    backbone, head = getattr(model, "model", None), getattr(model, "head", None)
    if share_prompt and backbone is not None and head is not None and supports_shared_prefix(backbone):
        groups, shared = _groups_and_shared(batch)
        wanted = torch.zeros_like(input_ids, dtype=torch.bool)
        wanted[torch.arange(input_ids.shape[0], device=input_ids.device), last_index] = True
        hidden = pair_hidden_states(backbone, input_ids, _lengths(batch), shared, wanted,
                                    rows_per_forward=rows_per_forward, groups=groups)
        return head(hidden).squeeze(-1).float()
    return model(input_ids, last_index).float()
