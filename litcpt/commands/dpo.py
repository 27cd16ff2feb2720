"""``litcpt dpo``: Direct Preference Optimization of a LitGPT checkpoint (the signature is the recipe schema).

The run itself is :func:`litcpt.training.dpo.run`; it makes the loss arguments one
:class:`litcpt.losses.preference.DPOLoss` (validated once, after the checkpoint is checked and before anything is
loaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from litgpt.data import DataModule

from litcpt.callbacks import LRScheduleCallback
from litcpt.losses.preference import DEFAULT_BETA, DPOLossName, FDivergenceName
from litcpt.runtime.optim import OptimizerArg
from litcpt.runtime.strategies import StrategyName
from litcpt.training import dpo
from litcpt.training.args import EvalArgs, TrainArgs
from litcpt.training.dpo import cli_validate
from litcpt.training.harness import LoggerName, Resume

__all__ = ["cli_validate", "setup"]


def setup(
    checkpoint_dir: Path,
    ref_checkpoint_dir: Path | None = None,
    out_dir: Path = Path("out/dpo"),
    beta: float = DEFAULT_BETA,
    loss_type: Union[DPOLossName, list[DPOLossName]] = "sigmoid",
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
    lr_schedule: LRScheduleCallback | None = None,
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
            ``alpha_divergence`` (only with sigmoid, sigmoid_norm, hinge, exo_pair, robust, discopop, sft).
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
        logger_name: ``csv``, ``tensorboard`` (``logs/version_N``), ``wandb`` or ``mlflow`` (project ``litcpt``).
        seed: random seed.
        accelerator: ``auto``, ``cpu``, ``gpu``.
        resume: ``true`` / ``auto`` / a ``.ckpt`` path, as for ``litcpt pretrain``.
        dry_run: print the parameter count and the per-rank memory estimate (parameters, gradients, optimizer,
            activations at the micro-batch) for this world size and strategy, then exit without building the model.

    Returns: the path of the final LitGPT checkpoint dir of the policy.
    """
    return dpo.run(checkpoint_dir=checkpoint_dir, ref_checkpoint_dir=ref_checkpoint_dir, out_dir=out_dir, beta=beta,
                   loss_type=loss_type, label_smoothing=label_smoothing, average_logps=average_logps,
                   loss_weights=loss_weights, simpo_gamma=simpo_gamma, discopop_tau=discopop_tau,
                   f_divergence_type=f_divergence_type, f_alpha_divergence_coef=f_alpha_divergence_coef,
                   use_weighting=use_weighting, ld_alpha=ld_alpha, precompute_ref=precompute_ref,
                   sync_ref_model=sync_ref_model, ref_model_mixup_alpha=ref_model_mixup_alpha,
                   ref_model_sync_steps=ref_model_sync_steps, data=data, train=train, eval=eval,
                   lr_schedule=lr_schedule, optimizer=optimizer, devices=devices, num_nodes=num_nodes,
                   strategy=strategy, precision=precision, logger_name=logger_name, seed=seed,
                   accelerator=accelerator, resume=resume, dry_run=dry_run)
