"""The console of a run has none of the warnings a user cannot act on; each is filtered by its exact message, in
litcpt/runtime/quiet.py, and nothing else is."""

from __future__ import annotations

import warnings

import pytest

from litcpt.runtime import quiet
from tests.helpers import run_litcpt
from tests.models.test_dpo import tiny_dpo_recipe

NOISE = ("module(s) in eval mode", "litlogger", "litmodels", "LeafSpec", "Skipping setting a default `ModelSummary`")


def test_only_the_exact_messages_are_filtered():
    with warnings.catch_warnings():
        warnings.resetwarnings()
        quiet.quiet_third_party(frozen_modules=True)
        quiet.quiet_third_party(frozen_modules=True)  # idempotent: one filter each
        added = [f for f in warnings.filters if f[0] == "ignore"]
        assert sorted(f[1].pattern for f in added) == sorted(quiet.WARNINGS.values())
        assert all(f[2] is Warning and f[3] is None for f in added)  # no category or module silenced as a whole
    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        quiet.quiet_third_party(frozen_modules=True)
        warnings.warn("Found 30 module(s) in eval mode at the start of training. This may lead to unexpected "
                      "behavior during training. If this is intentional, you can ignore this warning.", stacklevel=1)
        warnings.warn("Found 3 modules that are odd", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["Found 3 modules that are odd"]


@pytest.mark.slow
def test_a_tiny_dpo_run_prints_none_of_the_noise(tmp_path):
    """A fresh process (warnings are shown once per process: an in-process run could miss them)."""
    recipe = tiny_dpo_recipe(tmp_path, "run", micro_batch_size=4, save_interval=2)
    proc = run_litcpt("dpo", "--config", str(recipe), fresh_process=True)
    console = proc.stdout + proc.stderr
    assert "Modules in eval mode" in console  # the model summary still says so: only the warning is gone
    for noise in NOISE:
        assert noise not in console, (noise, console[-3000:])
