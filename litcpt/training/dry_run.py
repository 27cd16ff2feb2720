"""``--dry_run true``: what a training run would hold per rank, computed from the config on the meta device.

:func:`estimate_memory` is a pure function of the model's parameter count and shape, the world size, the strategy
and the precision; :func:`dry_run_report` builds the model on the meta device (no memory), counts its parameters and
formats the table that ``litcpt pretrain|reward|dpo --dry_run true`` prints before exiting.

The estimate, per rank (``W`` ranks; ``S = W`` under ``fsdp``/``fsdp2``, ``1`` under ``auto``/``ddp``):

- parameters: ``P x bytes(param dtype) / S`` (fp32 master weights under ``bf16-mixed`` and ``32-true``, bf16 under
  ``bf16-true``); a frozen reference (DPO) adds ``P_ref x bytes / S``;
- gradients: ``P_trainable x bytes(param dtype) / S``;
- optimizer: AdamW's two moments, ``2 x P_trainable x bytes(param dtype) / S``;
- activations at the micro-batch ``b`` and sequence length ``T``, in the compute dtype (bf16 under ``bf16-*``):
  per layer and token about ``10 n_embd + 4 intermediate_size`` saved values (LLaMA MLP; ``2 x`` for GELU MLPs)
  with fused attention (no ``T x T`` scores kept), only the Block input ``n_embd`` with activation checkpointing
  (plus one Block recomputed at a time), and the logits ``b T V`` in the compute dtype plus their fp32 upcast --
  with the fused head (``train.fused_head``, the default for the LM and DPO) only one chunk of them,
  ``min(b T, chunk_rows(V)) x V`` (:func:`litcpt.losses.fused_head.chunk_rows`), plus the per-position hidden
  state and log-sum-exp it keeps for the backward;
- FSDP all-gather buffers: one Block's parameters in the compute dtype (two with prefetch).

It leaves out the CUDA context and allocator fragmentation (typically 1-3 GB per GPU): treat it as a lower bound
within about 20%.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

GiB = 1024**3


def dtype_bytes(precision: str) -> tuple[int, int]:
    """(bytes per parameter, bytes per activation) of a Lightning precision string."""
    precision = str(precision)
    if precision in ("bf16-true", "bf16", "16-true", "16"):
        return 2, 2
    if precision in ("bf16-mixed", "16-mixed"):
        return 4, 2
    return 4, 4


@dataclass
class MemoryEstimate:
    """Bytes per rank, by kind (see the module docstring for the formulas)."""

    params: int
    frozen: int
    grads: int
    optimizer: int
    activations: int
    gather_buffers: int
    logits: int = 0
    """The logits' part of ``activations`` (one chunk with the fused head)."""
    unfused_logits: int = 0
    """The full ``b T V`` logits (compute dtype + fp32 upcast): what the plain head holds."""
    fused_logits: int = 0
    """What the fused head holds instead: one chunk of logits, the hidden states and log-sum-exps it keeps."""

    @property
    def total(self) -> int:
        return self.params + self.frozen + self.grads + self.optimizer + self.activations + self.gather_buffers


def estimate_memory(*, n_params: int, n_trainable: int, n_frozen: int, block_params: int, n_layer: int, n_embd: int,
                    intermediate_size: int, vocab_size: int, llama_mlp: bool, world_size: int, sharded: bool,
                    precision: str, micro_batch_size: int, seq_length: int, activation_checkpointing: bool,
                    sequences_per_sample: int = 1, fused_head: bool = False) -> MemoryEstimate:
    """Per-rank memory of one training step (pure arithmetic; ``sequences_per_sample`` is 2 for preference pairs;
    ``fused_head``: the LM head runs in chunks, see :mod:`litcpt.losses.fused_head`)."""
    from litcpt.losses.fused_head import chunk_rows

    p_bytes, a_bytes = dtype_bytes(precision)
    shards = max(1, world_size) if sharded else 1
    tokens = micro_batch_size * sequences_per_sample * seq_length
    per_token_layer = 10 * n_embd + (4 if llama_mlp else 2) * intermediate_size
    if activation_checkpointing:
        layers = n_layer * n_embd * tokens * a_bytes + per_token_layer * tokens * a_bytes
    else:
        layers = n_layer * per_token_layer * tokens * a_bytes
    unfused = tokens * vocab_size * (a_bytes + 4)
    # one chunk of logits (and its softmax) + per position the hidden state kept for the backward and its lse
    fused = min(tokens, chunk_rows(vocab_size)) * vocab_size * (a_bytes + 4) + tokens * (n_embd * a_bytes + 8)
    logits = fused if fused_head else unfused
    return MemoryEstimate(
        params=n_params * p_bytes // shards,
        frozen=n_frozen * p_bytes // shards,
        grads=n_trainable * p_bytes // shards,
        optimizer=2 * n_trainable * p_bytes // shards,
        activations=layers + logits,
        gather_buffers=(2 * block_params * a_bytes) if sharded and shards > 1 else 0,
        logits=logits,
        unfused_logits=unfused,
        fused_logits=fused,
    )


def _count(module: torch.nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return total, trainable


def dry_run_report(config, *, kind: str, world_size: int, strategy: str, precision: str, micro_batch_size: int,
                   seq_length: int, activation_checkpointing: bool, frozen_reference: bool = False,
                   devices: int = 1, num_nodes: int = 1, fused_head: bool = False) -> str:
    """The table ``--dry_run`` prints: parameters and per-rank memory, from a meta-device model (nothing allocated).

    ``kind``: ``"lm"`` (pretrain), ``"reward"`` (backbone without the LM head + a 1-output head), ``"dpo"`` (policy,
    plus a frozen reference of the same size with ``frozen_reference``). ``fused_head``: the LM head runs fused
    with the loss (``train.fused_head``; LM and DPO only), the activations count one chunk of logits.
    """
    from litgpt.model import Block

    from litcpt.runtime.materialize import meta_gpt

    model = meta_gpt(config)
    n_params, _ = _count(model)
    if kind == "reward":
        n_params = n_params - model.lm_head.weight.numel() - (model.lm_head.bias.numel()
                                                              if model.lm_head.bias is not None else 0)
        n_params += config.n_embd + 1
    block = next(m for m in model.modules() if isinstance(m, Block))
    block_params = sum(p.numel() for p in block.parameters())
    n_frozen = n_params if frozen_reference else 0
    sharded = strategy in ("fsdp", "fsdp2")
    est = estimate_memory(
        n_params=n_params, n_trainable=n_params, n_frozen=n_frozen, block_params=block_params, n_layer=config.n_layer,
        n_embd=config.n_embd, intermediate_size=config.intermediate_size, vocab_size=config.padded_vocab_size,
        llama_mlp=config.mlp_class_name in ("LLaMAMLP", "GemmaMLP"), world_size=world_size, sharded=sharded,
        precision=precision, micro_batch_size=micro_batch_size, seq_length=seq_length,
        activation_checkpointing=activation_checkpointing, sequences_per_sample=2 if kind in ("reward", "dpo") else 1,
        fused_head=fused_head and kind != "reward")
    p_bytes, _ = dtype_bytes(precision)
    if strategy == "fsdp2":  # shard + one full parameter at a time
        transient = max(p.numel() for p in model.parameters()) * 4
    elif strategy == "fsdp":  # shard + one full wrapped unit (a Block or the root), flattened: twice
        root = sum(p.numel() for n, p in model.named_parameters() if ".h." not in f".{n}")
        transient = 2 * max(block_params, root) * 4
    else:
        transient = 0
    construct = (n_params * 4 // world_size + transient) if sharded else n_params * 4
    rows = [
        ("parameters", est.params), ("frozen reference", est.frozen), ("gradients", est.grads),
        ("optimizer (AdamW m, v)", est.optimizer),
        (f"activations (micro-batch {micro_batch_size}{' pairs' if kind != 'lm' else ''} x {seq_length} tokens"
         f"{', checkpointed' if activation_checkpointing else ''})", est.activations),
        ("FSDP all-gather buffers", est.gather_buffers),
    ]
    if kind != "reward":
        on = "on" if fused_head else "off"
        rows.insert(5, (f"  of which logits (fused head {on}; unfused: {est.unfused_logits / GiB:.2f} GiB, "
                        f"fused: {est.fused_logits / GiB:.2f} GiB)",
                        est.logits))
    width = max(len(name) for name, _ in rows) + 2
    lines = [
        f"dry run: {config.name} ({kind}), {n_params / 1e9:.3f}B parameters"
        + (f" + {n_frozen / 1e9:.3f}B frozen reference" if n_frozen else "")
        + f"; world size {world_size} ({devices} device(s) x {num_nodes} node(s)), strategy {strategy}, "
        f"precision {precision}",
        f"{'per rank':<{width}}{'GiB':>10}",
    ]
    lines += [f"{name:<{width}}{value / GiB:>10.2f}" for name, value in rows if value or name == "parameters"]
    lines.append(f"{'total (lower bound, no CUDA context)':<{width}}{est.total / GiB:>10.2f}")
    lines.append(f"{'peak to build the model, per rank':<{width}}{construct / GiB:>10.2f}"
                 + ("  (meta device, materialised shard by shard on the rank's device)" if sharded
                    else "  (a full fp32 copy in host RAM per rank)"))
    lines.append(f"checkpoints: lit_model.pth {n_params * p_bytes / GiB:.2f} GiB (weights in the parameter dtype), "
                 f"Lightning .ckpt ~{3 * n_params * p_bytes / GiB:.2f} GiB (weights + AdamW moments)")
    lines.append("nothing was allocated; drop --dry_run to train")
    return "\n".join(lines)


def print_dry_run(config, spec, *, kind: str, seq_length: int, optimizer: Any, frozen_reference: bool = False) -> None:
    """Check the strategy can be built for ``spec``, warn as the run would about its precision and ``optimizer``'s lr
    (:func:`litcpt.runtime.precision.warn_precision`), and print :func:`dry_run_report` (on global rank 0 only)."""
    from litcpt.runtime.precision import warn_precision
    from litcpt.runtime.ranks import is_global_zero
    from litcpt.runtime.strategies import make_strategy

    make_strategy(spec.strategy, accelerator=spec.accelerator, world_size=spec.world_size,
                  activation_checkpointing=spec.train.activation_checkpointing)
    precision = spec.precision or ("32-true" if spec.accelerator == "cpu" else "bf16-mixed")  # the GPU default
    warn_precision(precision, optimizer)
    report = dry_run_report(config, kind=kind, world_size=spec.world_size, strategy=spec.strategy, precision=precision,
                            micro_batch_size=spec.train.micro_batch_size, seq_length=seq_length,
                            activation_checkpointing=spec.train.activation_checkpointing,
                            frozen_reference=frozen_reference, devices=spec.num_devices, num_nodes=spec.num_nodes,
                            fused_head=spec.train.fused_head)
    if is_global_zero():
        print(report)
