"""``python tests/rank_function.py MODULE:FUNCTION ARG ...`` on each rank (a script for :mod:`tests.rank_pool`): calls
``FUNCTION(rank, world_size, master_port, *ARGS)`` with this rank's place from the environment a launcher sets, as
``torch.multiprocessing.spawn`` would call it with its own arguments."""

from __future__ import annotations

import importlib
import os
import sys

module, _, name = sys.argv[1].partition(":")
function = getattr(importlib.import_module(module), name)
function(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["MASTER_PORT"]), *sys.argv[2:])
