"""Reward models: a litgpt ``GPT`` whose output layer returns one score, trained on preference pairs.

Two heads (``head=``):

- ``"linear"``: the LM head is replaced by a new ``Linear(n_embd, 1)`` (zero bias, weights ~ N(0, 1/(n_embd+1)),
  as TRL/transformers initialise sequence-classification heads at small scale);
- ``"logit"``: one existing output logit is repurposed — the score is the LM head's logit for token ``token_id``
  (default: the tokenizer's end-of-text token: "how strongly the model thinks the answer is complete and done").
  Only that row of the LM head is trained; the rest of the vocabulary projection is kept for export.

The score of a sequence is the head's output at its last non-padding token. Chosen and rejected sequences go
through the backbone in one forward pass (the batch holds the chosen rows first, then the rejected rows).

Checkpoints (``litgpt_export``) are LitGPT dirs: ``lit_model.pth`` holds the backbone and an LM head (the trained
row patched in for ``logit``; the original head for ``linear``) so the dir still loads as a ``litgpt.GPT``, plus
``reward_head.pth`` and ``reward_model.json``; :func:`load_reward_model` loads them for scoring.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from litgpt import Config

from litcpt._private import attached_trainer
from litcpt.losses.reward import REWARD_LOSSES, RewardLossName
from litcpt.models.base import GPTModule
from litcpt.models.pair_metrics import RewardPairMetrics
from litcpt.runtime.checkpoint import check_checkpoint_dir, clean_state_dict, load_config, load_torch_file

HeadKind = Literal["linear", "logit"]
HEAD_FILE = "reward_head.pth"
META_FILE = "reward_model.json"


def gather_last(hidden: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
    """``hidden[b, last_index[b]]`` for every row: ``[B, T, C]`` -> ``[B, C]``."""
    index = last_index.long().view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
    return hidden.gather(1, index).squeeze(1)


class RewardModel(GPTModule):
    """A LightningModule scoring sequences with a one-output head on a litgpt ``GPT``.

    Args:
        config: litgpt config of the backbone.
        checkpoint_dir: LitGPT checkpoint dir of the backbone (e.g. ``litcpt pretrain``'s ``final/``).
        head: ``"linear"`` (new ``Linear(n_embd, 1)``) or ``"logit"`` (repurpose the logit of ``token_id``).
        token_id: the token whose logit is the reward for ``head="logit"`` (required then).
        loss_type: ``"bradley_terry"`` (pairwise, ``-log σ(r_c - r_r - margin)``), ``"logistic"`` (pointwise BCE
            with chosen = 1, rejected = 0) or ``"plackett_luce"`` (ranked listwise data); the name DPO uses too.
        center_coefficient: reward-centering weight ``c·(r_c + r_r)²`` (TRL's ``center_rewards_coefficient``).
        use_margin: subtract the batch's per-pair ``margin`` inside the Bradley–Terry loss.
        share_prompt: listwise batches (:class:`litcpt.data.Listwise`): run each prompt once for all its
            completions, in training and validation (same scores and gradients up to float rounding; used on a single
            device or DDP without activation checkpointing or ``torch.compile``, else a plain forward). Off by
            default: on CPU the backward through it was slower than a plain forward (``docs/benchmarks.md``).
        optimizer, activation_checkpointing: as for every litcpt module.
    """

    def __init__(self, config: Config, *, checkpoint_dir: Path | None = None, head: HeadKind = "linear",
                 token_id: int | None = None, loss_type: RewardLossName = "bradley_terry",
                 center_coefficient: float = 0.0, use_margin: bool = True, share_prompt: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(config, checkpoint_dir=checkpoint_dir, **kwargs)
        if head not in ("linear", "logit"):
            raise ValueError(f"head: expected 'linear' or 'logit', got {head!r}")
        if loss_type not in REWARD_LOSSES:
            raise ValueError(f"loss_type: expected one of {', '.join(map(repr, REWARD_LOSSES))}, got {loss_type!r}")
        self.head_kind, self.loss_type = head, loss_type
        self.center_coefficient, self.use_margin = float(center_coefficient), use_margin
        lm_head = self.model.lm_head
        # Kept on CPU, outside the module tree: only needed to export a loadable LitGPT checkpoint. A meta-built
        # backbone (defer_init) reads it from the checkpoint at export instead of holding a copy on every rank.
        self._lm_head_state = (None if lm_head.weight.is_meta else
                               {k: v.detach().cpu().clone() for k, v in lm_head.state_dict().items()})
        self._lm_head_names = [f"lm_head.{k}" for k in lm_head.state_dict()]
        self.head = torch.nn.Linear(config.n_embd, 1, bias=True)
        if head == "logit":
            if token_id is None or not 0 <= token_id < lm_head.out_features:
                raise ValueError(f"head_token_id: expected a token id in [0, {lm_head.out_features}), got {token_id}")
            with torch.no_grad():
                self.head.weight.copy_(self.initial_weight("lm_head.weight")[token_id : token_id + 1])
                self.head.bias.copy_(self.initial_weight("lm_head.bias")[token_id] if lm_head.bias is not None
                                     else torch.zeros(()))
        else:
            torch.nn.init.normal_(self.head.weight, std=1.0 / (config.n_embd + 1) ** 0.5)
            torch.nn.init.zeros_(self.head.bias)
        self.token_id = token_id
        self.model.lm_head = torch.nn.Identity()  # the backbone now returns the final hidden states
        self.train_metrics, self.val_metrics = RewardPairMetrics(), RewardPairMetrics()
        from litcpt.losses.listwise import ListwiseMetrics

        self.train_list_metrics, self.val_list_metrics = ListwiseMetrics(), ListwiseMetrics()
        self.share_prompt = bool(share_prompt)

    # ------------------------------------------------------------------ scoring
    def forward(self, input_ids: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
        """Scores ``[B]`` of the sequences ``input_ids [B, T]`` read at ``last_index [B]``."""
        hidden = self.model(input_ids)
        return self.head(gather_last(hidden, last_index)).squeeze(-1).float()

    def pair_scores(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(r_chosen, r_rejected) of a preference batch in one forward pass."""
        scores = self(batch["input_ids"], batch["last_index"])
        half = scores.shape[0] // 2
        return scores[:half], scores[half:]

    def pair_loss(self, r_chosen: torch.Tensor, r_rejected: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The ``loss_type``'s loss of a batch of pairs (:data:`litcpt.losses.reward.REWARD_LOSSES`)."""
        margin = batch.get("margin") if self.use_margin else None
        return REWARD_LOSSES[self.loss_type].pairs(r_chosen, r_rejected, margin, self.center_coefficient)

    # ----------------------------------------------------------------- training
    # ---------------------------------------------------------------- listwise
    def listwise_scores(self, batch: dict[str, Any], *, share_prompt: bool = False) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
        """``(scores [B, K], mask [B, K])`` of a listwise batch
        (:func:`litcpt.data.preference.listwise.collate_listwise`),
        column 0 the chosen completion; ``share_prompt`` computes each prompt once for all its completions
        (:func:`litcpt.models.row_scores.row_rewards`; differentiable)."""
        from litcpt.losses.listwise import to_matrix
        from litcpt.models.row_scores import row_rewards

        scores = row_rewards(self, batch, share_prompt=share_prompt)
        return to_matrix(scores, batch["sizes"])

    def listwise_loss(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``bradley_terry``: mean over each prompt's rejected of the pairwise loss (plus centering over pairs);
        ``plackett_luce``: the ranking's negative log-likelihood; ``logistic``: BCE, chosen 1 and rejected 0
        (:data:`litcpt.losses.reward.REWARD_LOSSES`)."""
        return REWARD_LOSSES[self.loss_type].lists(scores, mask, self.center_coefficient)

    def can_share_prompt(self) -> bool:
        """Whether listwise batches may use the shared-prompt forward: ``share_prompt``, a plain litgpt ``GPT`` with
        plain blocks (no FSDP wrapping, activation checkpointing or compile), on one device or DDP."""
        from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
        from litgpt import GPT
        from litgpt.model import Block

        from litcpt.models.shared_prefix import supports_shared_prefix

        if not self.share_prompt or self.activation_checkpointing or self.compile_model:
            return False
        if type(self.model) is not GPT or not all(type(b) is Block for b in self.model.transformer.h):
            return False
        trainer = attached_trainer(self)
        if trainer is not None and not isinstance(trainer.strategy, (SingleDeviceStrategy, DDPStrategy)):
            return False
        return supports_shared_prefix(self.model)

    def _listwise_training_step(self, batch: dict[str, Any]) -> torch.Tensor:
        scores, mask = self.listwise_scores(batch, share_prompt=self.can_share_prompt())
        loss = self.listwise_loss(scores, mask)
        self.train_list_metrics.update(scores, mask)
        self.log_step_mean("train/loss", loss, prog_bar=True)  # mean over the step's micro-batches and ranks
        return loss

    def _listwise_validation_step(self, batch: dict[str, Any]) -> None:
        scores, mask = self.listwise_scores(batch, share_prompt=self.can_share_prompt())
        keep = ~batch["is_duplicate"].to(scores.device)
        if not bool(keep.any()):
            return
        scores, mask = scores[keep], mask[keep]
        self.val_list_metrics.update(scores, mask)
        self.log("val/loss", self.listwise_loss(scores, mask), on_epoch=True, sync_dist=True,
                 batch_size=scores.shape[0], add_dataloader_idx=False)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if "group" in batch:
            return self._listwise_training_step(batch)
        r_chosen, r_rejected = self.pair_scores(batch)
        loss = self.pair_loss(r_chosen, r_rejected, batch)
        self.train_metrics.update(r_chosen, r_rejected)
        self.log_step_mean("train/loss", loss, prog_bar=True)  # mean over the step's micro-batches and ranks
        return loss

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Once per optimizer step (all its micro-batches done): the step's loss and pair metrics."""
        super().on_before_optimizer_step(optimizer)
        for metrics in (self.train_metrics, self.train_list_metrics):
            if metrics.accuracy.update_count:
                values = metrics.compute()
                self.log_dict({f"train/{k}": v for k, v in values.items()}, on_step=True, on_epoch=False)
            metrics.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        if "group" in batch:
            return self._listwise_validation_step(batch)
        r_chosen, r_rejected = self.pair_scores(batch)
        if "is_duplicate" in batch:  # pairs repeated only to even out ranks are not counted twice
            keep = ~batch["is_duplicate"].to(r_chosen.device)
            r_chosen, r_rejected = r_chosen[keep], r_rejected[keep]
            batch = {**batch, "margin": batch["margin"][keep]} if "margin" in batch else batch
            if r_chosen.numel() == 0:
                return
        self.val_metrics.update(r_chosen, r_rejected)
        self.log("val/loss", self.pair_loss(r_chosen, r_rejected, batch), on_epoch=True, sync_dist=True,
                 batch_size=r_chosen.shape[0], add_dataloader_idx=False)

    def on_validation_epoch_end(self) -> None:
        for metrics in (self.val_metrics, self.val_list_metrics):
            if metrics.accuracy.update_count:
                values = metrics.compute()
                self.log_dict({f"val/{k}": v for k, v in values.items()}, prog_bar=False)
            metrics.reset()

    # ------------------------------------------------------------------- export
    def metadata(self) -> dict[str, Any]:
        return {"head": self.head_kind, "token_id": self.token_id, "loss_type": self.loss_type,
                "base_checkpoint": str(self.checkpoint_dir) if self.checkpoint_dir else None}

    def litgpt_export(self, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """LitGPT weights (backbone + an LM head) and the reward head files, from a full module state dict."""
        weights = clean_state_dict(state, prefix="model.")
        head = {"weight": state["head.weight"], "bias": state["head.bias"]}
        if self._lm_head_state is not None:
            lm_head = {f"lm_head.{k}": v.clone() for k, v in self._lm_head_state.items()}
        else:
            lm_head = {name: self.initial_weight(name).clone() for name in self._lm_head_names}
        if self.head_kind == "logit":
            lm_head["lm_head.weight"][self.token_id] = head["weight"][0].to(lm_head["lm_head.weight"].dtype)
            if "lm_head.bias" in lm_head:
                lm_head["lm_head.bias"][self.token_id] = head["bias"][0]
        weights.update(lm_head)
        return weights, {HEAD_FILE: head, META_FILE: self.metadata()}


def read_reward_meta(checkpoint_dir: Path) -> dict[str, Any] | None:
    """``reward_model.json`` of a reward checkpoint (``litcpt reward``'s ``final/``, ``litcpt import-reward-model``'s
    output); None for a plain LitGPT dir (neither reward file). One-line errors for a dir with only one of the two
    files, or a ``reward_model.json`` that is no ``{"head": "linear" | "logit", ...}``."""
    path = Path(checkpoint_dir)
    has_head, has_meta = (path / HEAD_FILE).is_file(), (path / META_FILE).is_file()
    if not has_head and not has_meta:
        return None
    if not (has_head and has_meta):
        missing = META_FILE if has_head else HEAD_FILE
        raise FileNotFoundError(f"checkpoint_dir: {str(path)!r} has {HEAD_FILE if has_head else META_FILE} but no "
                                f"{missing} (an incomplete reward-model checkpoint)")
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path / META_FILE}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("head") not in ("linear", "logit"):
        raise ValueError(f"{path / META_FILE}: head: expected 'linear' or 'logit', got "
                         f"{meta.get('head') if isinstance(meta, dict) else meta!r}")
    return meta


def load_head_file(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    """The reward head's ``{weight, bias}`` from ``reward_head.pth`` (``torch.load(weights_only=True)``)."""
    return load_torch_file(Path(checkpoint_dir) / HEAD_FILE, field="checkpoint_dir", mmap=False)


def load_reward_model(checkpoint_dir: Path | str, *, device: str | torch.device = "cpu",
                      dtype: torch.dtype | None = None, defer_init: bool = False) -> RewardModel:
    """Load a reward checkpoint written by ``litcpt reward`` for scoring (eval mode, no grad needed).
    ``defer_init``: the backbone stays on the meta device (its weights in ``weight_sources["model"]``, the head loaded;
    ``device`` is ignored), for a strategy to shard before filling it (``litcpt rewardbench --strategy fsdp2``).

    >>> rm = load_reward_model("out/reward/final")            # doctest: +SKIP
    >>> rm(input_ids, last_index)                              # doctest: +SKIP
    """
    path = check_checkpoint_dir(checkpoint_dir, field="checkpoint_dir")
    meta = read_reward_meta(path)
    if meta is None:
        raise FileNotFoundError(f"checkpoint_dir: {str(path)!r} is not a reward-model checkpoint "
                                f"(missing {HEAD_FILE} or {META_FILE}; train one with `litcpt reward`)")
    model = RewardModel(load_config(path), checkpoint_dir=path, head=meta["head"], token_id=meta.get("token_id"),
                        defer_init=defer_init)
    model.head.load_state_dict(load_head_file(path))
    model.checkpoint_dir = Path(meta.get("base_checkpoint") or path)
    model.eval().requires_grad_(False)
    if defer_init:
        return model.to(dtype=dtype) if dtype is not None else model
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)


