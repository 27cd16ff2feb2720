"""Preference-pair runs (`litcpt dpo`, `litcpt reward`) stopped at a checkpoint and resumed train on the batches an
uninterrupted run would: same per-step losses, bitwise the same final weights (mid-epoch, past the first epoch, with
gradient accumulation and a partial last accumulation)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from litcpt.callbacks.lr_schedule import ConstantLR
from litcpt.data.preference.batching import LengthBucketBatchSampler, ResumableBatchesMixin
from litcpt.training.args import EvalArgs, TrainArgs
from tests.conftest import make_checkpoint
from tests.helpers import read_metrics, series


def _rows(n):
    return [{"prompt": f"Question {i}: what is {i} plus {i}?", "chosen": f" It is {2 * i}.",
             "rejected": f" No idea, maybe {3 * i + 1}."} for i in range(n)]


def test_sampler_starts_at_the_saved_epoch_and_batch_once():
    sampler = LengthBucketBatchSampler(batch_size=2, lengths=[3, 1, 4, 1, 5, 9, 2], seed=0)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    sampler.set_epoch(0)
    sampler.start_at(1, 2)
    assert len(sampler) == 4 and list(sampler) == epoch1[2:]
    assert list(sampler) == epoch1          # the next iteration is a whole epoch again


class _Trainer:
    num_training_batches, accumulate_grad_batches = 4, 3   # 2 optimizer steps per epoch (the last one partial)

    def __init__(self, step):
        self.global_step = step


@pytest.mark.parametrize("step,state", [(0, {"epoch": 0, "batch": 0}), (1, {"epoch": 0, "batch": 3}),
                                        (2, {"epoch": 1, "batch": 0}), (5, {"epoch": 2, "batch": 3})])
def test_position_is_the_epoch_and_batch_after_the_saved_step(step, state):
    module = ResumableBatchesMixin()
    module.trainer = _Trainer(step)
    assert module.state_dict() == state
    module.load_state_dict(state)
    sampler = module._resume_sampler(LengthBucketBatchSampler(batch_size=1, lengths=[1] * 4))
    assert (sampler.epoch, sampler._skip, module._pending_start) == (state["epoch"], state["batch"], None)


def _dpo(tmp_path, name, policy, data, steps, resume):
    from litcpt.commands.dpo import setup
    from litcpt.data.preference.datamodule import Preference

    setup(policy, out_dir=tmp_path / name, data=Preference(train_data_path=data, val_data_path=data),
          train=TrainArgs(global_batch_size=4, micro_batch_size=2, max_steps=steps, save_interval=1, log_interval=1),
          eval=EvalArgs(interval=100, max_iters=1), accelerator="cpu", devices=1, resume=resume,
          lr_schedule=ConstantLR(), optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 3e-3}})


def _reward(tmp_path, name, policy, data, steps, resume):
    from litcpt.commands.reward import setup
    from litcpt.data.preference.datamodule import Preference

    setup(policy, out_dir=tmp_path / name, data=Preference(train_data_path=data, val_data_path=data),
          train=TrainArgs(global_batch_size=2, micro_batch_size=2, max_steps=steps, save_interval=1, log_interval=1),
          eval=EvalArgs(interval=100, max_iters=1), accelerator="cpu", devices=1, resume=resume,
          lr_schedule=ConstantLR(), optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 3e-3}})


@pytest.mark.parametrize("run,pairs,stop,total", [(_dpo, 7, 3, 5), (_reward, 8, 5, 7)], ids=["dpo", "reward"])
def test_stopped_and_resumed_run_matches_an_uninterrupted_one(tmp_path, run, pairs, stop, total):
    """dpo: 4 batches of 2 pairs per epoch (the last of 1), 2 per step: stopped after step 3, in epoch 1.
    reward: 4 batches per epoch, one per step: stopped after step 5, in epoch 1. A constant LR: max_steps moves
    no schedule."""
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in _rows(pairs)))
    policy = make_checkpoint(tmp_path / "policy", seed=0)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run(tmp_path, "straight", policy, data, total, False)
        run(tmp_path, "resumed", policy, data, stop, False)
        run(tmp_path, "resumed", policy, data, total, True)
    straight, resumed = (series(read_metrics(tmp_path / name), "train/loss") for name in ("straight", "resumed"))
    assert [s for s, _ in resumed] == list(range(total))
    assert resumed == straight
    a, b = (torch.load(tmp_path / name / "final" / "lit_model.pth", weights_only=True) for name in ("straight",
                                                                                                    "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
