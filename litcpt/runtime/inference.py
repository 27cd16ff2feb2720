"""Inference plumbing shared by RewardBench scoring and DPO's precomputed reference log-probs.

Both run a model over every item of a data set on each of ``world_size`` ranks, each rank on its own share, and
then need every item's result exactly once, in a known order, on every rank. This module holds that part:
gathering Python objects from all ranks (:func:`gather_objects`; rank and size: :mod:`litcpt.runtime.ranks`), putting
gathered results back into data order with a check that each item came back once
(:func:`gather_in_order`), precision handling for a bare ``torch.nn.Module`` (:func:`resolve_precision`,
:func:`autocast_context`, :func:`model_dtype`), moving a batch to a device and a progress bar that may be off.

The harness itself is Lightning's ``Trainer.predict``: :func:`predict_trainer` builds the Trainer (strategy by name,
``fsdp``/``fsdp2`` included, so a model too large for one device is sharded instead of copied to every rank);
DPO's reference log-probs run their own LightningModule on it, RewardBench runs :class:`PlannedPredict` (a plan of
calls, this rank's share of them, one ordered gather at the end) through :func:`predict_planned`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from litcpt.runtime.ranks import group_rank_world

__all__ = [
    "PRECISIONS",
    "PlannedPredict",
    "autocast_context",
    "defer_weights",
    "gather_in_order",
    "gather_objects",
    "launch_ranks",
    "model_dtype",
    "predict_planned",
    "predict_trainer",
    "progress_bar",
    "rank_share",
    "resolve_precision",
    "to_device",
]

PRECISIONS = ("32-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true")




def gather_objects(local: Any, world_size: int | None = None) -> list[Any]:
    """``[local of rank 0, local of rank 1, ...]`` on every rank (``[local]`` without a process group)."""
    if world_size is None:
        world_size = group_rank_world()[1]
    if world_size == 1:
        return [local]
    parts: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(parts, local)
    return parts


def gather_in_order(local: list[Any], order: Sequence[Any], world_size: int | None, unit: str, *,
                    what: str = "scoring") -> list[Any]:
    """Every rank's results (each with an ``index``), in the order of ``order``'s items (each with an ``index``);
    a ``RuntimeError`` (starting with ``what``) unless each item came back exactly once."""
    gathered = [x for part in gather_objects(list(local), world_size) for x in part]
    by_index = {result.index: result for result in gathered}
    if len(by_index) != len(gathered) or len(gathered) != len(order) or any(
            int(item.index) not in by_index for item in order):
        raise RuntimeError(f"{what}: expected each of {len(order)} {unit} exactly once, got {len(gathered)} results "
                           f"for {len(by_index)} distinct {unit}")
    return [by_index[int(item.index)] for item in order]


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``None`` -> ``bf16-mixed`` on a bf16-capable GPU, else ``32-true``; other values are checked."""
    if precision is None:
        return "bf16-mixed" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "32-true"
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)} or null, got {precision!r}")
    return precision


def autocast_context(precision: str | None, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for the ``*-mixed`` precisions (``*-true``: cast the model instead), else a no-op."""
    precision = resolve_precision(precision, device)
    if precision.endswith("-mixed"):
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    return contextlib.nullcontext()


def model_dtype(precision: str | None, device: torch.device) -> torch.dtype:
    """The dtype to cast the weights to: bf16/fp16 for ``*-true``, else float32."""
    precision = resolve_precision(precision, device)
    return {"bf16-true": torch.bfloat16, "16-true": torch.float16}.get(precision, torch.float32)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """``batch`` with its tensors moved to ``device`` (other values as they are)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def close(self) -> None:
        return None


def progress_bar(enabled: bool, total: int, unit: str = "pair") -> Any:
    """A tqdm bar counting pairs (or ``unit``; a no-op bar when disabled or without tqdm)."""
    if enabled:
        try:
            from tqdm import tqdm

            return tqdm(total=total, desc="scoring", unit=unit)
        except ImportError:  # pragma: no cover - tqdm comes with lightning
            pass
    return _NoBar()


# ------------------------------------------------------------------------------------------------- the harness
def predict_trainer(*, accelerator: str = "auto", devices: int | str = 1, num_nodes: int = 1, strategy: str = "auto",
                    world_size: int | None = None, precision: str = "32-true",
                    default_root_dir: Path | str | None = None, progress: bool = True) -> L.Trainer:
    """The ``Trainer`` of an inference pass: strategy by name (:func:`litcpt.runtime.strategies.make_strategy`; ``fsdp``
    and
    ``fsdp2`` shard the model), no logger, no checkpoints, the module's own per-rank loaders (no distributed
    sampler) and ``torch.no_grad`` instead of inference mode (FSDP's parameter views refuse inference tensors).
    ``world_size`` defaults to ``devices x num_nodes`` (fsdp2's mesh size); ``progress``: Lightning's bar (counts
    batches; RewardBench shows its own, counting pairs)."""
    from litcpt.runtime.strategies import make_strategy

    if world_size is None:
        world_size = int(devices) * num_nodes if str(devices).isdigit() else 1
    return L.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes,
                     strategy=make_strategy(strategy, accelerator=accelerator, world_size=world_size),
                     precision=precision, logger=False, enable_checkpointing=False, use_distributed_sampler=False,
                     inference_mode=False, enable_model_summary=False, enable_progress_bar=progress,
                     default_root_dir=None if default_root_dir is None else str(default_root_dir))


def launch_ranks(devices: int, num_nodes: int, accelerator: str, strategy: str
                 ) -> tuple[int, int, torch.device, L.Trainer | None]:
    """(rank, world size, device, trainer) of an inference pass: one process or an already-initialised process group
    (trainer None: a plain loop), else the ``Trainer.predict`` harness (:func:`predict_trainer`), which launches the
    ranks; the models then load on the CPU and the strategy places them (``fsdp``/``fsdp2``: sharded)."""
    import os

    dist = torch.distributed
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if on_gpu else torch.device("cpu")
        return rank, world, device, None
    if devices > 1 or num_nodes > 1:
        trainer = predict_trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                                  progress=False)
        return trainer.global_rank, trainer.world_size, torch.device("cuda" if on_gpu else "cpu"), trainer
    if on_gpu:
        return 0, 1, torch.device("cuda", 0), None
    return 0, 1, torch.device("cpu"), None


Plan = Callable[[int, int], Sequence[Sequence[int]]]
"""``plan(rank, world_size)``: the calls (each a list of item positions) of that rank."""


def rank_share(plan: Plan, rank: int, world_size: int, *, even: bool = False) -> list[tuple[list[int], bool]]:
    """This rank's calls of ``plan``, ``(call, duplicate)``. ``even`` pads a shorter share with repeats of a call
    flagged ``duplicate`` (its results are dropped), so every rank runs the same number of calls: a sharded model's
    forward is a collective that all ranks must enter."""
    share = [(list(call), False) for call in plan(rank, world_size)]
    if even:
        shares = [plan(r, world_size) for r in range(world_size)]
        filler = next((list(calls[0]) for calls in shares if calls), None)
        if filler is not None:
            share += [(filler, True)] * (max(map(len, shares)) - len(share))
    return share


def _shard_blocks_and_root(module: torch.nn.Module, mesh: Any) -> None:
    """FSDP2 for inference: every litgpt ``Block`` is one unit, ``module`` (whose ``forward`` runs the models) the
    root holding the rest (embeddings, heads), so the root is gathered for the whole of one call."""
    from litgpt.model import Block
    from torch.distributed.fsdp import fully_shard

    for block in [m for m in module.modules() if isinstance(m, Block)]:
        fully_shard(block, mesh=mesh)
    fully_shard(module, mesh=mesh)


WEIGHTS_ATTR = "litcpt_weight_source"


def defer_weights(module: torch.nn.Module, source: Any) -> torch.nn.Module:
    """Mark a meta-device ``module``: :class:`PlannedPredict` fills it from ``source`` (a
    :class:`~litcpt.runtime.materialize.WeightSource`) after the strategy has sharded it, so under ``fsdp``/``fsdp2``
    no rank ever holds the full weights."""
    setattr(module, WEIGHTS_ATTR, source)
    return module


def _identity(x: Any) -> Any:
    return x


class PlannedPredict(L.LightningModule):
    """``Trainer.predict`` over a plan: ``run(call, device)`` of each call of this rank (:func:`rank_share`), every
    rank's results (each with an ``index``) gathered in the order of ``order`` (:func:`gather_in_order`) into
    :attr:`result` on every rank.

    Args:
        models: the modules ``run`` uses (registered here, so the strategy moves or shards them).
        plan: ``plan(rank, world_size)``, the calls of a rank (each a list of item positions).
        run: ``(call, device) -> results``, called under ``torch.no_grad`` and the ``*-mixed`` autocast.
        order: the items, for the ordered gather.
        unit: what an item is (``pairs``, ``prompts``), for the progress bar and errors.
        precision: :data:`PRECISIONS` (the models are already cast for ``*-true``).
        progress: a progress bar on rank 0 counting items.
        even: the same number of calls on every rank (needed under ``fsdp``/``fsdp2``; see :func:`rank_share`).
    """

    def __init__(self, models: Mapping[str, torch.nn.Module], plan: Plan,
                 run: Callable[[Sequence[int], torch.device], list], *, order: Sequence[Any], unit: str,
                 precision: str, progress: bool = False, even: bool = False) -> None:
        super().__init__()
        self.models = torch.nn.ModuleDict(dict(models))
        self.plan = plan
        self.run, self.order, self.unit = run, order, unit
        self.precision_name, self.progress, self.even = precision, progress, even
        self._local: list[Any] = []
        self._bar: Any = _NoBar()
        self.result: list[Any] | None = None

    def predict_dataloader(self) -> Any:
        from torch.utils.data import DataLoader

        share = rank_share(self.plan, self.global_rank, self.trainer.world_size, even=self.even)
        return DataLoader(share, batch_size=None, collate_fn=_identity)

    def configure_model(self) -> None:
        """``fsdp2``: shard (:func:`_shard_blocks_and_root`). Then fill the meta modules (:func:`defer_weights`):
        under ``fsdp`` unit by unit as FSDP wraps them, else here (their own shard only under ``fsdp2``)."""
        from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

        from litcpt.runtime.materialize import fsdp1_param_init_fn, has_meta, materialize_sharded

        if getattr(self, "_configured", False):
            return
        self._configured = True
        strategy = self.trainer.strategy
        if isinstance(strategy, ModelParallelStrategy):
            _shard_blocks_and_root(self, self.device_mesh["data_parallel"])
        pending = {name: getattr(m, WEIGHTS_ATTR) for name, m in self.named_modules()
                   if getattr(m, WEIGHTS_ATTR, None) is not None and has_meta(m)}
        if isinstance(strategy, FSDPStrategy) and pending:
            strategy.kwargs["param_init_fn"] = fsdp1_param_init_fn(self, pending, strategy.root_device)
            return
        for name, source in pending.items():
            materialize_sharded(self.get_submodule(name), source, strategy.root_device)

    def forward(self, call: Sequence[int]) -> list[Any]:
        with torch.no_grad(), autocast_context(self.precision_name, self.device):
            return self.run(call, self.device)

    def on_predict_epoch_start(self) -> None:
        self._local = []
        mine = sum(len(call) for call, dup in rank_share(self.plan, self.global_rank, self.trainer.world_size)
                   if not dup)
        self._bar = progress_bar(self.progress and self.global_rank == 0, mine, self.unit.rstrip("s"))

    def predict_step(self, batch: tuple[Sequence[int], bool], batch_idx: int) -> None:
        call, duplicate = batch
        results = self(call)  # through forward: under fsdp2 that gathers the root's parameters
        if not duplicate:
            self._local.extend(results)
            self._bar.update(len(call))

    def on_predict_epoch_end(self) -> None:
        self._bar.close()
        self.result = gather_in_order(self._local, self.order, self.trainer.world_size, self.unit)


def predict_planned(trainer: L.Trainer, models: Mapping[str, torch.nn.Module], plan: Plan,
                    run: Callable[[Sequence[int], torch.device], list], **options: Any) -> list[Any]:
    """Run :class:`PlannedPredict` on ``trainer`` and return its ordered results (every rank)."""
    module = PlannedPredict(models, plan, run, **options)
    trainer.predict(module, return_predictions=False)
    if module.result is None:
        raise RuntimeError("predict: the pass produced no result")
    return module.result
