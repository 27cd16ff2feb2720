"""Silence the log lines and warnings a user cannot act on, each by its exact message, all of them here.

* Lightning's "💡 Tip: ... litlogger" and "... litmodels" advertisements, printed by every ``Trainer``, and its
  note that the Trainer already has a model summary callback (litcpt's :class:`~litcpt.callbacks.summary.RunSummary`).
* The ``isinstance(treespec, LeafSpec)`` deprecation that torch raises inside Lightning's own ``_pytree`` helper.
* For a run with a frozen reference model (DPO), Lightning's "Found N module(s) in eval mode at the start of
  training": the reference is meant to stay in eval mode.

Nothing else is filtered: no category or module is silenced as a whole.
"""

from __future__ import annotations

import logging
import warnings

LOG_LINES = ("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]",
             "💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels]",
             "Skipping setting a default `ModelSummary` callback.")
"""The Lightning log lines dropped (its rank-zero loggers), each by the start of its exact text (the model-summary
note: by its end, after the list of callbacks)."""

WARNINGS = {
    "pytree": r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    "eval_mode": r"Found \d+ module\(s\) in eval mode at the start of training\. This may lead to unexpected "
                 r"behavior during training\. If this is intentional, you can ignore this warning\.",
}
"""The warnings silenced, by the start of their exact message (``warnings.filterwarnings``' ``message``)."""

_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
            "lightning_utilities.core.rank_zero")


class _DropMessages(logging.Filter):
    def __init__(self, *needles: str) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(message.startswith(needle) or message.endswith(needle) for needle in self.needles)


_DROP = _DropMessages(*LOG_LINES)


def quiet_third_party(*, frozen_modules: bool = False) -> None:
    """Install the filters (idempotent; again after the warning filters were reset, as the tests' in-process runs
    do). ``frozen_modules``: the run's module keeps modules in eval mode on purpose (DPO's reference)."""
    for name in _LOGGERS:
        logging.getLogger(name).addFilter(_DROP)  # the same filter object once per logger
    for key in ("pytree", *(["eval_mode"] if frozen_modules else [])):
        _ignore(WARNINGS[key])


def _ignore(message: str) -> None:
    if not any(f[0] == "ignore" and getattr(f[1], "pattern", None) == message for f in warnings.filters):
        warnings.filterwarnings("ignore", message=message)
