"""A weight average kept as this rank's shards, for sharded runs: each rank averages its own shards.

:class:`ShardedAverage` stands in for ``torch.optim.swa_utils.AveragedModel`` inside Lightning's ``WeightAveraging``
(which ``deepcopy``s the model: FSDP2 modules refuse that, and an FSDP1 copy would be a full model per rank). It keeps
one local tensor per parameter (``to_local()`` of a DTensor, the tensor itself otherwise) and updates it with the same
``avg_fn`` (EMA / SWA) elementwise, so the math is that of ``AveragedModel`` on each shard. Full tensors are gathered
only to export or checkpoint the average.

:class:`FlatShardedAverage` is the FSDP1 (``FullyShardedDataParallel``) variant. FSDP1 keeps one flat parameter per
wrapped unit, sharded across ranks; the module's parameters are views of this rank's piece of it (``use_orig_params``,
Lightning's default: a 1-D slice, empty where the parameter lies on other ranks) or the flat shards themselves. Either
way they are plain local tensors, so the elementwise update is that of :class:`ShardedAverage`. What differs is how a
full tensor is made of them: FSDP1 knows the layout (padding, parameters split across ranks), so instead of
re-implementing it the average is swapped into the model for the moment of a gather (``get_model_state_dict``, unit
by unit) or a load (``set_model_state_dict``), and swapped back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["FlatShardedAverage", "ShardedAverage"]


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


def _clean_name(name: str) -> str:
    return name.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")


class FlatShardedAverage(ShardedAverage):
    """The average of an FSDP1-wrapped ``module``'s local (flat) shards; ``root`` is the FSDP root wrapping it (the
    Lightning strategy's ``model``). Full tensors go through FSDP's own state dicts (see the module docstring)."""

    def __init__(self, module: torch.nn.Module, avg_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                                                  torch.Tensor], root: torch.nn.Module,
                 device: Any = None) -> None:
        super().__init__(module, avg_fn, device=device)
        self.module, self.root = module, root
        self._buffers = {_clean_name(n) for n, _ in module.named_buffers()}

    def full(self) -> dict[str, torch.Tensor]:
        """``{parameter name: full averaged tensor on CPU}``; a collective. With FSDP's CPU offload (accelerator runs)
        only rank 0 gets it, the others get ``{}``."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        offload = any(s.device.type != "cpu" for s in self.shards) or \
            any(p.device.type != "cpu" for _, p in self.params)
        self.swap(self.module)
        try:
            state = get_model_state_dict(self.root, options=StateDictOptions(full_state_dict=True, cpu_offload=offload))
        finally:
            self.swap(self.module)
        return {k: v.detach().cpu() for k, v in state.items() if _clean_name(k) not in self._buffers}  # FSDP copies

    def load_full(self, full: dict[str, torch.Tensor], n_averaged: int) -> None:
        """Take this rank's shards of ``full`` (every rank passes the whole dict, as :meth:`full` returns); a
        collective. The model's own parameters are left as they were."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict

        names = get_model_state_dict(self.root, options=StateDictOptions(full_state_dict=False))  # local views only
        missing = [k for k in names if k not in full and _clean_name(k) not in self._buffers]
        if missing:
            raise ValueError(f"the checkpoint's weight average lacks {len(missing)} parameters, e.g. {missing[0]!r}")
        raw = [_local(p.detach()).clone() for _, p in self.params]
        try:
            set_model_state_dict(self.root, full, options=StateDictOptions(full_state_dict=True, strict=False))
            for avg, (_, p) in zip(self.shards, self.params):
                avg.copy_(_local(p.detach()))
        finally:
            with torch.no_grad():
                for value, (_, p) in zip(raw, self.params):
                    _local(p.data).copy_(value)
        self.n_averaged = int(n_averaged)
