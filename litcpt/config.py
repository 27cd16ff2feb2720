"""Deprecated: the argument groups moved to :mod:`litcpt.args` ("config" means ``litgpt.Config`` everywhere else).

This shim re-exports them for one release; import from ``litcpt.args`` instead.
"""

from __future__ import annotations

from litcpt.args import EvalArgs, OptimizerArg, OptimizerCallable, TrainArgs, make_optimizer, optimizer_lr
from litcpt.deprecation import warn_renamed

__all__ = ["EvalArgs", "OptimizerArg", "OptimizerCallable", "TrainArgs", "make_optimizer", "optimizer_lr"]

warn_renamed("litcpt", "the module litcpt.config", "litcpt.args", stacklevel=2)
