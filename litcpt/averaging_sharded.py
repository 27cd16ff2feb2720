"""A weight average kept as this rank's shards, for FSDP2 (``fully_shard``) runs: each rank averages its own shards.

:class:`ShardedAverage` stands in for ``torch.optim.swa_utils.AveragedModel`` inside Lightning's ``WeightAveraging``
(which ``deepcopy``s the model: FSDP2 modules refuse that). It keeps one local tensor per parameter (``to_local()`` of
a DTensor, the tensor itself otherwise) and updates it with the same ``avg_fn`` (EMA / SWA) elementwise, so the math
is that of ``AveragedModel`` on each shard. Full tensors are gathered only to export or checkpoint the average.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["ShardedAverage"]


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


class ShardedAverage:
    """The average of ``module``'s parameters, shard by shard (``update_parameters`` as ``AveragedModel``'s)."""

    def __init__(self, module: torch.nn.Module, avg_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                                                  torch.Tensor], device: Any = None) -> None:
        self.avg_fn = avg_fn
        self.params = list(module.named_parameters())
        self.shards = [_local(p.detach()).clone().to(device or _local(p).device) for _, p in self.params]
        self.n_averaged = 0

    def update_parameters(self, module: torch.nn.Module) -> None:
        for avg, p in zip(self.shards, module.parameters()):
            current = _local(p.detach()).to(avg.device)
            if self.n_averaged == 0:
                avg.copy_(current)
            else:
                avg.copy_(self.avg_fn(avg, current, torch.tensor(self.n_averaged, device=avg.device)))
        self.n_averaged += 1

    def full(self) -> dict[str, torch.Tensor]:
        """``{parameter name: full averaged tensor on CPU}`` -- a collective under FSDP2: every rank must call it."""
        from torch.distributed.tensor import DTensor

        out = {}
        for (name, p), shard in zip(self.params, self.shards):
            if isinstance(p, DTensor):
                shard = DTensor.from_local(shard.to(_local(p).device), p.device_mesh, p.placements, run_check=False,
                                           shape=p.shape, stride=p.stride()).full_tensor()
            out[name] = shard.detach().cpu().clone()
        return out

    def load_full(self, full: dict[str, torch.Tensor], n_averaged: int) -> None:
        """Take this rank's shards of ``full`` (``{name: tensor}``, as :meth:`full` returns); a collective."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        missing = [name for name, _ in self.params if name not in full]
        if missing:
            raise ValueError(f"the checkpoint's weight average lacks {len(missing)} parameters, e.g. {missing[0]!r}")
        for (name, p), shard in zip(self.params, self.shards):
            value = full[name]
            if isinstance(p, DTensor):
                value = distribute_tensor(value.to(_local(p).device, p.dtype), p.device_mesh, p.placements).to_local()
            shard.copy_(value)
        self.n_averaged = int(n_averaged)

    def swap(self, module: torch.nn.Module) -> None:
        """Exchange the averaged shards with ``module``'s (for validating the average)."""
        for avg, p in zip(self.shards, module.parameters()):
            local = _local(p.data)
            tmp = avg.clone()
            avg.copy_(local)
            local.copy_(tmp)
