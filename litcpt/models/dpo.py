"""Direct Preference Optimization: a trainable policy against a frozen reference (Rafailov et al., 2023).

:class:`DPOModel` owns the policy (``self.model``, from ``checkpoint_dir``) and, unless reference log-probs were
precomputed, a frozen reference (``self.ref_model``: a copy of the starting checkpoint or ``ref_checkpoint_dir``; eval
mode, ``requires_grad_(False)``, run under ``no_grad``). Each batch holds ``B`` pairs as ``2B`` rows (chosen rows
first, :func:`litcpt.data.preference.collate_preference`); each model runs **one** forward over the ``2B`` rows.
The loss is :func:`litcpt.losses.dpo` (any of TRL's DPO ``loss_type``\ s, reference-free ``simpo``, or a weighted
list such as MPO; WPO weights, LD-DPO, f-divergences) on the summed (or, ``average_logps=True``, length-averaged)
response log-probs of :func:`litcpt.models.logprobs.sequence_logps` (per-token log-probs from the same single
forward when the loss needs them: ``sft``, ``use_weighting``, ``ld_alpha``). ``bco_pair``'s running mean lives in
buffers (checkpointed); reference-free losses build no reference model; TR-DPO syncing is
:class:`litcpt.callbacks.sync_reference.SyncReference`.

Precomputed reference (``reference_logps=``): :class:`ReferenceLogps` holds ``log π_ref`` of every pair of the train
and val sets, keyed by the pair ``index`` of the batch; it is computed once before training by
:class:`ReferenceLogpsModule` (``Trainer.predict``, same strategy as training) and cached in the run dir, and the
reference model is then never built for training.

Metrics (torchmetrics, synced across ranks, excluding the duplicate pairs that even out ranks), TRL's names with a
``train/`` or ``val/`` prefix: ``loss``, ``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracies`` (strict
``r_c > r_r``, as TRL), ``rewards/margins``, ``logps/chosen``, ``logps/rejected`` — rewards are the implicit
``β (log π − log π_ref)``, logps the policy's. Training metrics are means over the micro-batches of each optimizer
step; validation metrics are means over the validation pairs.

Export: ``lit_model.pth`` is the policy alone (a plain LitGPT checkpoint), plus ``dpo.json`` (β, loss, reference
dir) so that ``litcpt rewardbench`` finds the reference.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from litgpt import Config
from torch import Tensor
from torchmetrics import MeanMetric

from litcpt import losses
from litcpt.checkpoint import atomic_torch_save, clean_state_dict, load_config
from litcpt.models.base import GPTModule, build_gpt
from litcpt.models.logprobs import masked_logps, response_logps, sequence_logps, token_logps

__all__ = [
    "DPO_META_FILE",
    "DPOMetrics",
    "DPOModel",
    "REF_LOGPS_FILE",
    "ReferenceLogps",
    "ReferenceLogpsModule",
    "check_reference_compatible",
    "check_scorable",
    "dataset_fingerprint",
    "read_dpo_metadata",
]

LossType = Literal["sigmoid", "ipo", "hinge", "robust", "exo_pair", "bco_pair", "sppo_hard", "nca_pair", "aot",
                   "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm", "simpo", "sft"]
FDivergence = Literal["reverse_kl", "forward_kl", "js_divergence", "alpha_divergence"]
DPO_META_FILE = "dpo.json"
REF_LOGPS_FILE = "ref_logps.pt"
_REF_PREFIX = "ref_model."


# ------------------------------------------------------------------------------------------------ input checks
def _tokenizer_identity(path: Path) -> tuple[str, Any] | None:
    """What defines a tokenizer dir's vocabulary: the model + added tokens of ``tokenizer.json``, else the bytes of
    ``tokenizer.model``."""
    if (path / "tokenizer.json").is_file():
        try:
            raw = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path / 'tokenizer.json'}: not valid JSON ({err})") from None
        return "tokenizer.json", (raw.get("model"), raw.get("added_tokens"))
    if (path / "tokenizer.model").is_file():
        return "tokenizer.model", hashlib.sha256((path / "tokenizer.model").read_bytes()).hexdigest()
    return None


def check_reference_compatible(policy_dir: Path | str, ref_dir: Path | str, *, policy_field: str = "checkpoint_dir",
                               ref_field: str = "ref_checkpoint_dir") -> None:
    """Raise a one-line ``ValueError`` naming both dirs if the policy and the reference cannot be compared token by
    token: different vocabulary sizes in ``model_config.yaml`` or different tokenizers."""
    policy_dir, ref_dir = Path(policy_dir), Path(ref_dir)
    a, b = load_config(policy_dir), load_config(ref_dir)
    for name in ("vocab_size", "padded_vocab_size"):
        if getattr(a, name) != getattr(b, name):
            raise ValueError(f"{policy_field} {str(policy_dir)!r} and {ref_field} {str(ref_dir)!r} have different "
                             f"{name} ({getattr(a, name)} vs {getattr(b, name)}): the reference must share the "
                             "policy's tokenizer")
    ta, tb = _tokenizer_identity(policy_dir), _tokenizer_identity(ref_dir)
    if ta is not None and tb is not None and ta != tb:
        raise ValueError(f"{policy_field} {str(policy_dir)!r} and {ref_field} {str(ref_dir)!r} have different "
                         f"tokenizers ({ta[0]} vs {tb[0]} differ): the reference must share the policy's tokenizer")


def check_scorable(items: Sequence[Any], *, source: str = "data") -> None:
    """Raise a ``ValueError`` naming the first pair whose chosen or rejected sequence has no response token that
    can be scored (a response token at position 0 has no prediction: this happens only when truncation removed the
    whole prompt and left a single response token). ``items`` are :class:`~litcpt.data.preference.TokenizedPair`."""
    for item in items:
        for name, ids, prompt_length in (("chosen", item.chosen_ids, item.chosen_prompt_length),
                                         ("rejected", item.rejected_ids, item.rejected_prompt_length)):
            if len(ids) - max(int(prompt_length), 1) < 1:
                raise ValueError(f"{source}: pair {item.index} ({name}): no response token left to score after "
                                 f"truncation ({prompt_length} prompt tokens, {len(ids) - prompt_length} response "
                                 "tokens); raise max_length or use truncation='left'")


def dataset_fingerprint(dataset: Any) -> str | None:
    """sha256 of a :class:`~litcpt.data.preference.PreferenceDataset`'s token ids (None for other datasets)."""
    items = getattr(dataset, "items", None)
    if items is None:
        return None
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.index}:{item.chosen_prompt_length}:{item.rejected_prompt_length}:".encode())
        digest.update(item.chosen_ids.numpy().tobytes())
        digest.update(b"|")
        digest.update(item.rejected_ids.numpy().tobytes())
    return digest.hexdigest()


def read_dpo_metadata(checkpoint_dir: Path | str) -> dict[str, Any] | None:
    """The ``dpo.json`` written next to a DPO policy checkpoint, or None."""
    path = Path(checkpoint_dir) / DPO_META_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg})") from None


# --------------------------------------------------------------------------------------------------- metrics
class DPOMetrics(torch.nn.Module):
    """TRL's DPO metrics as torchmetrics means (synced across ranks on ``compute``)."""

    NAMES = ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
             "logps/rejected")

    def __init__(self, extra: Sequence[str] = ()) -> None:
        super().__init__()
        self.names = tuple(self.NAMES) + tuple(extra)
        self.means = torch.nn.ModuleDict({name.replace("/", "_"): MeanMetric() for name in self.names})

    def update(self, values: Mapping[str, Tensor], weight: Tensor | None = None) -> None:
        """``values``: per-pair tensors ``[B]`` for every name; ``weight``: 0 for pairs not to count."""
        for name in self.names:
            value = values[name].detach().float()
            self.means[name.replace("/", "_")].update(value, 1.0 if weight is None else weight.to(value))

    @property
    def count(self) -> int:
        return int(self.means["loss"].update_count)

    def compute(self) -> dict[str, Tensor]:
        return {name: self.means[name.replace("/", "_")].compute() for name in self.names}

    def reset(self) -> None:
        for metric in self.means.values():
            metric.reset()


def pair_values(losses_: Tensor, r_chosen: Tensor, r_rejected: Tensor, pc: Tensor, pr: Tensor) -> dict[str, Tensor]:
    """Per-pair values of :class:`DPOMetrics` from the outputs of :func:`litcpt.losses.dpo` and the policy logps."""
    return {"loss": losses_, "rewards/chosen": r_chosen, "rewards/rejected": r_rejected,
            "rewards/accuracies": (r_chosen > r_rejected).float(), "rewards/margins": r_chosen - r_rejected,
            "logps/chosen": pc, "logps/rejected": pr}


# ------------------------------------------------------------------------------------- precomputed reference
@dataclass
class ReferenceLogps:
    """Reference log-probs per split (``"train"``, ``"val"``): ``tables[split][index] = (chosen, rejected)``.

    ``meta`` says what they were computed from (reference dir, ``average_logps``, data fingerprint, sizes), so a
    cache file is reused only for the same reference and the same tokenised pairs.
    """

    tables: dict[str, Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    def lookup(self, split: str, index: Tensor) -> tuple[Tensor, Tensor]:
        """(chosen, rejected) reference log-probs ``[B]`` of the pairs ``index`` (on ``index``'s device)."""
        if split not in self.tables:
            raise ValueError(f"reference log-probs: no precomputed values for the {split!r} pairs "
                             f"(have {sorted(self.tables)})")
        table = self.tables[split]
        if table.device != index.device:
            table = self.tables[split] = table.to(index.device)
        rows = table[index.long()]
        return rows[:, 0], rows[:, 1]

    def save(self, path: Path | str) -> Path:
        atomic_torch_save({"format": 1, "meta": self.meta, "tables": {k: v.cpu() for k, v in self.tables.items()}},
                          path)
        return Path(path)

    @classmethod
    def load(cls, path: Path | str) -> ReferenceLogps:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
            return cls(tables=dict(raw["tables"]), meta=dict(raw["meta"]))
        except Exception as err:  # noqa: BLE001 - one line naming the file
            raise ValueError(f"{path}: not a reference log-prob cache ({type(err).__name__}: {err})") from None


def reference_meta(ref_dir: Path, *, average_logps: bool, datasets: Mapping[str, Any],
                   ld_alpha: float | None = None) -> dict[str, Any]:
    """What a :class:`ReferenceLogps` depends on: the reference weights, ``average_logps`` (and LD-DPO's
    ``ld_alpha``) and the tokenised data."""
    weights = Path(ref_dir) / "lit_model.pth"
    stat = weights.stat()
    meta = {"reference": str(Path(ref_dir).resolve()), "weights": [stat.st_size, stat.st_mtime_ns],
            "average_logps": bool(average_logps),
            "data": {split: [len(ds), dataset_fingerprint(ds)] for split, ds in datasets.items() if ds is not None}}
    if ld_alpha is not None:
        meta["ld_alpha"] = float(ld_alpha)
    return meta


def _gather_objects(obj: Any) -> list[Any]:
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class ReferenceLogpsModule(GPTModule):
    """``Trainer.predict`` over ``[train_loader, val_loader]`` with the frozen reference: fills :attr:`result`
    (a :class:`ReferenceLogps`, identical on every rank) and writes it to ``cache_path`` on rank 0.

    Uses :func:`sequence_logps`, the same function as the on-the-fly reference in :class:`DPOModel`.
    """

    hparams_ignore = ("expected",)  # pair indices of every split: not a hyperparameter

    def __init__(self, config: Config, *, checkpoint_dir: Path, average_logps: bool = False,
                 split_names: Sequence[str] = ("train", "val"), sizes: Mapping[str, int] | None = None,
                 meta: Mapping[str, Any] | None = None, cache_path: Path | None = None,
                 ld_alpha: float | None = None, expected: Mapping[str, Sequence[int]] | None = None,
                 defer_init: bool = False) -> None:
        super().__init__(config, checkpoint_dir=checkpoint_dir, defer_init=defer_init)
        # pair indices each split must have (pairs dropped by truncation="drop" leave gaps in the index range)
        self.expected = {split: torch.as_tensor(list(v), dtype=torch.long) for split, v in (expected or {}).items()}
        self.model.eval().requires_grad_(False)
        self.average_logps = average_logps
        self.ld_alpha = ld_alpha
        self.split_names = tuple(split_names)
        self.sizes = dict(sizes or {})
        self.meta = dict(meta or {})
        self.cache_path = cache_path
        self._rows: dict[int, list[tuple[Tensor, Tensor, Tensor]]] = {}
        self.result: ReferenceLogps | None = None

    def configure_optimizers(self) -> Any:  # predict only
        return None

    def on_predict_epoch_start(self) -> None:
        self._rows = {i: [] for i in range(len(self.split_names))}

    @torch.no_grad()
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.ld_alpha is not None:  # LD-DPO: the same reweighted sums as DPOModel
            input_ids = batch["input_ids"]
            per_token = token_logps(self.model(input_ids[:, :-1]), input_ids[:, 1:])
            logps = losses.ld_logps(per_token, batch["response_mask"][:, 1:], self.ld_alpha)
        else:
            logps = sequence_logps(self.model, batch["input_ids"], batch["response_mask"],
                                   average=self.average_logps)
        half = logps.shape[0] // 2
        keep = ~batch["is_duplicate"].bool() if "is_duplicate" in batch else torch.ones(half, dtype=torch.bool)
        keep = keep.to(logps.device)
        self._rows.setdefault(dataloader_idx, []).append(
            (batch["index"].to(logps.device)[keep].cpu(), logps[:half][keep].float().cpu(),
             logps[half:][keep].float().cpu()))

    def on_predict_epoch_end(self) -> None:
        gathered = _gather_objects(self._rows)
        tables: dict[str, Tensor] = {}
        for i, split in enumerate(self.split_names):
            parts = [part for rank_rows in gathered for part in rank_rows.get(i, [])]
            index = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, dtype=torch.long)
            size = self.sizes.get(split, int(index.max()) + 1 if index.numel() else 0)
            table = torch.full((size, 2), float("nan"))
            if index.numel():
                table[index, 0] = torch.cat([p[1] for p in parts])
                table[index, 1] = torch.cat([p[2] for p in parts])
            if split in self.expected:
                missing = self.expected[split][torch.isnan(table[self.expected[split]]).any(-1)]
            else:
                missing = torch.isnan(table).any(-1).nonzero().flatten()
            if missing.numel():
                raise RuntimeError(f"reference log-probs: {missing.numel()} {split} pairs were not scored "
                                   f"(first index {int(missing[0])})")
            tables[split] = table
        self.result = ReferenceLogps(tables=tables, meta=self.meta)
        if self.cache_path is not None and self.global_rank == 0:
            self.result.save(self.cache_path)


# ------------------------------------------------------------------------------------------------- the module
class DPOModel(GPTModule):
    """Policy + frozen reference LightningModule trained with the DPO loss (see the module docstring).

    Args:
        config: litgpt config of the policy.
        checkpoint_dir: LitGPT checkpoint dir the policy starts from (required).
        ref_checkpoint_dir: the reference (default: ``checkpoint_dir``, i.e. a frozen copy of the start).
        beta: DPO temperature β > 0 (strength of the KL regularisation towards the reference).
        loss_type: one of :data:`litcpt.losses.DPO_LOSS_TYPES` or a list of them (see :func:`litcpt.losses.dpo`);
            with a list, each component is also logged as ``loss/<type>``. ``simpo`` (alone or with ``sft``) is
            reference-free: no reference model is built and the log-probs are length-averaged.
        label_smoothing: ε of ``sigmoid`` (cDPO), ``robust``, ``exo_pair``, ``aot``, ``aot_unpaired``, ``simpo``.
        loss_weights: one weight per loss type (default 1.0 each), e.g. MPO ``[0.8, 0.2, 1.0]``.
        average_logps: length-average the response log-probs instead of summing them.
        reference_logps: precomputed reference log-probs; then no reference model is built.
        simpo_gamma, discopop_tau, f_divergence_type, f_alpha_divergence_coef: as in :func:`litcpt.losses.dpo`.
        use_weighting: WPO: multiply each pair's loss by the (detached) length-normalised probabilities of its two
            responses under the policy, relative to the policy's own sampling (:func:`litcpt.losses.wpo_weights`).
        ld_alpha: LD-DPO: response tokens past the shorter response of the pair count ``ld_alpha`` (None: off).
        optimizer, activation_checkpointing, tie_embeddings: as for every litcpt module.
    """

    def __init__(self, config: Config, *, checkpoint_dir: Path, ref_checkpoint_dir: Path | None = None,
                 beta: float = 0.1, loss_type: LossType | Sequence[LossType] = "sigmoid", label_smoothing: float = 0.0,
                 average_logps: bool = False, reference_logps: ReferenceLogps | None = None,
                 loss_weights: Sequence[float] | None = None, simpo_gamma: float = 0.5, discopop_tau: float = 0.05,
                 f_divergence_type: FDivergence = "reverse_kl", f_alpha_divergence_coef: float = 0.5,
                 use_weighting: bool = False, ld_alpha: float | None = None, **kwargs: Any) -> None:
        if checkpoint_dir is None:
            raise ValueError("checkpoint_dir: DPO starts from a trained LitGPT checkpoint, got None")
        types, weights = losses.parse_loss_types(loss_type, loss_weights)
        self.reference_free = set(types) <= losses.REFERENCE_FREE_LOSS_TYPES
        if ld_alpha is not None:
            losses.ld_logps(torch.zeros(2, 1), torch.ones(2, 1), ld_alpha)  # range check
            if average_logps:
                raise ValueError("ld_alpha: LD-DPO reweights summed log-probs; it cannot be combined with "
                                 "average_logps: true")
        if "sigmoid_norm" in types and average_logps:
            raise ValueError("loss_type 'sigmoid_norm' divides by the response lengths itself; set average_logps: "
                             "false")
        self.options: dict[str, Any] = {"simpo_gamma": float(simpo_gamma), "discopop_tau": float(discopop_tau),
                                        "f_divergence_type": f_divergence_type,
                                        "f_alpha_divergence_coef": float(f_alpha_divergence_coef)}
        zero, one = torch.zeros(1), torch.ones(1)
        ref_zero = None if self.reference_free else zero
        losses.dpo(zero, zero, ref_zero, ref_zero, beta=beta, loss_type=types, loss_weights=weights,
                   label_smoothing=label_smoothing, chosen_lengths=one, rejected_lengths=one, sft_nll=zero[0],
                   pair_weights=one if use_weighting else None, **self.options)
        super().__init__(config, checkpoint_dir=checkpoint_dir, **kwargs)
        self.beta, self.label_smoothing = float(beta), float(label_smoothing)
        self.loss_types, self.loss_weights = types, weights
        self.loss_type: Any = types[0] if isinstance(loss_type, str) else list(types)
        self.use_weighting, self.ld_alpha = bool(use_weighting), (None if ld_alpha is None else float(ld_alpha))
        # SimPO scores length-averaged log-probs (TRL's CPOTrainer does the same)
        self.average_logps = bool(average_logps) or "simpo" in types
        self.ref_checkpoint_dir = Path(ref_checkpoint_dir) if ref_checkpoint_dir is not None else Path(checkpoint_dir)
        self.reference_logps = reference_logps
        self.ref_model: torch.nn.Module | None = None
        # bco_pair's δ: running mean of the batch-mean implicit reward over training steps (saved in checkpoints)
        self.register_buffer("bco_running_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("bco_running_count", torch.zeros((), dtype=torch.long))
        if self.reference_free:
            if reference_logps is not None:
                raise ValueError(f"loss_type {list(types)}: reference-free; there is no reference to precompute")
        elif reference_logps is None:
            ref_config = load_config(self.ref_checkpoint_dir) if ref_checkpoint_dir is not None else config
            if ref_config.padded_vocab_size != config.padded_vocab_size:
                raise ValueError(f"checkpoint_dir {str(checkpoint_dir)!r} and ref_checkpoint_dir "
                                 f"{str(self.ref_checkpoint_dir)!r} have different padded_vocab_size "
                                 f"({config.padded_vocab_size} vs {ref_config.padded_vocab_size})")
            if kwargs.get("defer_init") and not kwargs.get("tie_embeddings"):
                self.ref_model = self.deferred_gpt("ref_model", ref_config, self.ref_checkpoint_dir,
                                                   field="ref_checkpoint_dir")
            else:
                self.ref_model = build_gpt(ref_config, checkpoint_dir=self.ref_checkpoint_dir,
                                           field="ref_checkpoint_dir")
            self.ref_model.eval().requires_grad_(False)
        extra = tuple(f"loss/{name}" for name in types) if len(types) > 1 else ()
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

        from litcpt.strategies import apply_fsdp2

        first = not getattr(self, "_litcpt_configured", False) and self._trainer is not None
        super().configure_model()
        if (first and self.ref_model is not None and "ref_model" not in self.weight_sources
                and isinstance(self.trainer.strategy, ModelParallelStrategy)):  # a meta ref is sharded by super()
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
    @property
    def _needs_tokens(self) -> bool:
        """Whether the loss reads per-token log-probs (SFT term, WPO weights, LD-DPO), not only their sums."""
        return "sft" in self.loss_types or self.use_weighting or self.ld_alpha is not None

    def _sequence(self, per_token: Tensor, mask: Tensor) -> Tensor:
        if self.ld_alpha is not None:
            return losses.ld_logps(per_token, mask, self.ld_alpha)
        return masked_logps(per_token, mask, average=self.average_logps)

    def _head_on_responses_only(self, model: torch.nn.Module) -> bool:
        """Whether ``model`` may run its LM head on the response positions only (no logits for prompt tokens): a
        plain litgpt ``GPT`` (:func:`~litcpt.models.logprobs.supports_fast_inference`) outside FSDP (whose root unit
        holds the head's sharded weight only during the model's own forward)."""
        from litcpt.models.logprobs import supports_fast_inference

        if not supports_fast_inference(model):
            return False
        trainer = self._trainer
        if trainer is None:
            return True
        from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

        return not isinstance(trainer.strategy, (FSDPStrategy, ModelParallelStrategy))

    def policy_logps(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        """(chosen, rejected) response log-probs under the policy, one forward over the ``2B`` rows (the LM head only
        on the positions that predict response tokens where :meth:`_head_on_responses_only` allows)."""
        if self._needs_tokens:
            return self._policy_tokens(batch)[:2]
        if self._head_on_responses_only(self.model):
            logps = response_logps(self.model, batch["input_ids"], batch["response_mask"],
                                   average=self.average_logps)
        else:
            logps = sequence_logps(self.model, batch["input_ids"], batch["response_mask"],
                                   average=self.average_logps)
        half = logps.shape[0] // 2
        return logps[:half], logps[half:]

    def _policy_tokens(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """(chosen, rejected) sequence log-probs and the token-level extras of the loss (``sft_nll``,
        ``pair_weights``), from one forward over the ``2B`` rows."""
        input_ids, mask = batch["input_ids"], batch["response_mask"][:, 1:]
        logits = self.model(input_ids[:, :-1])
        per_token = token_logps(logits, input_ids[:, 1:])
        half = per_token.shape[0] // 2
        logps = self._sequence(per_token, mask)
        extras: dict[str, Tensor] = {}
        if "sft" in self.loss_types:
            extras["sft_nll"] = losses.sft_nll(per_token[:half], mask[:half])
        if self.use_weighting:
            with torch.no_grad():
                log_probs = logits.float().log_softmax(-1)
                log_sum_sq = torch.logsumexp(2.0 * log_probs, dim=-1)
                del log_probs
            weights = losses.wpo_weights(per_token.detach(), log_sum_sq, mask)
            extras["pair_weights"] = weights[:half] * weights[half:]
        return logps[:half], logps[half:], extras

    def ref_logps(self, batch: Mapping[str, Any], split: str) -> tuple[Tensor, Tensor]:
        """(chosen, rejected) reference log-probs: precomputed (looked up by pair ``index``) or one no-grad forward."""
        if self.reference_logps is not None:
            return self.reference_logps.lookup(split, batch["index"].to(self.device))
        assert self.ref_model is not None
        with torch.no_grad():
            if self.ld_alpha is not None:
                input_ids = batch["input_ids"]
                per_token = token_logps(self.ref_model(input_ids[:, :-1]), input_ids[:, 1:])
                logps = self._sequence(per_token, batch["response_mask"][:, 1:])
            else:
                fn = response_logps if self._head_on_responses_only(self.ref_model) else sequence_logps
                logps = fn(self.ref_model, batch["input_ids"], batch["response_mask"], average=self.average_logps)
        half = logps.shape[0] // 2
        return logps[:half].detach(), logps[half:].detach()

    def pair_losses(self, batch: Mapping[str, Any], split: str = "train") -> dict[str, Tensor]:
        """Per-pair loss, implicit rewards and policy logps of a batch (see :class:`DPOMetrics` for the keys; with
        several loss types also ``loss/<type>``, unweighted). In training, ``bco_pair``'s running mean is updated
        with this batch before its loss is computed (as TRL 0.28 does)."""
        if self._needs_tokens:
            pc, pr, extras = self._policy_tokens(batch)
        else:
            (pc, pr), extras = self.policy_logps(batch), {}
        if self.reference_free:
            rc = rr = None
        else:
            rc, rr = self.ref_logps(batch, split)
            rc, rr = rc.to(pc), rr.to(pr)
        if "sigmoid_norm" in self.loss_types:
            lengths = batch["response_mask"].sum(-1).to(pc)
            extras["chosen_lengths"], extras["rejected_lengths"] = lengths[:pc.shape[0]], lengths[pc.shape[0]:]
        if "bco_pair" in self.loss_types:
            if split == "train" and self.training:
                self._update_bco_mean(pc.detach() - rc, pr.detach() - rr, self._weight(batch, pc))
            extras["bco_delta"] = self.bco_running_mean
        terms, r_chosen, r_rejected = losses.dpo_terms(pc, pr, rc, rr, beta=self.beta, loss_type=self.loss_types,
                                                       label_smoothing=self.label_smoothing, **self.options,
                                                       **extras)
        per_pair = sum(w * terms[name] for name, w in zip(self.loss_types, self.loss_weights))
        values = pair_values(per_pair, r_chosen, r_rejected, pc.detach(), pr.detach())
        if len(self.loss_types) > 1:
            values.update({f"loss/{name}": term.detach() for name, term in terms.items()})
        return values

    @torch.no_grad()
    def _update_bco_mean(self, chosen_logratios: Tensor, rejected_logratios: Tensor, weight: Tensor) -> None:
        """Fold this step's mean implicit reward (over every rank's real pairs) into ``bco_running_mean``."""
        w = torch.cat([weight, weight]).double()
        rewards = self.beta * torch.cat([chosen_logratios, rejected_logratios]).double()
        total = torch.stack([(rewards * w).sum(), w.sum()])
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(total)
        if total[1] > 0:
            mean, count = losses.running_mean_update(self.bco_running_mean, self.bco_running_count,
                                                     total[0] / total[1])
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
        return {"beta": self.beta, "loss_type": self.loss_type, "label_smoothing": self.label_smoothing,
                "loss_weights": list(self.loss_weights), "average_logps": self.average_logps,
                "reference_free": self.reference_free,
                "reference_checkpoint_dir": (None if self.reference_free
                                             else str(Path(os.path.abspath(self.ref_checkpoint_dir)))),
                "policy_init_checkpoint_dir": str(Path(os.path.abspath(self.checkpoint_dir))),
                "precompute_ref": self.reference_logps is not None}

    def litgpt_export(self, state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The policy's weights (a plain LitGPT checkpoint) and ``dpo.json``."""
        return clean_state_dict(state, prefix="model."), {DPO_META_FILE: self.metadata()}
