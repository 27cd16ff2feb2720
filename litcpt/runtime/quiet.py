"""Silence log lines that are not the user's business (once per process).

* Lightning's "💡 Tip: ... litlogger" advertisement, printed by every ``Trainer``, and its note that the
  Trainer already has a model summary callback (litcpt's :class:`~litcpt.callbacks.summary.RunSummary`).
* The ``isinstance(treespec, LeafSpec)`` deprecation that torch raises inside Lightning's own ``_pytree`` helper.
"""

from __future__ import annotations

import logging
import warnings

_DONE = False


class _DropMessages(logging.Filter):
    def __init__(self, *needles: str) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(needle in message for needle in self.needles)


def quiet_third_party() -> None:
    """Install the filters (idempotent)."""
    global _DONE
    if _DONE:
        return
    _DONE = True
    drop = _DropMessages("litlogger", "Skipping setting a default `ModelSummary`")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning_utilities.core.rank_zero"):
        logging.getLogger(name).addFilter(drop)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
