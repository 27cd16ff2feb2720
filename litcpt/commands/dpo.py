"""``litcpt dpo``: Direct Preference Optimization of a LitGPT checkpoint (the signature is the recipe schema)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Optional, Union

from lightning.pytorch.callbacks import Callback
from litgpt.data import DataModule

from litcpt.losses.preference import DEFAULT_BETA
from litcpt.runtime.checkpoint import check_checkpoint_dir, load_config
from litcpt.runtime.optim import OptimizerArg
from litcpt.runtime.strategies import StrategyName
from litcpt.runtime.tokenizers import load_checked_tokenizer
from litcpt.training.args import EvalArgs, TrainArgs
from litcpt.training.harness import LoggerName, Resume, RunSpec, fit

DEFAULT_OPTIMIZER: dict[str, Any] = {"class_path": "torch.optim.AdamW",
                                     "init_args": {"lr": 5.0e-7, "weight_decay": 0.0, "betas": [0.9, 0.999]}}


def epoch_steps(num_pairs: int, train: TrainArgs, world_size: int) -> int:
    """Optimizer steps in one pass over ``num_pairs`` training pairs (the last accumulation may be partial)."""
    batches_per_rank = math.ceil(math.ceil(num_pairs / train.micro_batch_size) / world_size)
    return max(1, math.ceil(batches_per_rank / train.accumulation(world_size)))


def _copy_optimizer(optimizer: OptimizerArg | dict | None) -> OptimizerArg | dict:
    """A private copy (litgpt's ``instantiate_torch_optimizer`` updates ``init_args`` in place); None -> the default."""
    import copy

    return copy.deepcopy(DEFAULT_OPTIMIZER if optimizer is None else optimizer)


def _check_data(data: DataModule) -> None:
    """Padding side, and every pair has a response token to score (see ``litcpt.models.dpo.check_scorable``)."""
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


LossName = Literal["sigmoid", "ipo", "hinge", "robust", "exo_pair", "bco_pair", "sppo_hard", "nca_pair", "aot",
                   "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm", "simpo", "sft"]
FDivergenceName = Literal["reverse_kl", "forward_kl", "js_divergence", "alpha_divergence"]


def precompute_reference(spec: RunSpec, data: DataModule, ref_dir: Path, *, average_logps: bool,
                         ld_alpha: float | None = None):
    """Reference log-probs of every train/val pair: loaded from ``<out_dir>/ref_logps.pt`` if it was computed from
    the same reference and data, else one ``Trainer.predict`` pass (:func:`litcpt.runtime.inference.predict_trainer`:
    same
    devices, strategy and precision as the training run) that writes it. The reference model is freed before
    training starts."""
    import lightning as L

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

    class _Loaders(L.LightningDataModule):
        def setup(self, stage: str) -> None:
            data.setup()

        def predict_dataloader(self) -> list:
            return [data.train_dataloader(), data.val_dataloader()]

    sizes = {split: len(ds) for split, ds in datasets.items() if ds is not None}
    # pair indices are positions in the loaded file: with truncation="drop" some are missing, the table spans them all
    expected = {split: [int(item.index) for item in ds.items] for split, ds in datasets.items()
                if ds is not None and hasattr(ds, "items")}
    sizes.update({split: max(max(indices, default=-1) + 1, sizes[split]) for split, indices in expected.items()})
    module = ReferenceLogpsModule(load_config(ref_dir), checkpoint_dir=ref_dir, average_logps=average_logps,
                                  sizes=sizes, meta=meta, cache_path=cache_path, ld_alpha=ld_alpha,
                                  expected=expected, defer_init=spec.sharded)
    trainer = predict_trainer(accelerator=spec.accelerator, devices=spec.num_devices, num_nodes=spec.num_nodes,
                              strategy=spec.strategy, world_size=spec.world_size,
                              precision=spec.resolved_precision(), default_root_dir=spec.out_dir)
    trainer.predict(module, datamodule=_Loaders(), return_predictions=False)
    result = module.result
    del module, trainer
    if result is None:
        raise RuntimeError("reference log-probs: the predict pass produced no result")
    return result


def setup(
    checkpoint_dir: Path,
    ref_checkpoint_dir: Path | None = None,
    out_dir: Path = Path("out/dpo"),
    beta: float = DEFAULT_BETA,
    loss_type: Union[LossName, list[LossName]] = "sigmoid",
    label_smoothing: float = 0.0,
    average_logps: bool = False,
    precompute_ref: bool = False,
    loss_weights: Optional[list[float]] = None,
    simpo_gamma: float = 0.5,
    discopop_tau: float = 0.05,
    f_divergence_type: FDivergenceName = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
    use_weighting: bool = False,
    ld_alpha: Optional[float] = None,
    sync_ref_model: bool = False,
    ref_model_mixup_alpha: float = 0.6,
    ref_model_sync_steps: int = 512,
    data: DataModule | None = None,
    train: TrainArgs = TrainArgs(global_batch_size=64, micro_batch_size=4, save_interval=None),
    eval: EvalArgs = EvalArgs(interval=100, max_iters=50),
    lr_schedule: Callback | None = None,
    optimizer: OptimizerArg | None = None,
    devices: int | str = "auto",
    num_nodes: int = 1,
    strategy: StrategyName = "auto",
    precision: str | None = None,
    logger_name: LoggerName = "csv",
    seed: int = 42,
    accelerator: str = "auto",
    resume: Resume = False,
    dry_run: bool = False,
) -> Path:
    """Train a policy with Direct Preference Optimization against a frozen reference model.

    Args:
        checkpoint_dir: LitGPT checkpoint dir the policy starts from (an SFT / instruction model; its tokenizer is
            used).
        ref_checkpoint_dir: the frozen reference (default: ``checkpoint_dir``, i.e. the starting policy). Must share
            the policy's tokenizer.
        out_dir: run directory: ``final/`` (the policy as a LitGPT checkpoint + ``dpo.json``), ``checkpoints/*.ckpt``
            (resume), ``logs/version_*/metrics.csv``, ``ref_logps.pt`` (with ``precompute_ref``).
        beta: β, the strength of the implicit KL penalty towards the reference (DPO's temperature; typical 0.01-0.5).
        loss_type: a loss of TRL's DPO family (``sigmoid`` = DPO, ``ipo``, ``hinge``, ``robust``, ``exo_pair``,
            ``bco_pair``, ``sppo_hard``, ``nca_pair``, ``aot``, ``aot_unpaired``, ``apo_zero``, ``apo_down``,
            ``discopop``, ``sigmoid_norm``, ``sft``), reference-free ``simpo``, or a list combined with
            ``loss_weights`` (MPO: ``[sigmoid, bco_pair, sft]``; RPO: ``[sigmoid, sft]``). See docs/dpo.md.
        label_smoothing: label noise ε in [0, 0.5] (``sigmoid``/cDPO, ``robust`` (< 0.5), ``exo_pair`` (0 means
            1e-3), ``aot``, ``aot_unpaired``, ``simpo``).
        average_logps: length-average the response log-probs instead of summing them (e.g. length-normalised IPO;
            always on for ``simpo``).
        precompute_ref: compute the reference log-probs of all train/val pairs in one pass before training (cached
            in ``out_dir/ref_logps.pt``); training then holds only the policy.
        loss_weights: one weight per entry of a ``loss_type`` list (default 1.0 each).
        simpo_gamma: SimPO's target reward margin γ (``simpo``).
        discopop_tau: DiscoPOP's temperature τ (``discopop``).
        f_divergence_type: f-DPO's divergence: ``reverse_kl`` (DPO), ``forward_kl``, ``js_divergence``,
            ``alpha_divergence`` (only with sigmoid, sigmoid_norm, hinge, ipo, exo_pair, robust, discopop, sft).
        f_alpha_divergence_coef: α of ``alpha_divergence``.
        use_weighting: WPO: weight each pair by its responses' length-normalised probability under the policy.
        ld_alpha: LD-DPO: weight α in [0, 1] of the response tokens past the shorter response of each pair.
        sync_ref_model: TR-DPO: every ``ref_model_sync_steps`` steps set the reference to
            ``α·policy + (1 − α)·reference`` (α = ``ref_model_mixup_alpha``); not with ``precompute_ref``.
        ref_model_mixup_alpha: α of ``sync_ref_model``.
        ref_model_sync_steps: optimizer steps between reference syncs.
        data: preference pairs: a ``litcpt.data.Preference`` (default: the bundled 2000 HH-RLHF pairs).
        train: training-loop arguments; ``max_steps`` defaults to one epoch of the training pairs.
            ``global_batch_size``/``micro_batch_size`` count pairs.
        eval: validation arguments.
        lr_schedule: an LR-schedule callback (default: ``WarmupCosineLR(warmup=0.1, min_lr_ratio=0.0)``).
        optimizer: ``AdamW`` or ``{class_path: torch.optim.AdamW, init_args: {lr: ...}}`` (default: AdamW, lr 5e-7,
            no weight decay).
        devices: devices per node (``auto``: all GPUs, or 1 CPU process).
        num_nodes: number of nodes.
        strategy: ``auto``, ``ddp``, ``fsdp`` or ``fsdp2`` (the reference is sharded like the policy).
        precision: Lightning precision; default ``bf16-mixed`` on GPU (fp32 master weights: DPO lr of 5e-7 would
            vanish under ``bf16-true``), ``32-true`` on CPU.
        logger_name: ``csv`` or ``tensorboard``.
        seed: random seed.
        accelerator: ``auto``, ``cpu``, ``gpu``.
        resume: ``true`` / ``auto`` / a ``.ckpt`` path, as for ``litcpt pretrain``.
        dry_run: print the parameter count and the per-rank memory estimate (parameters, gradients, optimizer,
            activations at the micro-batch) for this world size and strategy, then exit without building the model.

    Returns: the path of the final LitGPT checkpoint dir of the policy.
    """
    from litcpt.losses import preference as losses
    from litcpt.models.dpo import DPOModel
    from litcpt.models.dpo_checks import check_reference_compatible

    checkpoint_dir = check_checkpoint_dir(checkpoint_dir, field="checkpoint_dir")
    types, _ = losses.parse_loss_types(loss_type, loss_weights)
    if set(types) <= losses.REFERENCE_FREE_LOSS_TYPES:
        for name, value in (("ref_checkpoint_dir", ref_checkpoint_dir), ("precompute_ref", precompute_ref),
                            ("sync_ref_model", sync_ref_model)):
            if value:
                raise ValueError(f"{name}: loss_type {types[0] if len(types) == 1 else list(types)!r} is "
                                 "reference-free (no reference model is loaded); remove it")
    if sync_ref_model and precompute_ref:
        raise ValueError("sync_ref_model: the reference changes during training (TR-DPO), so its log-probs cannot be "
                         "precomputed; set precompute_ref: false")
    if sync_ref_model:
        from litcpt.callbacks.sync_reference import SyncReference

        sync_callback = SyncReference(alpha=ref_model_mixup_alpha, sync_steps=ref_model_sync_steps)
    if ref_checkpoint_dir is not None:
        ref_checkpoint_dir = check_checkpoint_dir(ref_checkpoint_dir, field="ref_checkpoint_dir")
        check_reference_compatible(checkpoint_dir, ref_checkpoint_dir)
    ref_dir = ref_checkpoint_dir if ref_checkpoint_dir is not None else checkpoint_dir
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
    seq_length = train.max_seq_length or config.block_size
    if seq_length > config.block_size:
        raise ValueError(f"train.max_seq_length={seq_length} exceeds the model's block_size {config.block_size}")

    if dry_run:
        from litcpt.training.dry_run import print_dry_run

        print_dry_run(config, spec, kind="dpo", seq_length=seq_length,
                      frozen_reference=not precompute_ref and not set(types) <= losses.REFERENCE_FREE_LOSS_TYPES)
        return spec.out_dir / "final"

    if data is None:
        from litcpt.data.preference.datamodule import Preference

        data = Preference()
    data.connect(tokenizer=tokenizer, batch_size=train.micro_batch_size, max_seq_length=seq_length)
    data.setup()
    _check_data(data)
    train_pairs = len(data.train_dataset) if getattr(data, "train_dataset", None) is not None else None
    if train.max_steps is not None:
        max_steps = int(train.max_steps)
    elif train_pairs is not None:
        max_steps = epoch_steps(train_pairs, train, spec.world_size)
    else:
        raise ValueError("train.max_steps: required for a data module without a train_dataset to count pairs in")
    spec.out_dir.mkdir(parents=True, exist_ok=True)

    reference_logps = None
    if precompute_ref:
        reference_logps = precompute_reference(spec, data, ref_dir, average_logps=average_logps, ld_alpha=ld_alpha)
    module = DPOModel(config, checkpoint_dir=checkpoint_dir, ref_checkpoint_dir=ref_checkpoint_dir, beta=beta,
                      loss_type=loss_type, label_smoothing=label_smoothing, average_logps=average_logps,
                      reference_logps=reference_logps, loss_weights=loss_weights, simpo_gamma=simpo_gamma,
                      discopop_tau=discopop_tau, f_divergence_type=f_divergence_type,
                      f_alpha_divergence_coef=f_alpha_divergence_coef, use_weighting=use_weighting,
                      ld_alpha=ld_alpha, optimizer=_copy_optimizer(optimizer),
                      activation_checkpointing=train.activation_checkpointing, compile=train.compile,
                      defer_init=spec.sharded)
    spec.callbacks = [train.lr_schedule(lr_schedule, "dpo")]
    if sync_ref_model:
        spec.callbacks.append(sync_callback)
    fit(module, data, spec, max_steps=max_steps)
    return spec.out_dir / "final"
