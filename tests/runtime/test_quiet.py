"""The console of a run has none of the warnings a user cannot act on; each is filtered by its exact message, in
litcpt/runtime/quiet.py, and nothing else is."""

from __future__ import annotations

import json
import warnings

import pytest
import yaml

from litcpt.runtime import quiet
from tests.conftest import make_checkpoint
from tests.helpers import REPO, run_litcpt
from tests.models.test_dpo import ROWS

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
    recipe = yaml.safe_load((REPO / "recipes/tiny/dpo.yaml").read_text())
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS))
    recipe.update(checkpoint_dir=str(make_checkpoint(tmp_path / "policy")), out_dir=str(tmp_path / "run"))
    recipe["data"]["init_args"].update(train_data_path=str(data), val_data_path=str(data))
    recipe["train"].update(max_steps=2, global_batch_size=4, micro_batch_size=4, log_interval=1, save_interval=2)
    recipe["eval"].update(interval=2, max_iters=1)
    (tmp_path / "dpo.yaml").write_text(yaml.safe_dump(recipe))
    proc = run_litcpt("dpo", "--config", str(tmp_path / "dpo.yaml"), fresh_process=True)
    console = proc.stdout + proc.stderr
    assert "Modules in eval mode" in console  # the model summary still says so: only the warning is gone
    for noise in NOISE:
        assert noise not in console, (noise, console[-3000:])
