"""`litcpt anneal --const_lr checkpoint`: anneal a run whose schedule is not an infinite one from the LR stored in
its checkpoint (the OLMo 2 recipe)."""

from __future__ import annotations

import json

import pytest
import torch

from litcpt.cli.main import main
from litcpt.commands.anneal import setup
from litcpt.training.anneal_source import checkpoint_lr, read_source
from tests.helpers import read_metrics, series, tiny_recipe


def test_checkpoint_lr_reads_the_optimizer_state(tmp_path):
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"global_step": 7, "callbacks": {}, "state_dict": {},
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1.25e-3, "params": [0]}]}]}, path)
    assert checkpoint_lr(read_source(path)) == 1.25e-3
    torch.save({"global_step": 7, "callbacks": {}, "state_dict": {}}, path)
    with pytest.raises(ValueError, match=r"holds no optimizer state with a positive lr.*--const_lr as a number"):
        checkpoint_lr(read_source(path))


@pytest.mark.slow
def test_anneal_a_wsd_run_from_its_stored_lr(tmp_path):
    """A WSD run (unknown to the anneal's infinite-schedule logic) is annealed from the LR of its checkpoint."""
    schedule = {"class_path": "litcpt.callbacks.WSDLR", "init_args": {"warmup": 0.1, "decay": 0.5}}
    recipe = tiny_recipe(tmp_path, **{"lr_schedule": schedule, "train.max_steps": 10, "train.save_interval": 6,
                                      "eval.interval": 100})
    main(["pretrain", "--config", str(recipe)])  # in process: the CLI path without the start-up cost
    run = tmp_path / "out"
    ckpt = run / "checkpoints" / "step-00000006.ckpt"
    stored = torch.load(ckpt, weights_only=True)["optimizer_states"][0]["param_groups"][0]["lr"]
    main(["anneal", "--checkpoint", str(ckpt), "--anneal_steps", "3", "--const_lr", "checkpoint", "--min_lr", "0",
          "--shape", "linear", "--out_dir", str(tmp_path / "anneal")])
    record = json.loads((tmp_path / "anneal" / "anneal.json").read_text())
    assert record["const_lr"] == stored and record["const_lr_from"] == "checkpoint"
    lrs = [v for _, v in series(read_metrics(tmp_path / "anneal"), "lr")]
    assert lrs == pytest.approx([stored, stored / 2, 0.0], rel=1e-6, abs=1e-12)
    # without it, the same branch is refused with the hint (before any training)
    with pytest.raises(ValueError, match="'checkpoint' for the LR stored in the checkpoint"):
        setup(checkpoint=ckpt, anneal_steps=3, out_dir=tmp_path / "anneal2")
