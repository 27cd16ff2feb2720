"""Typed argument groups shared by every litcpt command (they *are* the recipe schema and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

RunType = Literal["pretrain", "reward", "dpo"]


@dataclass(frozen=True)
class DefaultSchedule:
    """The LR schedule a run type trains with when the recipe gives no ``lr_schedule``: ``WarmupCosineLR`` with this
    warmup (a fraction of the stage) and final LR (a fraction of the peak)."""

    warmup: float
    min_lr_ratio: float


DEFAULT_SCHEDULES: dict[str, DefaultSchedule] = {
    "pretrain": DefaultSchedule(warmup=0.01, min_lr_ratio=0.1),  # the paper's: warmup 1%, cosine to 0.1 x peak
    "reward": DefaultSchedule(warmup=0.03, min_lr_ratio=0.1),
    "dpo": DefaultSchedule(warmup=0.1, min_lr_ratio=0.0),  # TRL's DPO recipes: warmup 10%, decay to 0
}
"""The one place each run type's default LR schedule is declared (read by the runs, ``plot-schedule`` and
``anneal``)."""


@dataclass
class TrainArgs:
    """Training-loop arguments (LitGPT's names; counts are optimizer steps unless said otherwise)."""

    global_batch_size: int = 64
    """Samples per optimizer step, summed over all data-parallel ranks (accumulation fills the gap)."""
    micro_batch_size: int = 4
    """Samples per forward/backward on one rank."""
    max_tokens: int | float | None = None
    """Stop after this many training tokens (global; ``2e6`` is accepted). One of ``max_tokens`` / ``max_steps``."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides ``max_tokens``)."""
    max_seq_length: int | None = None
    """Sequence length of the training blocks; default: the model's ``block_size``."""
    log_interval: int = 1
    """Optimizer steps between progress-bar updates (``metrics.csv`` has a row for every step)."""
    save_interval: int | None = 1000
    """Optimizer steps between checkpoints (a LitGPT dir ``step-XXXXXXXX/`` and a Lightning ``.ckpt``)."""
    max_norm: float | None = 1.0
    """Gradient clipping by global norm (None: off)."""
    tie_embeddings: bool = False
    """Tie the input embedding and the LM head (fresh models only)."""
    activation_checkpointing: bool = False
    """Recompute each transformer Block in the backward pass (saves memory)."""
    compile: bool = False
    """``torch.compile`` the model in place (``nn.Module.compile``) before training, as ``litgpt pretrain`` always
    does."""
    fused_head: bool = True
    """Run the LM head fused with the loss, in chunks of positions with its own autograd, so the
    ``[micro-batch, tokens, vocab]`` logits are never materialised (LM cross-entropy and z-loss, DPO policy and
    reference log-probs); false: the plain head (LitGPT's ``chunked_cross_entropy`` on the full logits)."""
    keep_checkpoints: int = -1
    """How many periodic Lightning ``.ckpt`` files to keep: the newest ``k`` ``step-*.ckpt`` (-1: all; ``last.ckpt``
    is always kept)."""
    z_loss: float | None = None
    """Weight of the z-loss ``mean(logsumexp(logits)^2)`` added to the training loss (OLMo / PaLM use 1e-4; None or
    0: off). Logged separately as ``train/z_loss`` (weighted); ``train/loss`` stays the cross-entropy."""

    lr_warmup_steps: int | None = None
    """LitGPT's key: the warmup of the command's default LR schedule in optimizer steps (``lr_schedule`` unset)."""
    lr_warmup_fraction: float | None = None
    """LitGPT's key: the warmup of the default LR schedule as a fraction of the stage (LitGPT: of an epoch)."""
    min_lr: float | None = None
    """LitGPT's key: the final LR of the default LR schedule (instead of its ``min_lr_ratio`` x peak)."""
    epochs: int | None = None
    """LitGPT's key, accepted only unset (null): litcpt counts training in ``max_tokens`` / ``max_steps``."""

    def __post_init__(self) -> None:
        if self.epochs is not None:
            raise ValueError(
                f"train.epochs={self.epochs}: litcpt counts training in optimizer steps or tokens, not "
                "epochs: remove train.epochs and set train.max_steps or train.max_tokens"
            )
        if self.lr_warmup_steps is not None and self.lr_warmup_fraction is not None:
            raise ValueError("train.lr_warmup_steps and train.lr_warmup_fraction: give one of them, not both")
        if self.lr_warmup_fraction is not None and not 0 <= self.lr_warmup_fraction <= 1:
            raise ValueError(f"train.lr_warmup_fraction={self.lr_warmup_fraction} must be in [0, 1]")
        for name in ("lr_warmup_steps", "min_lr"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"train.{name}={getattr(self, name)} must be >= 0")
        if self.max_tokens is not None:
            if float(self.max_tokens) != int(self.max_tokens):
                raise ValueError(f"train.max_tokens must be a whole number, got {self.max_tokens}")
            self.max_tokens = int(self.max_tokens)
        for name in ("global_batch_size", "micro_batch_size", "log_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be > 0, got {getattr(self, name)}")
        if self.z_loss is not None and not (isinstance(self.z_loss, (int, float)) and self.z_loss >= 0):
            raise ValueError(f"train.z_loss must be >= 0 or null, got {self.z_loss}")
        if self.keep_checkpoints < -1:
            raise ValueError(f"train.keep_checkpoints must be -1 (all) or >= 0, got {self.keep_checkpoints}")
        for name in ("max_tokens", "max_steps", "save_interval", "max_seq_length"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"train.{name} must be > 0 or null, got {value}")

    def schedule_keys(self) -> dict[str, Any]:
        """LitGPT's LR keys that are set (``lr_warmup_steps``, ``lr_warmup_fraction``, ``min_lr``)."""
        names = ("lr_warmup_steps", "lr_warmup_fraction", "min_lr")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def lr_schedule(self, lr_schedule: Any, run: RunType) -> Any:
        """``lr_schedule``, or else the run type's default (:data:`DEFAULT_SCHEDULES`, a ``WarmupCosineLR``) with
        LitGPT's LR keys applied (``lr_warmup_steps`` / ``lr_warmup_fraction`` set the warmup, ``min_lr`` the final
        LR). Those keys with an explicit ``lr_schedule`` are an error: the schedule says its own warmup and final LR."""
        from litcpt.callbacks.lr_schedule import WarmupCosineLR

        keys = self.schedule_keys()
        if lr_schedule is not None:
            if keys:
                name = next(iter(keys))
                raise ValueError(
                    f"train.{name}: sets the default LR schedule, but lr_schedule is given: write the "
                    "warmup and the final LR in lr_schedule.init_args instead (e.g. warmup_steps, min_lr)"
                )
            return lr_schedule
        default = DEFAULT_SCHEDULES[run]
        kwargs: dict[str, Any] = {"warmup": default.warmup, "min_lr_ratio": default.min_lr_ratio}
        if "lr_warmup_steps" in keys:
            kwargs = {"warmup_steps": keys["lr_warmup_steps"], "min_lr_ratio": default.min_lr_ratio}
        elif "lr_warmup_fraction" in keys:
            kwargs["warmup"] = keys["lr_warmup_fraction"]
        if "min_lr" in keys:
            del kwargs["min_lr_ratio"]
            kwargs["min_lr"] = keys["min_lr"]
        return WarmupCosineLR(**kwargs)

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per optimizer step on each rank; errors when the batch sizes don't divide."""
        per_rank, rest = divmod(self.global_batch_size, world_size)
        if rest or per_rank % self.micro_batch_size:
            raise ValueError(
                f"train.global_batch_size={self.global_batch_size} must be a multiple of "
                f"train.micro_batch_size={self.micro_batch_size} x world size {world_size}"
            )
        return per_rank // self.micro_batch_size

    def resolve_max_steps(self, seq_length: int) -> int:
        """Optimizer steps of the run, from ``max_steps`` or ``max_tokens``."""
        if self.max_steps is not None:
            return int(self.max_steps)
        if self.max_tokens is None:
            raise ValueError("train.max_tokens or train.max_steps must be set (got neither)")
        steps = int(self.max_tokens) // (self.global_batch_size * seq_length)
        if steps < 1:
            raise ValueError(
                f"train.max_tokens={self.max_tokens} is less than one optimizer step "
                f"(global_batch_size {self.global_batch_size} x seq length {seq_length} tokens)"
            )
        return steps


@dataclass
class EvalArgs:
    """Validation arguments."""

    interval: int = 100
    """Optimizer steps between validation runs."""
    max_iters: int = 50
    """Validation batches per dataloader per run."""
    initial_validation: bool = False
    """Validate before the first step (gives the 'before' point of forgetting curves)."""
    final_validation: bool = True
    """Validate after the last step."""
    max_new_tokens: int | None = None
    """LitGPT's key, accepted only unset (null): litcpt validates the loss and generates no text."""

    def __post_init__(self) -> None:
        if self.max_new_tokens is not None:
            raise ValueError(
                f"eval.max_new_tokens={self.max_new_tokens}: litcpt validates the loss and generates no "
                "text: remove it (sample from a checkpoint with `litgpt generate <out_dir>/final`)"
            )
        if self.interval <= 0 or self.max_iters <= 0:
            raise ValueError(f"eval.interval and eval.max_iters must be > 0, got {self.interval}, {self.max_iters}")
