r"""Direct Preference Optimization: a trainable policy against a frozen reference (Rafailov et al., 2023).

:class:`DPOModel` owns the policy (``self.model``, from ``checkpoint_dir``) and, unless reference log-probs were
precomputed, a frozen reference (``self.ref_model``: a copy of the starting checkpoint or ``ref_checkpoint_dir``; eval
mode, ``requires_grad_(False)``, run under ``no_grad``). Each batch holds ``B`` pairs as ``2B`` rows (chosen rows
first, :func:`litcpt.data.preference.batching.collate_preference`); each model runs **one** forward over the ``2B``
rows.
The loss is a :class:`litcpt.losses.preference.DPOLoss` (any of TRL's DPO ``loss_type``\ s, reference-free
``simpo``, or a weighted list such as MPO; WPO weights, LD-DPO, f-divergences), built and validated once from the
constructor's arguments (``self.loss``) and computed on each batch by :func:`litcpt.losses.preference.dpo_terms`, on
the summed (or, ``average_logps=True``, length-averaged) response log-probs of
:func:`litcpt.models.logprobs.sequence_logps` (per-token log-probs from the same single forward when the loss needs
them: ``sft``, ``use_weighting``, ``ld_alpha``). ``bco_pair``'s running mean lives in buffers (checkpointed);
reference-free losses build no reference model; TR-DPO syncing is
:class:`litcpt.callbacks.sync_reference.SyncReference`.

Precomputed reference (``reference_logps=``): :class:`ReferenceLogps` holds ``log π_ref`` of every pair of the train
and val sets, keyed by the pair ``index`` of the batch; it is computed once before training by
:class:`ReferenceLogpsModule` (``Trainer.predict``, same strategy as training) and cached in the run dir, and the
reference model is then never built for training (:mod:`litcpt.models.dpo_reference`). Input checks and ``dpo.json``
reading are :mod:`litcpt.models.dpo_checks`, the metrics :mod:`litcpt.models.pair_metrics`.

Metrics (torchmetrics, synced across ranks, excluding the duplicate pairs that even out ranks), TRL's names with a
``train/`` or ``val/`` prefix: ``loss``, ``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracies`` (strict
``r_c > r_r``, as TRL), ``rewards/margins``, ``logps/chosen``, ``logps/rejected`` — rewards are the implicit
``β (log π − log π_ref)``, logps the policy's. Training metrics are means over the micro-batches of each optimizer
step; validation metrics are means over the validation pairs.

Export: ``lit_model.pth`` is the policy alone (a plain LitGPT checkpoint), plus ``dpo.json`` (β, loss, reference
dir) so that ``litcpt rewardbench`` finds the reference.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from litgpt import Config
from torch import Tensor

from litcpt._private import attached_trainer
from litcpt.losses.preference import (
    DPOLoss,
    DPOLossName,
    FDivergenceName,
    dpo_terms,
    ld_logps,
    running_mean_update,
    sft_nll,
    weighted_sum,
    wpo_weights,
)
from litcpt.models.base import GPTModule, build_gpt
from litcpt.models.dpo_checks import DPO_META_FILE
from litcpt.models.dpo_reference import ReferenceLogps
from litcpt.models.logprobs import masked_logps, model_token_logps, response_logps, sequence_logps
from litcpt.models.pair_metrics import DPOMetrics
from litcpt.models.pair_metrics import dpo_pair_values as pair_values
from litcpt.runtime.checkpoint import clean_state_dict, load_config

__all__ = ["DPOModel"]

_REF_PREFIX = "ref_model."


# ------------------------------------------------------------------------------------------------- the module
class DPOModel(GPTModule):
    """Policy + frozen reference LightningModule trained with the DPO loss (see the module docstring).

    Args:
        config: litgpt config of the policy.
        checkpoint_dir: LitGPT checkpoint dir the policy starts from (required).
        ref_checkpoint_dir: the reference (default: ``checkpoint_dir``, i.e. a frozen copy of the start).
        reference_logps: precomputed reference log-probs; then no reference model is built.
        beta, loss_type, label_smoothing, loss_weights, average_logps, simpo_gamma, discopop_tau, f_divergence_type,
            f_alpha_divergence_coef, use_weighting, ld_alpha: the fields of
            :class:`litcpt.losses.preference.DPOLoss` (the same defaults), kept as ``self.loss``. With a list
            ``loss_type``, each component is also logged as ``loss/<type>``. A reference-free loss (``simpo``, alone
            or with ``sft``) builds no reference model and length-averages the log-probs. ``use_weighting`` (WPO)
            multiplies each pair's loss by the (detached) length-normalised probabilities of its two responses under
            the policy (:func:`litcpt.losses.preference.wpo_weights`).
        optimizer, activation_checkpointing, tie_embeddings: as for every litcpt module.

    The loss arguments are separate (not one ``DPOLoss``) because they are the module's saved hyperparameters:
    ``DPOModel.load_from_checkpoint`` rebuilds the module from them, also from checkpoints of earlier versions.
    """

    def __init__(
        self,
        config: Config,
        *,
        checkpoint_dir: Path,
        ref_checkpoint_dir: Path | None = None,
        beta: float = DPOLoss.beta,
        loss_type: DPOLossName | Sequence[DPOLossName] = DPOLoss.loss_type,
        label_smoothing: float = DPOLoss.label_smoothing,
        average_logps: bool = DPOLoss.average_logps,
        reference_logps: ReferenceLogps | None = None,
        loss_weights: Sequence[float] | None = DPOLoss.loss_weights,
        simpo_gamma: float = DPOLoss.simpo_gamma,
        discopop_tau: float = DPOLoss.discopop_tau,
        f_divergence_type: FDivergenceName = DPOLoss.f_divergence_type,
        f_alpha_divergence_coef: float = DPOLoss.f_alpha_divergence_coef,
        use_weighting: bool = DPOLoss.use_weighting,
        ld_alpha: float | None = DPOLoss.ld_alpha,
        **kwargs: Any,
    ) -> None:
        if checkpoint_dir is None:
            raise ValueError("checkpoint_dir: DPO starts from a trained LitGPT checkpoint, got None")
        loss = DPOLoss(loss_type=loss_type, loss_weights=loss_weights, beta=beta, label_smoothing=label_smoothing,
                       simpo_gamma=simpo_gamma, discopop_tau=discopop_tau, f_divergence_type=f_divergence_type,
                       f_alpha_divergence_coef=f_alpha_divergence_coef, use_weighting=use_weighting,
                       ld_alpha=ld_alpha, average_logps=average_logps)
        if loss.reference_free and reference_logps is not None:
            raise ValueError(f"loss_type {list(loss.names)}: reference-free; there is no reference to precompute")
        super().__init__(config, checkpoint_dir=checkpoint_dir, **kwargs)
        config = self.config  # a Config also when given as its dict (load_from_checkpoint)
        self.loss = loss
        self.ref_checkpoint_dir = Path(ref_checkpoint_dir) if ref_checkpoint_dir is not None else Path(checkpoint_dir)
        self.reference_logps = reference_logps
        self.ref_model: torch.nn.Module | None = None
        # bco_pair's δ: running mean of the batch-mean implicit reward over training steps (saved in checkpoints)
        self.register_buffer("bco_running_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("bco_running_count", torch.zeros((), dtype=torch.long))
        if not loss.reference_free and reference_logps is None:
            ref_config = load_config(self.ref_checkpoint_dir) if ref_checkpoint_dir is not None else config
            if ref_config.padded_vocab_size != config.padded_vocab_size:
                raise ValueError(
                    f"checkpoint_dir {str(checkpoint_dir)!r} and ref_checkpoint_dir "
                    f"{str(self.ref_checkpoint_dir)!r} have different padded_vocab_size "
                    f"({config.padded_vocab_size} vs {ref_config.padded_vocab_size})"
                )
            if kwargs.get("defer_init") and not kwargs.get("tie_embeddings"):
                self.ref_model = self.deferred_gpt(
                    "ref_model", ref_config, self.ref_checkpoint_dir, field="ref_checkpoint_dir"
                )
            else:
                self.ref_model = build_gpt(
                    ref_config, checkpoint_dir=self.ref_checkpoint_dir, field="ref_checkpoint_dir"
                )
            self.ref_model.eval().requires_grad_(False)
        extra = tuple(f"loss/{name}" for name in loss.names) if len(loss.names) > 1 else ()
        self.train_metrics, self.val_metrics = DPOMetrics(extra), DPOMetrics(extra)

    # ------------------------------------------------------------------ model plumbing
    def train(self, mode: bool = True) -> DPOModel:
        """Lightning puts the whole module in train mode; the reference always stays in eval mode."""
        super().train(mode)
        if self.ref_model is not None:
            self.ref_model.eval()
        return self

    def configure_model(self) -> None:
        """As :class:`GPTModule`, and under FSDP2 the reference is sharded per Block like the policy. (FSDP1 wraps
        the reference's Blocks through Lightning's auto-wrap policy: it is a submodule.)"""
        from lightning.pytorch.strategies import ModelParallelStrategy

        from litcpt.runtime.strategies import apply_fsdp2

        first = not getattr(self, "_litcpt_configured", False) and attached_trainer(self) is not None
        super().configure_model()
        if (
            first
            and self.ref_model is not None
            and "ref_model" not in self.weight_sources
            and isinstance(self.trainer.strategy, ModelParallelStrategy)
        ):  # a meta ref is sharded by super()
            apply_fsdp2(self.ref_model, self.device_mesh, activation_checkpointing=False)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume works whether or not the saved run kept a reference model (``precompute_ref`` may change), and
        from checkpoints written before ``bco_pair``'s running mean existed."""
        state = checkpoint.get("state_dict")
        if state is None:
            return
        for name in ("bco_running_mean", "bco_running_count"):
            state.setdefault(name, getattr(self, name).detach().clone())
        if self.ref_model is None:
            for key in [k for k in state if k.startswith(_REF_PREFIX)]:
                del state[key]
        elif not any(k.startswith(_REF_PREFIX) for k in state):
            state.update({f"{_REF_PREFIX}{k}": v for k, v in self.ref_model.state_dict().items()})

    # ------------------------------------------------------------------------ log-probs
    def _sequence(self, per_token: Tensor, mask: Tensor) -> Tensor:
        if self.loss.ld_alpha is not None:
            return ld_logps(per_token, mask, self.loss.ld_alpha)
        return masked_logps(per_token, mask, average=self.loss.average_logps)

    def _head_on_responses_only(self, model: torch.nn.Module) -> bool:
        """Whether ``model`` may run its LM head on the response positions only (no logits for prompt tokens): a
        plain litgpt ``GPT`` (:func:`~litcpt.models.logprobs.supports_fast_inference`) outside FSDP (whose root unit
        holds the head's sharded weight only during the model's own forward)."""
        from litcpt.models.logprobs import supports_fast_inference

        if not supports_fast_inference(model):
            return False
        trainer = attached_trainer(self)
        if trainer is None:
            return True
        from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

        return not isinstance(trainer.strategy, (FSDPStrategy, ModelParallelStrategy))

    def policy_logps(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        """(chosen, rejected) response log-probs under the policy, one forward over the ``2B`` rows (the LM head only
        on the positions that predict response tokens: fused with its own autograd under ``fused_head``, else where
        :meth:`_head_on_responses_only` allows)."""
        if self.loss.needs_token_logps:
            return self._policy_tokens(batch)[:2]
        if self.fused_head:
            logps = sequence_logps(self.model, batch["input_ids"], batch["response_mask"],
                                   average=self.loss.average_logps, fused_head=True)
        else:
            fn = response_logps if self._head_on_responses_only(self.model) else sequence_logps
            logps = fn(self.model, batch["input_ids"], batch["response_mask"], average=self.loss.average_logps)
        half = logps.shape[0] // 2
        return logps[:half], logps[half:]

    def _policy_tokens(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """(chosen, rejected) sequence log-probs and the token-level extras of the loss (``sft_nll``,
        ``pair_weights``), from one forward over the ``2B`` rows."""
        mask = batch["response_mask"][:, 1:]
        per_token, log_sum_sq = model_token_logps(self.model, batch["input_ids"], batch["response_mask"],
                                                  fused_head=self.fused_head, sum_sq=self.loss.use_weighting)
        half = per_token.shape[0] // 2
        logps = self._sequence(per_token, mask)
        extras: dict[str, Tensor] = {}
        if self.loss.needs_sft_nll:
            extras["sft_nll"] = sft_nll(per_token[:half], mask[:half])
        if self.loss.use_weighting:
            weights = wpo_weights(per_token.detach(), log_sum_sq, mask)
            extras["pair_weights"] = weights[:half] * weights[half:]
        return logps[:half], logps[half:], extras

    def ref_logps(self, batch: Mapping[str, Any], split: str) -> tuple[Tensor, Tensor]:
        """(chosen, rejected) reference log-probs: precomputed (looked up by pair ``index``) or one no-grad forward
        (through the same head path as the policy's, so a policy equal to its reference has margins of exactly 0)."""
        if self.reference_logps is not None:
            return self.reference_logps.lookup(split, batch["index"].to(self.device))
        assert self.ref_model is not None
        with torch.no_grad():
            if self.loss.ld_alpha is not None:
                per_token, _ = model_token_logps(self.ref_model, batch["input_ids"], batch["response_mask"],
                                                 fused_head=self.fused_head)
                logps = self._sequence(per_token, batch["response_mask"][:, 1:])
            elif not self.fused_head and self._head_on_responses_only(self.ref_model):
                logps = response_logps(self.ref_model, batch["input_ids"], batch["response_mask"],
                                       average=self.loss.average_logps)
            else:
                logps = sequence_logps(self.ref_model, batch["input_ids"], batch["response_mask"],
                                       average=self.loss.average_logps, fused_head=self.fused_head)
        half = logps.shape[0] // 2
        return logps[:half].detach(), logps[half:].detach()

    def pair_losses(self, batch: Mapping[str, Any], split: str = "train") -> dict[str, Tensor]:
        """Per-pair loss, implicit rewards and policy logps of a batch (see :class:`DPOMetrics` for the keys; with
        several loss types also ``loss/<type>``, unweighted). In training, ``bco_pair``'s running mean is updated
        with this batch before its loss is computed (as TRL 0.28 does)."""
        if self.loss.needs_token_logps:
            pc, pr, extras = self._policy_tokens(batch)
        else:
            (pc, pr), extras = self.policy_logps(batch), {}
        if self.loss.reference_free:
            rc = rr = None
        else:
            rc, rr = self.ref_logps(batch, split)
            rc, rr = rc.to(pc), rr.to(pr)
        if self.loss.needs_lengths:
            lengths = batch["response_mask"].sum(-1).to(pc)
            extras["chosen_lengths"], extras["rejected_lengths"] = lengths[: pc.shape[0]], lengths[pc.shape[0] :]
        if self.loss.running_mean:
            if split == "train" and self.training:
                self._update_bco_mean(pc.detach() - rc, pr.detach() - rr, self._weight(batch, pc))
            extras["bco_delta"] = self.bco_running_mean
        terms, r_chosen, r_rejected = dpo_terms(self.loss, pc, pr, rc, rr, **extras)
        if self.loss.average_logps and not any(term.length_averaged for term in self.loss.terms):
            # the logged rewards are TRL's, β × the *summed* log-ratio, also when the loss reads averaged log-probs
            # (ipo with average_logps is TRL's length-normalised IPO): the mean log-ratio times the response length
            lengths = batch["response_mask"][:, 1:].sum(-1).clamp(min=1).to(pc)  # the tokens the mean divides by
            r_chosen, r_rejected = r_chosen * lengths[: pc.shape[0]], r_rejected * lengths[pc.shape[0]:]
        values = pair_values(weighted_sum(self.loss, terms), r_chosen, r_rejected, pc.detach(), pr.detach())
        if len(terms) > 1:
            values.update({f"loss/{name}": term.detach() for name, term in terms.items()})
        return values

    @torch.no_grad()
    def _update_bco_mean(self, chosen_logratios: Tensor, rejected_logratios: Tensor, weight: Tensor) -> None:
        """Fold this step's mean implicit reward (over every rank's real pairs) into ``bco_running_mean``."""
        w = torch.cat([weight, weight]).double()
        rewards = self.loss.beta * torch.cat([chosen_logratios, rejected_logratios]).double()
        total = torch.stack([(rewards * w).sum(), w.sum()])
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(total)
        if total[1] > 0:
            mean, count = running_mean_update(self.bco_running_mean, self.bco_running_count, total[0] / total[1])
            self.bco_running_mean.copy_(mean)
            self.bco_running_count.copy_(count)

    @staticmethod
    def _weight(batch: Mapping[str, Any], like: Tensor) -> Tensor:
        duplicate = batch.get("is_duplicate")
        if duplicate is None:
            return torch.ones_like(like)
        return (~duplicate.bool()).to(like)

    # ------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        values = self.pair_losses(batch, "train")
        self.train_metrics.update(values, self._weight(batch, values["loss"]))
        return values["loss"].mean()

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Once per optimizer step (all its micro-batches done): the means over the step's pairs."""
        super().on_before_optimizer_step(optimizer)
        if not self.train_metrics.count:
            return
        values = self.train_metrics.compute()
        self.log("train/loss", values.pop("loss"), prog_bar=True, on_step=True, on_epoch=False)
        self.log_dict({f"train/{k}": v for k, v in values.items()}, on_step=True, on_epoch=False)
        self.train_metrics.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        values = self.pair_losses(batch, "val")
        self.val_metrics.update(values, self._weight(batch, values["loss"]))

    def on_validation_epoch_end(self) -> None:
        if self.val_metrics.count:
            values = self.val_metrics.compute()
            self.log_dict({f"val/{k}": v for k, v in values.items()}, prog_bar=False, add_dataloader_idx=False)
        self.val_metrics.reset()

    # --------------------------------------------------------------------------- export
    def metadata(self) -> dict[str, Any]:
        """``dpo.json``: what ``litcpt rewardbench`` needs to score this policy as an implicit reward model."""
        return {
            **self.loss.metadata(),
            "reference_checkpoint_dir": (
                None if self.loss.reference_free else str(Path(os.path.abspath(self.ref_checkpoint_dir)))
            ),
            "policy_init_checkpoint_dir": str(Path(os.path.abspath(self.checkpoint_dir))),
            "precompute_ref": self.reference_logps is not None,
        }

    def litgpt_export(self, state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The policy's weights (a plain LitGPT checkpoint) and ``dpo.json``."""
        return clean_state_dict(state, prefix="model."), {DPO_META_FILE: self.metadata()}
