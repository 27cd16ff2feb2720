"""A pretrain run: ``litcpt pretrain`` (the signature is the recipe schema), also run by ``litcpt anneal`` and
``litcpt demo``; with the model config that reading a pretrain recipe needs (:func:`resolve_model_config`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lightning.pytorch.callbacks import Callback
from litgpt import Config
from litgpt.data import DataModule

from litcpt.runtime.checkpoint import check_checkpoint_dir, load_config
from litcpt.runtime.optim import OptimizerArg
from litcpt.runtime.strategies import StrategyName
from litcpt.runtime.tokenizers import load_checked_tokenizer
from litcpt.training.args import EvalArgs, TrainArgs
from litcpt.training.carry import CarryArgs
from litcpt.training.harness import LoggerName, RunSpec, fit


def resolve_model_config(model_name: str | None, model_config: Config | None,
                         initial_checkpoint_dir: Path | None) -> Config:
    """``model_config`` > ``model_name`` > the config saved in ``initial_checkpoint_dir``."""
    if model_config is not None:
        return model_config
    if model_name is not None:
        try:
            return Config.from_name(model_name)
        except ValueError:
            raise ValueError(f"model_name: {model_name!r} is not a litgpt model name "
                             "(see `litgpt download list`), or give model_config") from None
    if initial_checkpoint_dir is not None:
        return load_config(initial_checkpoint_dir)
    raise ValueError("one of model_name, model_config or initial_checkpoint_dir is required")


def setup(
    model_name: str | None = None,
    model_config: Config | None = None,
    out_dir: Path = Path("out/pretrain"),
    precision: str | None = None,
    initial_checkpoint_dir: Path | None = None,
    resume: bool | Literal["auto"] | Path = False,
    data: DataModule | None = None,
    train: TrainArgs = TrainArgs(max_tokens=int(1e6)),
    eval: EvalArgs = EvalArgs(),
    lr_schedule: Callback | None = None,
    optimizer: OptimizerArg = "AdamW",
    devices: int | str = "auto",
    num_nodes: int = 1,
    strategy: StrategyName = "auto",
    tokenizer_dir: Path | None = None,
    logger_name: LoggerName = "csv",
    seed: int = 42,
    accelerator: str = "auto",
    callbacks: list[Callback] | None = None,
    carry: CarryArgs = CarryArgs(),
    dry_run: bool = False,
) -> Path:
    """Pretrain a litgpt model, or continue pretraining one (a new stage) from ``initial_checkpoint_dir``.

    Args:
        model_name: a litgpt model name (e.g. ``pythia-14m``); see ``litgpt download list``.
        model_config: an explicit ``litgpt.Config`` (overrides ``model_name``).
        out_dir: run directory: ``final/`` and ``step-*/`` (LitGPT layout), ``checkpoints/*.ckpt`` (resume),
            ``logs/version_*/metrics.csv``, ``config.yaml``.
        precision: Lightning precision (``32-true``, ``bf16-mixed``, ``bf16-true``); default: ``bf16-mixed`` on GPU
            (fp32 master weights, every strategy), ``32-true`` on CPU. ``bf16-true`` warns when lr < 2^-14.
        initial_checkpoint_dir: LitGPT checkpoint dir whose weights start this run (continued pretraining: a new
            stage; the optimizer starts fresh, as in the paper, and the LR schedule re-warms).
        resume: continue an interrupted run exactly: ``true`` (``out_dir/checkpoints/last.ckpt``), ``auto`` (that if
            present), or a ``.ckpt`` path.
        data: a LitGPT DataModule (``litcpt.data.TextFiles``, ``litcpt.data.Replay``, litgpt's own ...).
            Default: the bundled English corpus.
        train: training-loop arguments (batch sizes, ``max_tokens``/``max_steps``, intervals, clipping).
        eval: validation arguments.
        lr_schedule: an LR-schedule callback (``litcpt.callbacks.WarmupCosineLR`` by default: warmup 1%, cosine to
            0.1 x peak). The peak LR is the optimizer's ``lr``.
        optimizer: ``AdamW`` or ``{class_path: torch.optim.AdamW, init_args: {lr: ..., weight_decay: ...}}``.
        devices: devices per node (``auto``: all GPUs, or 1 CPU process).
        num_nodes: number of nodes.
        strategy: ``auto``, ``ddp``, ``fsdp`` (FSDP1, Block-wise) or ``fsdp2`` (``fully_shard`` per Block).
        tokenizer_dir: tokenizer dir (default: the one in ``initial_checkpoint_dir``, else the bundled one).
        logger_name: ``csv`` or ``tensorboard``.
        seed: random seed.
        accelerator: ``auto``, ``cpu``, ``gpu``.
        callbacks: more Lightning callbacks, e.g. ``litcpt.callbacks.SkipSpikes`` (skip-step on loss/gradient spikes)
            or ``litcpt.callbacks.EMA`` (an exponential moving average of the weights, saved as its own LitGPT dir).
        carry: what a new stage carries from the Lightning checkpoint of the run it continues, besides the weights
            of ``initial_checkpoint_dir``: ``carry.optimizer`` (AdamW moments), ``carry.schedule`` (continue its LR
            schedule), ``carry.data`` (continue its data stream); ``carry.checkpoint``: the ``.ckpt`` (default: the
            one of the same step as ``initial_checkpoint_dir``). See docs/pretraining.md.
        dry_run: print the parameter count and the per-rank memory estimate (parameters, gradients, optimizer,
            activations at the micro-batch) for this world size and strategy, then exit without building the model.

    Returns: the path of the final LitGPT checkpoint dir.
    """
    from litcpt import assets

    if initial_checkpoint_dir is not None:
        initial_checkpoint_dir = check_checkpoint_dir(initial_checkpoint_dir, field="initial_checkpoint_dir",
                                                      need_tokenizer=tokenizer_dir is None)
    config = resolve_model_config(model_name, model_config, initial_checkpoint_dir)
    if tokenizer_dir is None:
        tokenizer_dir = initial_checkpoint_dir if initial_checkpoint_dir is not None else assets.tokenizer_dir()
    tokenizer = load_checked_tokenizer(tokenizer_dir, config)
    seq_length = train.max_seq_length or config.block_size
    # batch sizes must divide: fails before any data work
    spec = RunSpec(out_dir=out_dir, train=train, eval=eval, devices=devices, num_nodes=num_nodes, strategy=strategy,
                   precision=precision, logger_name=logger_name, seed=seed, resume=resume, tokenizer_dir=tokenizer_dir,
                   accelerator=accelerator)
    spec.seed_everything()  # before the model is built: the same fresh weights on every rank
    schedule = train.lr_schedule(lr_schedule, "pretrain")  # LitGPT's LR keys: checked before any data work
    max_steps = train.resolve_max_steps(seq_length)

    if data is None:
        from litcpt.data import TextFiles

        data = TextFiles(train_data_path=assets.pretrain_files("en")[0].parent, name="en")
    data.connect(tokenizer=tokenizer, batch_size=train.micro_batch_size, max_seq_length=seq_length)

    if dry_run:
        from litcpt.training.dry_run import print_dry_run

        print_dry_run(config, spec, kind="lm", seq_length=seq_length)
        return spec.out_dir / "final"

    from litcpt.models.lm import LanguageModel

    module = LanguageModel(config, seq_length=seq_length, tokens_per_step=train.global_batch_size * seq_length,
                           optimizer=optimizer, checkpoint_dir=initial_checkpoint_dir,
                           activation_checkpointing=train.activation_checkpointing,
                           tie_embeddings=train.tie_embeddings, compile=train.compile, z_loss=train.z_loss or 0.0,
                           defer_init=spec.sharded)
    spec.callbacks = [schedule, *(callbacks or [])]
    from litcpt.training.harness import find_resume_checkpoint

    if carry.any and find_resume_checkpoint(resume, spec.out_dir) is None:  # a resumed stage has it all in its .ckpt
        from litcpt.training.carry import apply_carry

        spec.callbacks += apply_carry(carry, initial_checkpoint_dir, spec.callbacks[0], data)
    fit(module, data, spec, max_steps=max_steps)
    return spec.out_dir / "final"
