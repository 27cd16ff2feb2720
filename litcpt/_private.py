"""Every use of private Lightning, LitGPT and torch API in litcpt, in one module.

litcpt reaches below the public API of its dependencies in a few places. Each such place is one function or one
adapter class here, and each has a test in ``tests/test_private_api.py`` that runs against the installed versions, so
that an upgrade breaks this module and its tests, not litcpt at large. The version gate that refuses untested
versions at import is :mod:`litcpt._compat`.

Adapter classes subclass a Lightning class and translate its private hooks and attributes into public names that
litcpt's own subclasses override or read:

* :class:`ThroughputMonitorAdapter` (``ThroughputMonitor._update`` / ``_compute`` / ``_module_has_flops``);
* :class:`WeightAveragingAdapter` (``WeightAveraging._swap_models`` / ``_average_model`` / ``_kwargs`` /
  ``_device``);
* :class:`FSDPStrategyAdapter` (``FSDPStrategy._setup_model``, and what its wrapping does after the FSDP wrapper).

Functions: :func:`attached_trainer` (``LightningModule._trainer``), :func:`cluster_environment_of` (the accelerator
connector's ``cluster_environment``), :func:`logs_reach_loggers` (the logger
connector's ``should_update_logs``), :func:`logging_step_shifted` (the epoch loop's ``_batches_that_stepped``),
:func:`validates_after_this_batch` (the epoch loop's ``_should_check_val_fx``),
:func:`log_step_metrics_now` (the logger connector's ``update_train_step_metrics``),
:func:`summary_table` (``model_summary._format_summary_table``), :func:`apply_activation_checkpointing` (torch's
``distributed.algorithms._checkpoint``), :func:`block_attention` and :data:`KVCache` (litgpt 0.5's attention call and
KV-cache protocol, which :mod:`litcpt.models.shared_prefix` drives directly).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ThroughputMonitor, WeightAveraging
from lightning.pytorch.strategies import FSDPStrategy
from litgpt.model import KVCache

__all__ = [
    "FSDPStrategyAdapter",
    "KVCache",
    "ThroughputMonitorAdapter",
    "WeightAveragingAdapter",
    "apply_activation_checkpointing",
    "attached_trainer",
    "block_attention",
    "cluster_environment_of",
    "logging_step_shifted",
    "log_step_metrics_now",
    "logs_reach_loggers",
    "summary_table",
    "validates_after_this_batch",
]


# --------------------------------------------------------------------------------------------- Trainer and module
def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The Trainer ``module`` is attached to, or ``None`` (``module.trainer`` raises when there is none)."""
    return module._trainer


def cluster_environment_of(trainer: L.Trainer) -> Any:
    """The cluster environment the Trainer runs in (``SLURMEnvironment`` in a SLURM job, whatever the strategy): the
    accelerator connector's ``cluster_environment``, which Lightning's own signal connector reads. A single-device
    strategy has no ``cluster_environment`` of its own."""
    return trainer._accelerator_connector.cluster_environment


def logs_reach_loggers(trainer: L.Trainer) -> bool:
    """Whether metrics logged now are written to the loggers (every ``log_every_n_steps``): the check Lightning's
    ``LearningRateMonitor`` makes. Logging costs ~1 ms, so per-step metrics are logged only when written. An object
    that is not a Trainer (a test's stand-in) logs every step."""
    connector = getattr(trainer, "_logger_connector", None)
    return True if connector is None else bool(connector.should_update_logs)


@contextlib.contextmanager
def logging_step_shifted(trainer: L.Trainer, shift: int) -> Iterator[None]:
    """Within the block, metrics are logged at the fit loop's step minus ``shift`` (Lightning's loggers write a
    ``trainer.validate`` call at the epoch loop's ``_batches_that_stepped``)."""
    loop = trainer.fit_loop.epoch_loop
    loop._batches_that_stepped -= shift
    try:
        yield
    finally:
        loop._batches_that_stepped += shift


def batches_that_stepped(trainer: L.Trainer) -> int:
    """The step Lightning's loggers write metrics at (the epoch loop's ``_batches_that_stepped``)."""
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def validates_after_this_batch(trainer: L.Trainer) -> bool:
    """Whether the fit loop runs validation right after the current training batch (the epoch loop's
    ``_should_check_val_fx``, asked from ``on_train_batch_end`` with the state it will be asked with) and that run
    has batches (the validation loop's ``skip``), so that its ``on_validation_end`` will come."""
    loop = trainer.fit_loop.epoch_loop
    if loop._skip_next_val or not loop._should_check_val_fx(trainer.fit_loop._data_fetcher):
        return False
    loop.val_loop.setup_data()  # what the validation loop does first anyway
    return not loop.val_loop.skip


def log_step_metrics_now(trainer: L.Trainer) -> None:
    """Send the metrics logged for the current optimizer step to the loggers now (the logger connector's
    ``update_train_step_metrics``, which Lightning calls again after ``on_train_batch_end``: the same values at the
    same step). Only inside a training batch (not at train start or end, where checkpoints may be saved too)."""
    connector = trainer._logger_connector
    if trainer.training and isinstance(connector._first_loop_iter, bool):
        connector.update_train_step_metrics()


def summary_table(total_parameters: int, trainable_parameters: int, model_size: float, training_modes: Any,
                  *columns: tuple[str, list[str]]) -> str:
    """Lightning's model-summary table (``_format_summary_table``) without a FLOPs total."""
    from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

    return _format_summary_table(total_parameters, trainable_parameters, model_size, training_modes, 0, *columns)


# --------------------------------------------------------------------------------------------- adapter classes
class ThroughputMonitorAdapter(ThroughputMonitor):
    """``ThroughputMonitor`` whose private hooks are public methods: override :meth:`update_throughput` /
    :meth:`compute_throughput` and read or set :attr:`module_has_flops`."""

    def _update(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, iter_num: int) -> None:
        self.update_throughput(trainer, pl_module, batch, iter_num)

    def _compute(self, trainer: L.Trainer, iter_num: int | None = None) -> None:
        self.compute_throughput(trainer, iter_num)

    def update_throughput(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, iter_num: int) -> None:
        super()._update(trainer, pl_module, batch, iter_num)

    def compute_throughput(self, trainer: L.Trainer, iter_num: int | None) -> None:
        """Log the throughput; ``iter_num=None`` logs it at the logger connector's step (the run's optimizer step)."""
        super()._compute(trainer, iter_num)

    @property
    def module_has_flops(self) -> bool | None:
        """Whether the module gives ``flops_per_batch`` (``None``: not decided yet)."""
        return self._module_has_flops

    @module_has_flops.setter
    def module_has_flops(self, value: bool | None) -> None:
        self._module_has_flops = value


class WeightAveragingAdapter(WeightAveraging):
    """``WeightAveraging`` whose private state and hook have public names: :attr:`average_model`,
    :attr:`averaging_kwargs`, :attr:`averaging_device`, and :meth:`swap_weights` (override it instead of
    ``_swap_models``). Mix it in before Lightning's ``EMAWeightAveraging`` when subclassing that."""

    def _swap_models(self, pl_module: L.LightningModule) -> None:
        self.swap_weights(pl_module)

    def swap_weights(self, pl_module: L.LightningModule) -> None:
        """Exchange the module's weights with the average (Lightning calls it around validation and at the end)."""
        super()._swap_models(pl_module)

    @property
    def average_model(self) -> Any:
        """The averaged model (``None`` until the first update)."""
        return self._average_model

    @average_model.setter
    def average_model(self, value: Any) -> None:
        self._average_model = value

    @property
    def averaging_kwargs(self) -> dict[str, Any]:
        """The keyword arguments given for ``AveragedModel`` (``avg_fn``, ``multi_avg_fn``...)."""
        return self._kwargs

    @property
    def averaging_device(self) -> torch.device | None:
        """The device the average is kept on (``None``: the model's)."""
        return self._device


class FSDPStrategyAdapter(FSDPStrategy):
    """Lightning's ``FSDPStrategy`` whose private wrapping hook is public: override :meth:`wrap_model` (called where
    Lightning calls ``_setup_model``); :meth:`finish_wrapping` does what Lightning does after the FSDP wrapper."""

    def _setup_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.wrap_model(model)

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Wrap ``model`` in FSDP as Lightning does."""
        return super()._setup_model(model)

    def finish_wrapping(self, model: torch.nn.Module) -> None:
        """After an FSDP wrapper made outside :meth:`wrap_model`: move torchmetrics to the device and apply the
        strategy's activation checkpointing, as Lightning's own wrapping does."""
        from lightning.pytorch.strategies.fsdp import _move_torchmetrics_to_device, _setup_activation_checkpointing

        _move_torchmetrics_to_device(model, self.root_device)
        _setup_activation_checkpointing(model, self._activation_checkpointing_kwargs)


# --------------------------------------------------------------------------------------------- torch and litgpt
def apply_activation_checkpointing(model: torch.nn.Module, check_fn: Callable[[torch.nn.Module], bool]) -> None:
    """Wrap the submodules ``check_fn`` accepts so their activations are recomputed in the backward pass (torch's
    ``apply_activation_checkpointing``, only exported from a private module)."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing as apply

    apply(model, check_fn=check_fn)


def block_attention(block: torch.nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                    mask: torch.Tensor | None, input_pos: torch.Tensor | None) -> torch.Tensor:
    """A litgpt ``Block``'s attention, called with litgpt 0.5's positional signature
    ``attn(x, cos, sin, mask, input_pos, input_pos_maxp1)`` (its key/value cache, if set, is used)."""
    return block.attn(x, cos, sin, mask, input_pos, None)
