"""2 gloo ranks on CPU through the CLI: ddp, fsdp2 (fully_shard) and fsdp (FSDP1 via the CPU subclass)."""

from __future__ import annotations

import pytest
import torch
from litgpt import GPT, Config

from tests.helpers import read_metrics, run_litcpt, series, tiny_recipe

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2", "fsdp"])
def test_two_ranks_train_and_consolidate(tmp_path, strategy):
    recipe = tiny_recipe(tmp_path, **{"train.max_steps": 12, "train.save_interval": 6, "eval.interval": 6})
    run_litcpt("pretrain", "--config", str(recipe), "--devices", "2", "--strategy", strategy,
               "--accelerator", "cpu", timeout=900)
    out = tmp_path / "out"
    losses = [v for _, v in series(read_metrics(out), "train/loss")]
    assert len(losses) >= 10
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3, losses

    # one consolidated litgpt checkpoint, loadable in this single process
    final = out / "final"
    state = torch.load(final / "lit_model.pth", weights_only=True)
    model = GPT(Config.from_file(final / "model_config.yaml"))
    model.load_state_dict(state, strict=True)
    assert all(not k.startswith(("model.", "_forward_module", "module.")) for k in state)
    periodic = torch.load(out / "step-00000006" / "lit_model.pth", weights_only=True)
    assert periodic.keys() == state.keys()
    assert any(not torch.equal(periodic[k], state[k]) for k in state)
