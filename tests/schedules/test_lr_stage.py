"""``LRScheduleCallback.lr_stage``: the stage a ``fit`` will train with, known before ``fit`` and without a Trainer,
for a fresh run, a resumed one (the checkpoint's stage), another stage (``litcpt anneal``) and a carried schedule; it
is checked against what the callback itself then does under a (fake) Trainer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from litcpt.callbacks import WSDLR, InfiniteLR, WarmupCosineLR
from litcpt.schedules import LRStage, WarmupCosine
from litcpt.training.carry import shifted_lr_state

LR = 0.1
TPS = 256


def fake_trainer(max_steps, global_step=0):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    return SimpleNamespace(max_steps=max_steps, estimated_stepping_batches=max_steps, global_step=global_step,
                           optimizers=[optimizer], lr_scheduler_configs=[], loggers=[])


def module(tokens_per_step=None):
    return SimpleNamespace(tokens_per_step=tokens_per_step, seq_length=32, log=lambda *a, **k: None)


def trained_stage(callback, trainer, pl_module):
    """What the callback trains with: its schedule and stage start after on_fit_start / on_train_start."""
    callback.on_fit_start(trainer, pl_module)
    callback.on_train_start(trainer, pl_module)
    state = callback.state_dict()
    return callback.schedule, state["stage_start_step"]


def save_ckpt(path, step, states):
    torch.save({"global_step": step, "callbacks": states, "state_dict": {}}, path)
    return path


def test_fresh_run_is_a_new_stage_from_step_0():
    stage = WarmupCosineLR(warmup=0.1).lr_stage(max_steps=50, peak_lr=LR)
    assert stage == LRStage(WarmupCosine(warmup=5, total=50, max_lr=LR, min_lr=0.1 * LR), first_step=0, t_per_step=1)
    assert (stage.schedule, stage.first_step) == trained_stage(WarmupCosineLR(warmup=0.1), fake_trainer(50), module())
    tokens = WSDLR(decay=0.5, unit="tokens").lr_stage(max_steps=40, peak_lr=LR, tokens_per_step=TPS)
    assert tokens.t_per_step == TPS and tokens.schedule.total == 40 * TPS
    assert tokens.schedule == trained_stage(WSDLR(decay=0.5, unit="tokens"), fake_trainer(40), module(TPS))[0]


def test_resumed_run_continues_the_checkpoints_stage(tmp_path):
    first = WarmupCosineLR(warmup=0.1, stage_name="s1")
    trainer, pl_module = fake_trainer(50), module()
    first.on_fit_start(trainer, pl_module)
    first.on_train_start(trainer, pl_module)
    for _ in range(20):
        first.on_train_batch_start(trainer, pl_module, None, 0)
        trainer.global_step += 1
    ckpt = save_ckpt(tmp_path / "step-20.ckpt", 20, {first.state_key: first.state_dict()})
    # the resumed run's arguments and max_steps differ: the checkpoint's stage (schedule, start 0) wins, as in fit
    again = WarmupCosineLR(warmup=0.5, stage_name="s1")
    stage = again.lr_stage(max_steps=80, peak_lr=LR, ckpt_path=ckpt)
    assert (stage.schedule, stage.first_step) == (first.schedule, 0)
    again.load_state_dict(torch.load(ckpt, weights_only=True)["callbacks"][again.state_key])  # what fit restores
    with pytest.warns(UserWarning, match="continuing with the checkpoint's schedule"):
        assert trained_stage(again, fake_trainer(80, global_step=20), pl_module) == (stage.schedule, 0)


def test_another_stage_starts_at_the_checkpoints_step(tmp_path):
    """``litcpt anneal``: the branch's LR callback has its own stage_name, so the checkpoint's LR state is not its
    own and the stage starts at the checkpoint's global step, for max_steps minus that many steps."""
    source = InfiniteLR(warmup=0.1, cooldown=0.3)
    ckpt = save_ckpt(tmp_path / "step-10.ckpt", 10, {source.state_key: {
        "version": 1, "stage_name": None, "unit": "steps", "schedule": WarmupCosine(1, 20, LR, 0.0).to_dict(),
        "base_lr": LR, "stage_start_step": 0, "last_step": 9, "tokens_seen": 0.0, "step_tokens": 0.0}})
    branch = InfiniteLR(stage_start="constant", constant_steps=0, anneal_steps=5, total_steps=6, const_lr=0.05,
                        min_lr=0.01, max_lr=0.05, stage_name="anneal@10")
    stage = branch.lr_stage(max_steps=16, peak_lr=LR, ckpt_path=ckpt)
    assert stage.first_step == 10 and stage.schedule.anneal == 5 and stage.lr(10) == 0.05 and stage.lr(15) == 0.01
    assert trained_stage(branch, fake_trainer(16, global_step=10), module()) == (stage.schedule, 10)


def test_carried_schedule_is_the_restored_stage():
    """``carry.schedule``: the checkpoint's state shifted to a run whose steps restart at 0 (the stage began at -10)."""
    old = WarmupCosineLR(warmup_steps=2, total_steps=20, min_lr_ratio=0.1)
    trainer, pl_module = fake_trainer(10), module()
    old.on_fit_start(trainer, pl_module)
    old.on_train_start(trainer, pl_module)
    for _ in range(10):
        old.on_train_batch_start(trainer, pl_module, None, 0)
        trainer.global_step += 1
    carried = WSDLR(decay=0.5)  # the new stage's own schedule is only a fallback
    carried.load_state_dict(shifted_lr_state(old.state_dict(), 10, stage_name=None))
    stage = carried.lr_stage(max_steps=10, peak_lr=LR)
    assert (stage.schedule, stage.first_step) == (old.schedule, -10)
    assert [stage.lr(k) for k in range(10)] == [old.schedule(k) for k in range(10, 20)]
    with pytest.warns(UserWarning, match="continuing with the checkpoint's schedule"):  # WSDLR's own would differ
        assert trained_stage(carried, fake_trainer(10), pl_module) == (old.schedule, -10)


def test_missing_facts_and_unsafe_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match=r"^WarmupCosineLR: the peak LR is unknown"):
        WarmupCosineLR().lr_stage(max_steps=10)
    with pytest.raises(ValueError, match=r"^trainer.max_steps=-1 gives no stage length"):
        WarmupCosineLR().lr_stage(max_steps=-1, peak_lr=LR)
    with pytest.raises(ValueError, match=r"tokens_per_step is needed to convert the progress \(unit='tokens'\)"):
        WarmupCosineLR(unit="tokens", total_tokens=1000).lr_stage(max_steps=10, peak_lr=LR)
    ckpt = tmp_path / "other.ckpt"
    torch.save({"global_step": 3, "callbacks": {}, "something": SimpleNamespace(a=1)}, ckpt)  # not plain data
    with pytest.raises(ValueError, match=r"^ckpt_path: .*other.ckpt' holds types.SimpleNamespace, .*could run") as info:
        WarmupCosineLR().lr_stage(max_steps=10, peak_lr=LR, ckpt_path=ckpt)  # weights_only=True: nothing unpickled
    assert "\n" not in str(info.value)
