"""Build a litgpt ``GPT`` on the meta device and materialise it shard by shard: no rank ever holds a full fp32 copy.

A model built with :func:`meta_gpt` has shapes but no storage. Its weights come from a :class:`WeightSource`, one
parameter at a time, as a full tensor that is then cut to this rank's shard:

- :class:`CheckpointWeights`: ``lit_model.pth`` opened with ``torch.load(mmap=True, weights_only=True)``: a shard
  reads only its rows of the file (pages are shared with the page cache, not copied per rank);
- :class:`FreshInit`: GPT-NeoX initialisation (as :func:`litcpt.models.base.init_weights`), each parameter drawn from
  its own generator seeded by ``(seed, parameter name)``, so the weights do not depend on the number of ranks, the
  sharding or the order in which units are materialised.

Three ways to materialise, one per strategy family (all in ``GPTModule.configure_model``):

- FSDP2 (``fully_shard`` on the meta model, then :func:`materialize_sharded`: ``to_empty`` + fill each DTensor's local
  ``Shard(0)`` chunk);
- FSDP1 (:func:`fsdp1_param_init_fn`, FSDP's ``param_init_fn``: each wrapped unit is materialised in full, filled and
  then flattened and sharded by FSDP, one unit at a time);
- anything else (:func:`materialize_sharded` on plain tensors: the full model on this rank's device).
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from litgpt import GPT, Config
from litgpt.model import CausalSelfAttention, LLaMAMLP

from litcpt.runtime.checkpoint import check_weights_match, load_state_dict


def meta_gpt(config: Config) -> GPT:
    """A ``GPT`` whose parameters and buffers are on the meta device (no memory, no RNG draws)."""
    with torch.device("meta"):
        return GPT(config)


def canonical_name(name: str) -> str:
    """A parameter name without the wrappers' infixes (activation checkpointing, ``torch.compile``)."""
    return name.replace("_checkpoint_wrapped_module.", "").replace("_orig_mod.", "")


def has_meta(module: torch.nn.Module) -> bool:
    return any(t.is_meta for t in module.parameters()) or any(t.is_meta for t in module.buffers())


def param_seed(seed: int, name: str) -> int:
    """The seed of parameter ``name``'s own generator (63 bits of sha256 of ``"<seed>:<name>"``)."""
    return int.from_bytes(hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()[:8], "little") >> 1


class WeightSource:
    """Full tensors of a GPT's parameters by name (GPT-relative, e.g. ``transformer.h.0.attn.qkv.weight``)."""

    def full(self, name: str) -> torch.Tensor:
        raise NotImplementedError


class CheckpointWeights(WeightSource):
    """The tensors of ``checkpoint_dir/lit_model.pth``, memory-mapped; checked against ``model``'s names/shapes."""

    def __init__(self, checkpoint_dir: Path | str, model: torch.nn.Module, *, field: str = "initial_checkpoint_dir"):
        self.path = Path(checkpoint_dir) / "lit_model.pth"
        self.state = load_state_dict(self.path, field=field)
        check_weights_match(model.state_dict(), self.state, path=self.path, field=field)

    def full(self, name: str) -> torch.Tensor:
        return self.state[name]


class FreshInit(WeightSource):
    """GPT-NeoX init of ``model``'s parameters: ``N(0, sqrt(2/5/n_embd))`` for Linear and Embedding weights,
    ``N(0, 1/sqrt(n_embd)/n_layer)`` for the output projections of attention and LLaMA MLPs, zeros for biases, and
    the module's own ``reset_parameters`` (ones/zeros) for norms; one generator per parameter (:func:`param_seed`)."""

    def __init__(self, model: GPT, seed: int) -> None:
        config = model.config
        self.seed = int(seed)
        # name -> (shape, std of a normal init | None, a meta copy of the owning module for the others)
        self.owner: dict[str, tuple[torch.Size, float | None, torch.nn.Module | None]] = {}
        base, proj = math.sqrt(2.0 / 5 / config.n_embd), 1 / math.sqrt(config.n_embd) / config.n_layer
        proj_modules = {id(m.proj) for m in model.modules() if isinstance(m, (LLaMAMLP, CausalSelfAttention))}
        for module_name, module in model.named_modules():
            linear = isinstance(module, (torch.nn.Linear, torch.nn.Embedding))
            for pname, param in module.named_parameters(recurse=False):
                name = f"{module_name}.{pname}" if module_name else pname
                std = (proj if id(module) in proj_modules else base) if linear and pname == "weight" else None
                # the model may be sharded later: keep a meta copy of a norm (no children, no memory)
                other = None if linear else copy.deepcopy(module).to(device="meta")
                self.owner[name] = (param.shape, std, other)

    def full(self, name: str) -> torch.Tensor:
        shape, std, module = self.owner[name]
        if std is not None:
            generator = torch.Generator().manual_seed(param_seed(self.seed, name))
            return torch.empty(shape, dtype=torch.float32).normal_(0.0, std, generator=generator)
        if module is None:  # a bias of a Linear
            return torch.zeros(shape, dtype=torch.float32)
        fresh = copy.deepcopy(module)  # a norm: its own (deterministic) reset, on CPU
        fresh.to_empty(device="cpu")
        fresh.reset_parameters()
        return fresh.get_parameter(name.rsplit(".", 1)[-1]).detach().float()


def _local_chunk(full: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """This rank's part of ``full`` for ``param`` (a DTensor of FSDP2, or a plain tensor: all of it)."""
    from torch.distributed.tensor import DTensor, Shard

    if not isinstance(param, DTensor):
        return full
    placements = param.placements
    if len(placements) == 1 and isinstance(placements[0], Shard) and placements[0].dim == 0:
        mesh = param.device_mesh
        rank, world = mesh.get_local_rank(), mesh.size()
        chunks = torch.chunk(full, world, dim=0)
        local = chunks[rank] if rank < len(chunks) else full[:0]
        return local
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full, param.device_mesh, placements, src_data_rank=None).to_local()


def materialize_sharded(model: torch.nn.Module, source: WeightSource, device: torch.device | str) -> None:
    """``to_empty`` on ``device`` and fill every parameter (its local shard if FSDP2 sharded it) from ``source``."""
    from torch.distributed.tensor import DTensor

    model.to_empty(device=device)
    with torch.no_grad():
        for name, param in model.named_parameters():
            local = param.to_local() if isinstance(param, DTensor) else param
            chunk = _local_chunk(source.full(canonical_name(name)), param)
            if tuple(chunk.shape) != tuple(local.shape):
                raise RuntimeError(f"materialize {name}: shard {tuple(chunk.shape)} vs parameter {tuple(local.shape)}")
            local.copy_(chunk)
        for module in model.modules():
            if isinstance(module, GPT):
                module.cos, module.sin = module.rope_cache(device=torch.device(device))


def fsdp1_param_init_fn(root: torch.nn.Module, sources: Mapping[str, WeightSource],
                        device: torch.device | str) -> Callable[[torch.nn.Module], None]:
    """FSDP1's ``param_init_fn`` for a module tree ``root`` whose GPTs are on meta: ``sources`` maps the qualified name
    of each meta GPT in ``root`` (``"model"``, ``"ref_model"``) to its weights. FSDP calls it on each module of a unit
    before flattening and sharding the unit; it materialises that module's own meta tensors and fills them."""
    names = {id(m): n for n, m in root.named_modules()}

    def source_of(qualified: str) -> tuple[WeightSource, str]:
        for prefix, source in sources.items():
            if qualified.startswith(prefix + "."):
                return source, qualified[len(prefix) + 1:]
        raise RuntimeError(f"materialize {qualified}: on the meta device but no weight source covers it")

    def init(module: torch.nn.Module) -> None:
        own = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
        if not any(t.is_meta for _, t in own):
            return
        module_name = names.get(id(module))
        if module_name is None:
            raise RuntimeError(f"materialize: a {type(module).__name__} on the meta device is not part of the model")
        module.to_empty(device=device, recurse=False)
        with torch.no_grad():
            for pname, param in module.named_parameters(recurse=False):
                source, name = source_of(canonical_name(f"{module_name}.{pname}" if module_name else pname))
                param.copy_(source.full(name))
            if isinstance(module, GPT):
                module.cos, module.sin = module.rope_cache(device=torch.device(device))

    return init
