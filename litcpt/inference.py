"""Inference plumbing shared by RewardBench scoring and DPO's precomputed reference log-probs.

Both run a model over every item of a data set on each of ``world_size`` ranks, each rank on its own share, and
then need every item's result exactly once, in a known order, on every rank. This module holds that part:
the process group's rank and size (:func:`dist_rank_world`), gathering Python objects from all ranks
(:func:`gather_objects`), putting gathered results back into data order with a check that each item came back once
(:func:`gather_in_order`), precision handling for a bare ``torch.nn.Module`` (:func:`resolve_precision`,
:func:`autocast_context`, :func:`model_dtype`), moving a batch to a device and a progress bar that may be off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from litcpt.ranks import group_rank_world

__all__ = [
    "PRECISIONS",
    "autocast_context",
    "dist_rank_world",
    "gather_in_order",
    "gather_objects",
    "model_dtype",
    "progress_bar",
    "resolve_precision",
    "to_device",
]

PRECISIONS = ("32-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true")


dist_rank_world = group_rank_world  # one definition: litcpt.ranks


def gather_objects(local: Any, world_size: int | None = None) -> list[Any]:
    """``[local of rank 0, local of rank 1, ...]`` on every rank (``[local]`` without a process group)."""
    if world_size is None:
        world_size = dist_rank_world()[1]
    if world_size == 1:
        return [local]
    parts: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(parts, local)
    return parts


def gather_in_order(local: list[Any], order: Sequence[Any], world_size: int, unit: str) -> list[Any]:
    """Every rank's results (each with an ``index``), in the order of ``order``'s items (each with an ``index``);
    a ``RuntimeError`` unless each item came back exactly once."""
    gathered = [x for part in gather_objects(list(local), world_size) for x in part]
    by_index = {result.index: result for result in gathered}
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


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """``batch`` with its tensors moved to ``device`` (other values as they are)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None


def progress_bar(enabled: bool, total: int, unit: str = "pair") -> Any:
    """A tqdm bar counting pairs (or ``unit``; a no-op bar when disabled or without tqdm)."""
    if enabled:
        try:
            from tqdm import tqdm

            return tqdm(total=total, desc="scoring", unit=unit)
        except ImportError:  # pragma: no cover - tqdm comes with lightning
            pass
    return _NoBar()

