"""Resume semantics of a new stage (``carry.*``): weights only, + optimizer, + schedule, + data, everything.

Each stage is a real (tiny, in-process) ``litcpt pretrain`` run. Equalities are bitwise against one uninterrupted run
with the same LR sequence."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

from litcpt.callbacks import ConstantLR, WarmupCosineLR
from litcpt.schedules.formulas import WarmupCosine
from litcpt.training.args import EvalArgs, TrainArgs
from litcpt.training.carry import CarryArgs
from tests.conftest import tiny_config
from tests.helpers import REPO, read_metrics, series

pytestmark = pytest.mark.slow

LR = 3e-3
BATCH = 8


def run(tmp_path, name, steps, lr_schedule, *, initial=None, carry=CarryArgs(), cache=None):
    from litcpt.commands.pretrain import setup
    from litcpt.data import TextFiles

    data = TextFiles(train_data_path=REPO / "litcpt/assets/data/pretrain/en", name="en",
                     cache_dir=cache or tmp_path / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        setup(model_config=None if initial else tiny_config(n_embd=64, intermediate_size=128),
              out_dir=tmp_path / name, initial_checkpoint_dir=initial, data=data,
              train=TrainArgs(global_batch_size=BATCH, micro_batch_size=4, max_steps=steps, save_interval=10,
                              log_interval=1),
              eval=EvalArgs(interval=1000, max_iters=1, final_validation=False), lr_schedule=lr_schedule,
              optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": LR, "weight_decay": 0.1}},
              accelerator="cpu", devices=1, seed=42, carry=carry)
    return tmp_path / name


def weights(run_dir):
    return torch.load(run_dir / "final" / "lit_model.pth", weights_only=True)


def assert_same(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def lrs(run_dir):
    return [v for _, v in series(read_metrics(run_dir), "lr")]


def consumed(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt["TextFiles"]["consumed_samples"]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """10 steps of a 20-step cosine schedule; the uninterrupted 20-step run for comparison."""
    tmp = tmp_path_factory.mktemp("carry")
    cosine = dict(warmup_steps=2, total_steps=20, min_lr_ratio=0.1)
    first = run(tmp, "s1", 10, WarmupCosineLR(**cosine), cache=tmp / "cache")
    straight = run(tmp, "straight", 20, WarmupCosineLR(**cosine), cache=tmp / "cache")
    return tmp, first, straight, cosine


def test_everything_carried_equals_the_uninterrupted_run(stage1, tmp_path):
    tmp, first, straight, cosine = stage1
    second = run(tmp_path, "s2", 10, WarmupCosineLR(warmup_steps=5), initial=first / "final",
                 carry=CarryArgs(optimizer=True, schedule=True, data=True), cache=tmp / "cache")
    assert_same(second, straight)
    assert lrs(second) == pytest.approx(lrs(straight)[10:], rel=1e-12)
    assert consumed(second) == 20 * BATCH


def test_schedule_only_continues_the_lr_curve(stage1, tmp_path):
    tmp, first, straight, cosine = stage1
    second = run(tmp_path, "s2", 10, ConstantLR(), initial=first / "final", carry=CarryArgs(schedule=True),
                 cache=tmp / "cache")
    ref = WarmupCosine(warmup=2, total=20, max_lr=LR, min_lr=0.1 * LR)
    assert lrs(second) == pytest.approx([ref(k) for k in range(10, 20)], rel=1e-12)
    assert consumed(second) == 10 * BATCH  # the data stream restarted
    with pytest.raises(AssertionError):
        assert_same(second, straight)  # a fresh optimizer: not the uninterrupted run


def test_data_only_continues_the_stream_and_weights_only_restarts_it(stage1, tmp_path):
    tmp, first, _, _ = stage1
    data_only = run(tmp_path, "data", 10, ConstantLR(warmup_steps=2), initial=first / "final",
                    carry=CarryArgs(data=True), cache=tmp / "cache")
    weights_only = run(tmp_path, "weights", 10, ConstantLR(warmup_steps=2), initial=first / "final",
                       cache=tmp / "cache")
    assert consumed(data_only) == 20 * BATCH and consumed(weights_only) == 10 * BATCH
    assert lrs(data_only)[0] == lrs(weights_only)[0] == 0.0  # both re-warm with the new schedule


class ConstantThenRewarm(ConstantLR):
    """The LR sequence of "10 constant steps, then a new stage that re-warms over 4 steps", as one schedule."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        step = trainer.global_step
        if step >= 10:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = LR * min(1.0, (step - 10) / 4)


def test_optimizer_carried_across_a_rewarm_equals_one_run_with_that_lr_sequence(tmp_path):
    first = run(tmp_path, "s1", 10, ConstantLR(log_lr=False))
    second = run(tmp_path, "s2", 10, ConstantLR(warmup_steps=4, log_lr=False), initial=first / "final",
                 carry=CarryArgs(optimizer=True, data=True))
    straight = run(tmp_path, "straight", 20, ConstantThenRewarm(log_lr=False))
    assert_same(second, straight)
    fresh = run(tmp_path, "fresh", 10, ConstantLR(warmup_steps=4, log_lr=False), initial=first / "final",
                carry=CarryArgs(data=True))
    with pytest.raises(AssertionError):
        assert_same(fresh, straight)  # without the optimizer state it is another run


def test_carry_errors_are_one_line(stage1, tmp_path):
    tmp, first, _, _ = stage1
    with pytest.raises(ValueError, match=r"carry.optimizer/schedule/data need the run to continue"):
        run(tmp_path, "x", 2, ConstantLR(), carry=CarryArgs(optimizer=True), cache=tmp / "cache")
    with pytest.raises(ValueError, match=r"from global step 10 but initial_checkpoint_dir .* from step 5"):
        import shutil

        shutil.copytree(first / "step-00000010", tmp_path / "run" / "step-00000005")
        (tmp_path / "run" / "checkpoints").mkdir()
        shutil.copy(first / "checkpoints" / "step-00000010.ckpt",
                    tmp_path / "run" / "checkpoints" / "step-00000005.ckpt")
        run(tmp_path, "y", 2, ConstantLR(), initial=tmp_path / "run" / "step-00000005",
            carry=CarryArgs(optimizer=True), cache=tmp / "cache")
    assert math.isfinite(LR)


def adam_steps(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return {int(s["step"]) for s in ckpt["optimizer_states"][0]["state"].values()}


@pytest.mark.parametrize("optimizer,schedule,data", list(itertools.product((False, True), repeat=3)))
def test_each_carry_key_acts_alone(stage1, tmp_path, optimizer, schedule, data):
    """All 8 combinations (4 of them are not covered above): each key changes exactly its own part of the stage."""
    tmp, first, _, _ = stage1
    second = run(tmp_path, "s2", 10, ConstantLR(warmup_steps=2), initial=first / "final",
                 carry=CarryArgs(optimizer=optimizer, schedule=schedule, data=data), cache=tmp / "cache")
    assert adam_steps(first) == {10}
    assert adam_steps(second) == ({20} if optimizer else {10})  # AdamW's step counts (bias correction) carried or not
    ref = WarmupCosine(warmup=2, total=20, max_lr=LR, min_lr=0.1 * LR)
    if schedule:
        assert lrs(second) == pytest.approx([ref(k) for k in range(10, 20)], rel=1e-12)
    else:
        assert lrs(second)[:3] == pytest.approx([0.0, LR / 2, LR], rel=1e-12)  # ConstantLR re-warms over 2 steps
    assert consumed(second) == (20 if data else 10) * BATCH


def test_a_carried_schedule_is_handed_to_lr_phases(stage1, tmp_path):
    """``carry.schedule``: the stage continues from the checkpoint (it began at step -10 of the new run), and so do
    the data phases triggered by the LR."""
    from litcpt.commands.pretrain import setup
    from litcpt.data import Replay, TextFiles
    from litcpt.schedules import LRStage

    tmp, first, _, _ = stage1
    ref = WarmupCosine(warmup=2, total=20, max_lr=LR, min_lr=0.1 * LR)
    pretrain = REPO / "litcpt/assets/data/pretrain"
    data = Replay(new=TextFiles(pretrain / "en", name="en"), replay=TextFiles(pretrain / "fr", name="fr"),
                  fraction=0.0, phases=[{"lr_below": (ref(14) + ref(15)) / 2, "fraction": 0.5}],
                  cache_dir=tmp / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        setup(initial_checkpoint_dir=first / "final", out_dir=tmp_path / "s2", data=data,
              train=TrainArgs(global_batch_size=BATCH, micro_batch_size=4, max_steps=10, save_interval=10,
                              log_interval=1),
              eval=EvalArgs(interval=1000, max_iters=1, final_validation=False), lr_schedule=ConstantLR(),
              optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": LR, "weight_decay": 0.1}},
              accelerator="cpu", devices=1, seed=42, carry=CarryArgs(schedule=True))
    assert data.lr_stage == LRStage(ref, first_step=-10)
    assert data.mixer().starts == [0, 5 * BATCH]  # step 5 of this run is step 15 of the carried stage
