"""A DPO run: what ``litcpt dpo`` does (its signature, in :mod:`litcpt.commands.dpo`, is the recipe schema).

:func:`run` checks the arguments against the loss (a :class:`~litcpt.losses.preference.DPOLoss`, validated when it was
built), builds the :class:`~litcpt.training.harness.RunSpec` and seeds before the model exists, loads and checks the
preference pairs, optionally precomputes the reference log-probs (:func:`precompute_reference`), builds the
:class:`~litcpt.models.dpo.DPOModel` and trains it with the shared harness.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from litgpt import Config
from litgpt.data import DataModule

from litcpt.losses.preference import DPOLoss
from litcpt.runtime.checkpoint import check_checkpoint_dir, load_config
from litcpt.runtime.optim import OptimizerArg
from litcpt.runtime.quiet import quiet_third_party
from litcpt.runtime.tokenizers import load_checked_tokenizer
from litcpt.training.args import EvalArgs, TrainArgs
from litcpt.training.harness import LoggerName, Resume, RunSpec, fit

__all__ = ["DEFAULT_OPTIMIZER", "ReferenceLoaders", "check_data", "cli_validate", "epoch_steps",
           "precompute_reference", "run"]

DEFAULT_OPTIMIZER: dict[str, Any] = {"class_path": "torch.optim.AdamW",
                                     "init_args": {"lr": 5.0e-7, "weight_decay": 0.0, "betas": [0.9, 0.999]}}
"""The optimizer of a DPO run when the recipe gives none (TRL's DPO defaults: AdamW, lr 5e-7, no weight decay)."""


def epoch_steps(num_pairs: int, train: TrainArgs, world_size: int) -> int:
    """Optimizer steps in one pass over ``num_pairs`` training pairs (the last accumulation may be partial)."""
    batches_per_rank = math.ceil(math.ceil(num_pairs / train.micro_batch_size) / world_size)
    return max(1, math.ceil(batches_per_rank / train.accumulation(world_size)))


def _copy_optimizer(optimizer: OptimizerArg | dict | None) -> OptimizerArg | dict:
    """A private copy (litgpt's ``instantiate_torch_optimizer`` updates ``init_args`` in place); None -> the default."""
    return copy.deepcopy(DEFAULT_OPTIMIZER if optimizer is None else optimizer)


def check_data(data: DataModule) -> None:
    """Padding side, and every pair has a response token to score (see ``litcpt.models.dpo_checks.check_scorable``)."""
    from litcpt.models.dpo_checks import check_scorable

    if getattr(data, "padding_side", "right") != "right":
        raise ValueError(f"data.padding_side: expected 'right' (litgpt models take no attention mask), got "
                         f"{data.padding_side!r}")
    for split, name in (("train", "train_dataset"), ("val", "test_dataset")):
        dataset = getattr(data, name, None)
        if dataset is not None and hasattr(dataset, "items"):
            if split == "train" and not len(dataset):
                raise ValueError("data: no training pairs left after loading and truncation")
            check_scorable(dataset.items, source=f"{split} data")


class ReferenceLoaders(L.LightningDataModule):
    """The train and val loaders of a set-up preference DataModule, as the two predict loaders of the reference
    pass."""

    def __init__(self, pairs: DataModule) -> None:
        super().__init__()
        self.pairs = pairs

    def setup(self, stage: str) -> None:
        self.pairs.setup()

    def predict_dataloader(self) -> list:
        return [self.pairs.train_dataloader(), self.pairs.val_dataloader()]


def precompute_reference(spec: RunSpec, data: DataModule, ref_dir: Path, *, average_logps: bool,
                         ld_alpha: float | None = None):
    """Reference log-probs of every train/val pair: loaded from ``<out_dir>/ref_logps.pt`` if it was computed from
    the same reference and data, else one ``Trainer.predict`` pass (:func:`litcpt.runtime.inference.predict_trainer`:
    same devices, strategy and precision as the training run) that writes it. The reference model is freed before
    training starts."""
    from litcpt.models.dpo_reference import REF_LOGPS_FILE, ReferenceLogps, ReferenceLogpsModule, reference_meta
    from litcpt.runtime.inference import predict_trainer

    datasets = {"train": getattr(data, "train_dataset", None), "val": getattr(data, "test_dataset", None)}
    meta = reference_meta(ref_dir, average_logps=average_logps, datasets=datasets, ld_alpha=ld_alpha)
    cache_path = spec.out_dir / REF_LOGPS_FILE
    reusable = all(fp is not None for _, fp in meta["data"].values()) and len(meta["data"]) == 2
    if reusable and cache_path.is_file():
        cached = ReferenceLogps.load(cache_path)
        if cached.meta == meta:
            print(f"Reference log-probs: reusing {cache_path}")
            return cached

    sizes = {split: len(ds) for split, ds in datasets.items() if ds is not None}
    # pair indices are positions in the loaded file: with truncation="drop" some are missing, the table spans them all
    expected = {split: [int(item.index) for item in ds.items] for split, ds in datasets.items()
                if ds is not None and hasattr(ds, "items")}
    sizes.update({split: max(max(indices, default=-1) + 1, sizes[split]) for split, indices in expected.items()})
    module = ReferenceLogpsModule(load_config(ref_dir), checkpoint_dir=ref_dir, average_logps=average_logps,
                                  sizes=sizes, meta=meta, cache_path=cache_path, ld_alpha=ld_alpha,
                                  expected=expected, fused_head=spec.train.fused_head, defer_init=spec.sharded)
    trainer = predict_trainer(accelerator=spec.accelerator, devices=spec.num_devices, num_nodes=spec.num_nodes,
                              strategy=spec.strategy, world_size=spec.world_size,
                              precision=spec.resolved_precision(), default_root_dir=spec.out_dir)
    trainer.predict(module, datamodule=ReferenceLoaders(data), return_predictions=False)
    result = module.result
    del module, trainer
    if result is None:
        raise RuntimeError("reference log-probs: the predict pass produced no result")
    return result


def _check_reference_options(loss: DPOLoss, checkpoint_dir: Path, ref_checkpoint_dir: Path | None, *,
                             precompute_ref: bool, sync_ref_model: bool) -> Path | None:
    """The reference arguments against the loss; returns the checked ``ref_checkpoint_dir`` (None: the policy's)."""
    from litcpt.models.dpo_checks import check_reference_compatible

    if loss.reference_free:
        for name, value in (("ref_checkpoint_dir", ref_checkpoint_dir), ("precompute_ref", precompute_ref),
                            ("sync_ref_model", sync_ref_model)):
            if value:
                raise ValueError(f"{name}: loss_type {loss.shown} is reference-free (no reference model is loaded); "
                                 "remove it")
    if sync_ref_model and precompute_ref:
        raise ValueError("sync_ref_model: the reference changes during training (TR-DPO), so its log-probs cannot be "
                         "precomputed; set precompute_ref: false")
    if ref_checkpoint_dir is None:
        return None
    ref_checkpoint_dir = check_checkpoint_dir(ref_checkpoint_dir, field="ref_checkpoint_dir")
    check_reference_compatible(checkpoint_dir, ref_checkpoint_dir)
    return ref_checkpoint_dir


def cli_validate(*, beta: Any = None, loss_type: Any = "sigmoid", label_smoothing: Any = 0.0,
                 average_logps: Any = False, loss_weights: Any = None, simpo_gamma: Any = 0.5,
                 discopop_tau: Any = 0.05, f_divergence_type: Any = "reverse_kl", f_alpha_divergence_coef: Any = 0.5,
                 use_weighting: Any = False, ld_alpha: Any = None, precompute_ref: bool = False,
                 sync_ref_model: bool = False, **_: Any) -> None:
    """The checks of the loss arguments alone, run by the CLI before anything is read or loaded
    (``dpo --beta -0.1`` is refused at once)."""
    from litcpt.losses.preference import DEFAULT_BETA

    loss = DPOLoss(loss_type=loss_type, loss_weights=loss_weights, beta=DEFAULT_BETA if beta is None else beta,
                   label_smoothing=label_smoothing, simpo_gamma=simpo_gamma, discopop_tau=discopop_tau,
                   f_divergence_type=f_divergence_type, f_alpha_divergence_coef=f_alpha_divergence_coef,
                   use_weighting=use_weighting, ld_alpha=ld_alpha, average_logps=average_logps)
    _check_reference_options(loss, Path("."), None, precompute_ref=precompute_ref, sync_ref_model=sync_ref_model)


def _load_pairs(data: DataModule | None, tokenizer: Any, train: TrainArgs, seq_length: int,
                world_size: int) -> tuple[DataModule, int]:
    """The connected, set-up and checked preference data, and the run's optimizer steps (default: one epoch)."""
    if data is None:
        from litcpt.data.preference.datamodule import Preference

        data = Preference()
    data.connect(tokenizer=tokenizer, batch_size=train.micro_batch_size, max_seq_length=seq_length)
    data.setup()
    check_data(data)
    if train.max_steps is not None:
        return data, int(train.max_steps)
    train_pairs = len(data.train_dataset) if getattr(data, "train_dataset", None) is not None else None
    if train_pairs is None:
        raise ValueError("train.max_steps: required for a data module without a train_dataset to count pairs in")
    return data, epoch_steps(train_pairs, train, world_size)


def _sequence_length(config: Config, train: TrainArgs) -> int:
    seq_length = train.max_seq_length or config.block_size
    if seq_length > config.block_size:
        raise ValueError(f"train.max_seq_length={seq_length} exceeds the model's block_size {config.block_size}")
    return seq_length


def run(
    *,
    checkpoint_dir: Path,
    ref_checkpoint_dir: Path | None,
    out_dir: Path,
    beta: float,
    loss_type: Any,
    label_smoothing: float,
    average_logps: bool,
    loss_weights: list[float] | None,
    simpo_gamma: float,
    discopop_tau: float,
    f_divergence_type: str,
    f_alpha_divergence_coef: float,
    use_weighting: bool,
    ld_alpha: float | None,
    precompute_ref: bool,
    sync_ref_model: bool,
    ref_model_mixup_alpha: float,
    ref_model_sync_steps: int,
    data: DataModule | None,
    train: TrainArgs,
    eval: EvalArgs,
    lr_schedule: Callback | None,
    optimizer: OptimizerArg | None,
    devices: int | str,
    num_nodes: int,
    strategy: str,
    precision: str | None,
    logger_name: LoggerName,
    seed: int,
    accelerator: str,
    resume: Resume,
    dry_run: bool,
) -> Path:
    """Train a policy with the DPO-family loss the arguments describe (see :func:`litcpt.commands.dpo.setup` for the
    arguments, which have their defaults there); returns the path of the final LitGPT checkpoint dir of the policy."""
    from litcpt.callbacks.sync_reference import SyncReference
    from litcpt.models.dpo import DPOModel

    checkpoint_dir = check_checkpoint_dir(checkpoint_dir, field="checkpoint_dir")
    loss = DPOLoss(loss_type=loss_type, loss_weights=loss_weights, beta=beta, label_smoothing=label_smoothing,
                   simpo_gamma=simpo_gamma, discopop_tau=discopop_tau, f_divergence_type=f_divergence_type,
                   f_alpha_divergence_coef=f_alpha_divergence_coef, use_weighting=use_weighting, ld_alpha=ld_alpha,
                   average_logps=average_logps)  # the loss spec, validated once
    ref_checkpoint_dir = _check_reference_options(loss, checkpoint_dir, ref_checkpoint_dir,
                                                  precompute_ref=precompute_ref, sync_ref_model=sync_ref_model)
    sync = SyncReference(alpha=ref_model_mixup_alpha, sync_steps=ref_model_sync_steps) if sync_ref_model else None
    if train.max_tokens is not None and train.max_steps is None:
        raise ValueError("train.max_tokens: not used by dpo (pairs vary in length); set train.max_steps or leave both "
                         "unset for one epoch")
    config = load_config(checkpoint_dir)
    tokenizer = load_checked_tokenizer(checkpoint_dir, config, field="checkpoint_dir")
    # batch sizes must divide: fails before any data work
    spec = RunSpec(out_dir=out_dir, train=train, eval=eval, devices=devices, num_nodes=num_nodes, strategy=strategy,
                   precision=precision, logger_name=logger_name, seed=seed, resume=resume, tokenizer_dir=checkpoint_dir,
                   accelerator=accelerator)
    spec.seed_everything()  # before the model is built: the same fresh weights on every rank
    seq_length = _sequence_length(config, train)
    if dry_run:
        from litcpt.training.dry_run import print_dry_run

        print_dry_run(config, spec, kind="dpo", seq_length=seq_length, optimizer=_copy_optimizer(optimizer),
                      frozen_reference=not precompute_ref and not loss.reference_free)
        return spec.out_dir / "final"

    data, max_steps = _load_pairs(data, tokenizer, train, seq_length, spec.world_size)
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    ref_dir = ref_checkpoint_dir if ref_checkpoint_dir is not None else checkpoint_dir
    reference_logps = (precompute_reference(spec, data, ref_dir, average_logps=loss.average_logps,
                                            ld_alpha=loss.ld_alpha) if precompute_ref else None)
    module = DPOModel(config, checkpoint_dir=checkpoint_dir, ref_checkpoint_dir=ref_checkpoint_dir,
                      reference_logps=reference_logps, **loss.arguments(), optimizer=_copy_optimizer(optimizer),
                      activation_checkpointing=train.activation_checkpointing, compile=train.compile,
                      fused_head=train.fused_head, defer_init=spec.sharded)
    spec.callbacks = [train.lr_schedule(lr_schedule, "dpo"), *([sync] if sync is not None else [])]
    quiet_third_party(frozen_modules=True)  # the reference model stays in eval mode on purpose
    fit(module, data, spec, max_steps=max_steps)
    return spec.out_dir / "final"
