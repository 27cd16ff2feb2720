"""Deprecated: the argument groups moved to :mod:`litcpt.args` ("config" means ``litgpt.Config`` everywhere else).

This shim re-exports them for one release; import from ``litcpt.args`` instead.
"""

from __future__ import annotations

import warnings

from litcpt.args import EvalArgs, OptimizerArg, OptimizerCallable, TrainArgs, make_optimizer, optimizer_lr

__all__ = ["EvalArgs", "OptimizerArg", "OptimizerCallable", "TrainArgs", "make_optimizer", "optimizer_lr"]

warnings.warn("litcpt.config is deprecated: import TrainArgs, EvalArgs, ... from litcpt.args", DeprecationWarning,
              stacklevel=2)
