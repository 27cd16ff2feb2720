"""Distributed strategies by name: ``auto``, ``ddp``, ``fsdp`` (FSDP1) and ``fsdp2`` (``fully_shard``).

The transformer ``Block`` of litgpt is the unit of sharding and of activation checkpointing. ``fsdp2`` uses
Lightning's ``ModelParallelStrategy`` with pure data parallelism; the LightningModule's ``configure_model``
applies ``fully_shard`` per Block (see :func:`apply_fsdp2`).
"""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy, Strategy
from litgpt.model import Block

from litcpt._private import FSDPStrategyAdapter

StrategyName = Literal["auto", "ddp", "fsdp", "fsdp2"]
STRATEGIES = ("auto", "ddp", "fsdp", "fsdp2")


class ReusingFSDPStrategy(FSDPStrategyAdapter):
    """Lightning's ``FSDPStrategy``, but a second Trainer run on the same module (``trainer.validate`` before or after
    ``trainer.fit``, as the harness does for initial/final validation) reuses the root FSDP wrapper of the first run.

    Lightning would otherwise see the already wrapped Blocks, skip wrapping the root and run the module with the
    root's parameters (embeddings, LM head) still sharded as 1-D views of a flat parameter ("'weight' must be 2-D").
    """

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        root = getattr(self, "_litcpt_root", None)
        if root is not None and root.module is model:
            return root
        self._litcpt_root = self._wrap(model)
        return self._litcpt_root

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return super().wrap_model(model)


class CPUFSDPStrategy(ReusingFSDPStrategy):
    """Lightning's ``FSDPStrategy`` refuses ``accelerator="cpu"``; this subclass runs FSDP1 on CPU ranks (gloo).

    It exists for tests and debugging of the FSDP code path on machines without a GPU.
    """

    strategy_name = "fsdp_cpu"

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel

        if not any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
            model = FullyShardedDataParallel(
                module=model, cpu_offload=self.cpu_offload, mixed_precision=self.mixed_precision_config,
                sharding_strategy=self.sharding_strategy, device_id=torch.device("cpu"), **self.kwargs,
            )
        self.finish_wrapping(model)
        return model


def make_strategy(name: str, *, accelerator: str, world_size: int, activation_checkpointing: bool = False,
                  state_dict_type: Literal["full", "sharded"] = "sharded") -> Strategy | str:
    """The Lightning strategy object for ``name`` (one of :data:`STRATEGIES`)."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {name!r}")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    backend = "gloo" if on_cpu else None
    if name == "auto":
        return "auto"
    if name == "ddp":
        return DDPStrategy(process_group_backend=backend)
    if name == "fsdp":
        cls = CPUFSDPStrategy if on_cpu else ReusingFSDPStrategy
        return cls(
            auto_wrap_policy={Block},
            activation_checkpointing_policy={Block} if activation_checkpointing else None,
            state_dict_type=state_dict_type,
            process_group_backend=backend,
        )
    return ModelParallelStrategy(data_parallel_size=world_size, tensor_parallel_size=1, process_group_backend=backend)


def apply_fsdp2(model: torch.nn.Module, device_mesh, *, activation_checkpointing: bool = False) -> None:
    """Shard ``model`` with ``fully_shard``: every litgpt ``Block`` is one unit, the root holds the rest."""
    from torch.distributed.fsdp import fully_shard

    mesh = device_mesh["data_parallel"] if "data_parallel" in (device_mesh.mesh_dim_names or ()) else device_mesh
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    if activation_checkpointing:
        apply_activation_checkpointing(model)
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def apply_activation_checkpointing(model: torch.nn.Module) -> None:
    """Wrap each litgpt ``Block`` so its activations are recomputed in the backward pass."""
    from litcpt._private import apply_activation_checkpointing as apply

    apply(model, check_fn=lambda m: isinstance(m, Block))
