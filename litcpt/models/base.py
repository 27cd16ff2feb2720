"""The part every litcpt LightningModule shares: a litgpt ``GPT`` built from a config or a checkpoint dir,
the optimizer given LitGPT-style, activation checkpointing and FSDP2 sharding in ``configure_model``, the
constructor arguments saved as hyperparameters (``load_from_checkpoint`` works) and per-optimizer-step means of
training metrics (:meth:`GPTModule.log_step_mean`)."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from litgpt import GPT, Config
from litgpt.model import CausalSelfAttention, LLaMAMLP

from litcpt._private import attached_trainer
from litcpt.runtime.checkpoint import load_weights
from litcpt.runtime.optim import make_optimizer
from litcpt.runtime.strategies import apply_activation_checkpointing, apply_fsdp2


def init_weights(model: GPT) -> None:
    """GPT-NeoX initialisation as ``litgpt pretrain`` does it (arXiv 2204.06745), so fresh runs match."""
    n_embd, n_layer = model.config.n_embd, model.config.n_layer

    def normal(module: torch.nn.Module, std: float) -> None:
        torch.nn.init.normal_(module.weight, mean=0.0, std=std)
        if getattr(module, "bias", None) is not None:
            torch.nn.init.zeros_(module.bias)

    for module in model.modules():
        if isinstance(module, (torch.nn.Embedding, torch.nn.Linear)):
            normal(module, math.sqrt(2.0 / 5 / n_embd))
    for module in model.modules():
        if isinstance(module, (LLaMAMLP, CausalSelfAttention)):
            normal(module.proj, 1 / math.sqrt(n_embd) / n_layer)


def build_gpt(config: Config, *, checkpoint_dir: Path | None = None, tie_embeddings: bool = False,
              field: str = "initial_checkpoint_dir") -> GPT:
    """A ``GPT`` with fresh GPT-NeoX init, or with the weights of ``checkpoint_dir/lit_model.pth``."""
    model = GPT(config)
    if checkpoint_dir is not None:
        load_weights(model, checkpoint_dir, field=field)
    else:
        init_weights(model)
        if tie_embeddings:
            model.transformer.wte.weight = model.lm_head.weight
    return model


_SKIP = object()


def plain_hparam(value: Any) -> Any:
    """``value`` as a checkpoint-safe hyperparameter (loadable with ``weights_only=True``): numbers, strings, lists
    and dicts of them as they are, a ``Path`` as a string, a litgpt ``Config`` as its dict; anything else (a callable
    optimizer, precomputed log-probs, a tokenizer) is ``_SKIP``: not saved, give it again to
    ``load_from_checkpoint``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Config):
        return dataclasses.asdict(value)
    if isinstance(value, (list, tuple)):
        items = [plain_hparam(v) for v in value]
        return _SKIP if any(v is _SKIP for v in items) else items
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        items = {k: plain_hparam(v) for k, v in value.items()}
        return _SKIP if any(v is _SKIP for v in items.values()) else items
    return _SKIP


class GPTModule(L.LightningModule):
    """Base class: owns ``self.model`` (a ``litgpt.GPT``) and the optimizer; subclasses define the steps.

    The constructor arguments of the whole class chain are saved as hyperparameters (see :func:`plain_hparam`;
    ``config`` as a dict, which ``__init__`` accepts too), so ``SubClass.load_from_checkpoint("x.ckpt")`` rebuilds the
    module; names in ``hparams_ignore`` are left out. ``defer_init`` is never saved: a loaded module is materialised.

    Args:
        config: the litgpt model config (or its dict).
        optimizer: ``"AdamW"`` or ``{"class_path": "torch.optim.AdamW", "init_args": {...}}`` (LitGPT-style); a dict
            is copied (litgpt's ``instantiate_torch_optimizer`` updates ``init_args`` in place).
        checkpoint_dir: LitGPT checkpoint dir to load weights from (None: fresh init).
        activation_checkpointing: recompute Blocks in backward (FSDP1 does it through the strategy instead).
        compile: ``torch.compile`` the GPT in place in ``configure_model``.
        fused_head: run the LM head fused with the loss, in chunks of positions with its own autograd, so training
            never materialises the ``[batch, tokens, vocab]`` logits (:mod:`litcpt.losses.fused_head`; the recipe key
            ``train.fused_head``). Used by the modules that read the LM head (language model, DPO, reference
            log-probs); ignored for models with final-logit soft-capping.
        defer_init: build the GPT on the meta device and materialise it in ``configure_model``, shard by shard under
            ``fsdp``/``fsdp2`` (see :mod:`litcpt.runtime.materialize`); the commands set it for those strategies.
            Fresh weights then come from :class:`~litcpt.runtime.materialize.FreshInit` (seeded per parameter, the same
            for any number of ranks); checkpoint weights are the same either way. Not with ``tie_embeddings``.
    """

    hparams_ignore: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        config: Config | Mapping[str, Any],
        *,
        optimizer: str | dict = "AdamW",
        checkpoint_dir: Path | str | None = None,
        activation_checkpointing: bool = False,
        tie_embeddings: bool = False,
        compile: bool = False,
        fused_head: bool = True,
        defer_init: bool = False,
    ) -> None:
        super().__init__()
        self._save_init_hparams(inspect.currentframe())
        if isinstance(config, Mapping):
            config = Config(**config)
        self.config = config
        self.optimizer_spec = copy.deepcopy(optimizer) if isinstance(optimizer, Mapping) else optimizer
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        checkpoint_dir = self.checkpoint_dir
        # name -> (sum over this optimizer step's micro-batches, count, prog_bar): see log_step_mean
        self._step_means: dict[str, tuple[torch.Tensor, int, bool]] = {}
        self.activation_checkpointing = activation_checkpointing
        self.compile_model = compile
        self.fused_head = bool(fused_head)
        # qualified name of a meta-device GPT in this module ("model", "ref_model") -> where its weights come from
        self.weight_sources: dict[str, Any] = {}
        if defer_init and not tie_embeddings:
            self.model = self.deferred_gpt("model", config, checkpoint_dir)
        else:
            self.model = build_gpt(config, checkpoint_dir=checkpoint_dir, tie_embeddings=tie_embeddings)

    def _save_init_hparams(self, frame: Any) -> None:
        """``save_hyperparameters`` of the checkpoint-safe constructor arguments of every class in the chain."""
        from lightning.pytorch.utilities.parsing import collect_init_args

        args: dict[str, Any] = {}
        for local in collect_init_args(frame, [], classes=(GPTModule,)):  # base first: the subclass's values win
            args.update(local)
        skip = {"defer_init", *self.hparams_ignore}
        hparams = {k: plain_hparam(v) for k, v in args.items() if k not in skip}
        self.save_hyperparameters({k: v for k, v in hparams.items() if v is not _SKIP})

    # ------------------------------------------------------------ step means
    def log_step_mean(self, name: str, value: torch.Tensor, *, prog_bar: bool = False) -> None:
        """Count this micro-batch's ``value`` in ``name``, logged once per optimizer step as the mean over the step's
        micro-batches on every rank (``self.log(on_step=True)`` would log the last micro-batch of rank 0). Call it on
        every rank for every micro-batch."""
        total, count, _ = self._step_means.get(
            name, (torch.zeros((), dtype=torch.float64, device=value.device), 0, prog_bar)
        )
        self._step_means[name] = (total + value.detach().double(), count + 1, prog_bar)

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Every micro-batch of the step has run its backward: log the step means (one all-reduce for all)."""
        self._log_step_means()

    def _log_step_means(self) -> None:
        if not self._step_means:
            return
        names = sorted(self._step_means)  # the same order on every rank
        totals = torch.stack([self._step_means[n][0] for n in names])
        counts = torch.tensor([float(self._step_means[n][1]) for n in names], dtype=torch.float64, device=totals.device)
        summed = self.trainer.strategy.reduce(torch.cat([totals, counts]), reduce_op="sum")
        for i, name in enumerate(names):
            self.log(
                name,
                summed[i] / summed[len(names) + i],
                prog_bar=self._step_means[name][2],
                on_step=True,
                on_epoch=False,
                sync_dist=False,
                batch_size=1,
            )
        self._step_means.clear()

    def deferred_gpt(
        self, name: str, config: Config, checkpoint_dir: Path | None, *, field: str = "initial_checkpoint_dir"
    ) -> GPT:
        """A meta-device GPT to be stored as ``self.<name>``; its weights are filled in ``configure_model``."""
        from litcpt.runtime.materialize import CheckpointWeights, FreshInit, meta_gpt

        model = meta_gpt(config)
        self.weight_sources[name] = (
            CheckpointWeights(checkpoint_dir, model, field=field)
            if checkpoint_dir is not None
            else FreshInit(model, torch.initial_seed())
        )
        return model

    def initial_weight(self, name: str) -> torch.Tensor:
        """The starting value of ``self.model``'s parameter ``name`` (full tensor), materialised or not yet."""
        if "model" in self.weight_sources:
            return self.weight_sources["model"].full(name)
        return self.model.get_parameter(name).detach()

    def configure_model(self) -> None:
        """FSDP2 (``ModelParallelStrategy``): shard per Block. Otherwise optional activation checkpointing. Then the
        meta-device GPTs (``defer_init``) are materialised: their shards only under fsdp/fsdp2."""
        from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

        if getattr(self, "_litcpt_configured", False) or attached_trainer(self) is None:
            return
        self._litcpt_configured = True
        strategy = self.trainer.strategy
        if isinstance(strategy, ModelParallelStrategy):
            apply_fsdp2(self.model, self.device_mesh, activation_checkpointing=self.activation_checkpointing)
            for name in self.weight_sources:  # a frozen meta GPT (DPO's reference) is sharded like the policy
                if name != "model":
                    apply_fsdp2(getattr(self, name), self.device_mesh, activation_checkpointing=False)
            # Other trainable children (e.g. a reward head) must be sharded too, or their gradients would never be
            # reduced across ranks (FSDP2 has no DDP wrapper around the rest of the module).
            from torch.distributed.fsdp import fully_shard

            mesh = self.device_mesh["data_parallel"]
            for child in self.children():
                if child is not self.model and any(p.requires_grad for p in child.parameters()):
                    fully_shard(child, mesh=mesh)
        elif self.activation_checkpointing and not isinstance(strategy, FSDPStrategy):
            apply_activation_checkpointing(self.model)
        self._materialize(strategy)
        if self.compile_model:
            self.model.compile()  # in place: parameter names (and so checkpoints) are unchanged

    def _materialize(self, strategy: Any) -> None:
        """Fill the meta GPTs: FSDP1 later, unit by unit, through FSDP's ``param_init_fn``; else here, in place."""
        from lightning.pytorch.strategies import FSDPStrategy

        from litcpt.runtime.materialize import fsdp1_param_init_fn, has_meta, materialize_sharded

        pending = {name: source for name, source in self.weight_sources.items() if has_meta(getattr(self, name))}
        if not pending:
            return
        if isinstance(strategy, FSDPStrategy):
            strategy.kwargs["param_init_fn"] = fsdp1_param_init_fn(self, pending, strategy.root_device)
            return
        for name, source in pending.items():
            materialize_sharded(getattr(self, name), source, strategy.root_device)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """FSDP1 shards gradients, so the global norm must come from FSDP's own ``clip_grad_norm_``."""
        from lightning.pytorch.strategies import FSDPStrategy

        if gradient_clip_val and isinstance(self.trainer.strategy, FSDPStrategy):
            self.trainer.model.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        extra = {"fused": True} if self.device.type == "cuda" else {}
        spec = copy.deepcopy(self.optimizer_spec) if isinstance(self.optimizer_spec, Mapping) else self.optimizer_spec
        return make_optimizer(spec, self.trainable_parameters(), **extra)
