"""Tests for litcpt.callbacks.lr_schedule.

Fast tests drive the hooks with a minimal fake trainer; tests marked ``slow`` run
real (tiny, CPU) Lightning trainings: per-optimizer-step timing with gradient
accumulation, bitwise-exact resume from a checkpoint, logging, tokens vs steps.
"""

from __future__ import annotations

import csv
import math
import warnings
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger

from litcpt.callbacks.lr_schedule import WSDLR, ConstantLR, InfiniteLR, LRScheduleCallback, WarmupCosineLR
from litcpt.schedules.formulas import WSD, Constant, Infinite, WarmupCosine

LR = 0.1


# --------------------------------------------------------------------------- #
# fast: fake trainer
# --------------------------------------------------------------------------- #
class FakeModule:
    def __init__(self, tokens_per_step=None):
        self.tokens_per_step = tokens_per_step
        self.logged: list[tuple[str, float]] = []

    def log(self, name, value, **kwargs):
        self.logged.append((name, float(value)))


def fake_trainer(max_steps=100, groups=((LR,),), global_step=0):
    opts = []
    for lrs in groups:
        params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
        opts.append(torch.optim.SGD(params, lr=lrs[0]))
    return SimpleNamespace(
        loggers=[],
        optimizers=opts,
        global_step=global_step,
        max_steps=max_steps,
        estimated_stepping_batches=max_steps,
        lr_scheduler_configs=[],
    )


def drive(cb, trainer, module, n_steps, accumulate=1):
    """Run hooks like the fit loop; returns lr of optimizer 0 / group 0 at each micro-batch."""
    cb.on_fit_start(trainer, module)
    cb.on_train_start(trainer, module)
    seen = []
    for _ in range(n_steps):
        for i in range(accumulate):
            cb.on_train_batch_start(trainer, module, None, i)
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])
        trainer.global_step += 1
    return seen


def test_fake_warmup_cosine_sequence_and_logging():
    cb, tr, m = WarmupCosineLR(warmup_steps=10, min_lr_ratio=0.1), fake_trainer(100), FakeModule()
    seen = drive(cb, tr, m, 100)
    ref = WarmupCosine(warmup=10, total=100, max_lr=LR, min_lr=0.1 * LR)
    assert seen == [ref(k) for k in range(100)]
    assert cb.schedule == ref
    assert [v for _, v in m.logged] == seen and {n for n, _ in m.logged} == {"lr"}


def test_fake_accumulation_does_not_stretch():
    cb, tr, m = WarmupCosineLR(warmup=0.1), fake_trainer(20), FakeModule()
    seen = drive(cb, tr, m, 20, accumulate=4)
    ref = WarmupCosine(warmup=2, total=20, max_lr=LR, min_lr=0.1 * LR)
    assert seen == [ref(k) for k in range(20) for _ in range(4)]


def test_fake_group_scaling_and_max_lr_override():
    tr = fake_trainer(50, groups=((0.1, 0.01), (0.5,)))
    cb = ConstantLR(warmup_steps=10, max_lr=0.2, log_lr=False)
    drive(cb, tr, FakeModule(), 5)  # step 4 -> 0.2 * 4/10 = 0.08
    g = [grp["lr"] for opt in tr.optimizers for grp in opt.param_groups]
    # group lr = schedule(t) * initial_lr / base_lr, base_lr = first optimizer's configured lr (0.1)
    assert g == pytest.approx([0.08, 0.008, 0.4], rel=1e-12)
    assert [grp["initial_lr"] for opt in tr.optimizers for grp in opt.param_groups] == [0.1, 0.01, 0.5]


def test_fake_tokens_equal_steps_for_constant_tokens_per_step():
    steps_cb = InfiniteLR(warmup=0.05, cooldown=0.3, anneal=0.2, cooldown_shape="inv_sqrt")
    tok_cb = InfiniteLR(warmup=0.05, cooldown=0.3, anneal=0.2, cooldown_shape="inv_sqrt", unit="tokens")
    a = drive(steps_cb, fake_trainer(80), FakeModule(), 80)
    b = drive(tok_cb, fake_trainer(80), FakeModule(tokens_per_step=4096), 80)  # power of 2: exact scaling
    assert a == b
    assert tok_cb.schedule.warmup == 0.05 * 80 * 4096


def test_fake_tokens_follow_variable_tokens_per_step():
    cb, tr, m = ConstantLR(warmup_tokens=1000, unit="tokens", total_tokens=1e6), fake_trainer(None), FakeModule(100)
    cb.on_fit_start(tr, m)
    cb.on_train_start(tr, m)
    seen = []
    for k in range(6):
        m.tokens_per_step = 100 if k < 3 else 300  # tokens of step k
        cb.on_train_batch_start(tr, m, None, 0)
        seen.append(cb.last_lr)
        tr.global_step += 1
    # progress before step k = tokens of steps < k: 0, 100, 200, 300, 600, 900
    assert seen == pytest.approx([LR * x / 1000 for x in (0, 100, 200, 300, 600, 900)], rel=1e-12)


def test_fake_infinite_later_stage_starts_at_constant():
    cb = InfiniteLR(stage_start="constant", anneal=0.25, const_lr=0.05, min_lr=0.01, anneal_shape="linear")
    seen = drive(cb, fake_trainer(40), FakeModule(), 40)
    assert seen[0] == 0.05 and seen[29] == 0.05
    assert seen[35] == pytest.approx(0.05 + (0.01 - 0.05) * 5 / 10)
    assert cb.schedule == Infinite(0, 0, 30, 10, LR, 0.05, 0.01, anneal_shape="linear")


def test_fake_stage_starts_at_current_global_step():
    # e.g. a new stage continuing from a trainer checkpoint of another stage: max_steps is absolute
    cb, tr = WSDLR(warmup_steps=0, decay=0.5, decay_shape="linear", min_lr=0.0), fake_trainer(150, global_step=100)
    seen = drive(cb, tr, FakeModule(), 50)
    assert cb.schedule == WSD(0, 50, 25, LR, 0.0, "linear")
    assert seen == [WSD(0, 50, 25, LR, 0.0, "linear")(k) for k in range(50)]


def test_fake_state_dict_roundtrip_resumes_exactly():
    full = drive(WarmupCosineLR(warmup=0.1, unit="tokens"), fake_trainer(30), FakeModule(1000), 30, accumulate=2)
    cb, tr, m = WarmupCosineLR(warmup=0.1, unit="tokens"), fake_trainer(30), FakeModule(1000)
    first = drive(cb, tr, m, 12, accumulate=2)
    state = cb.state_dict()
    assert state["schedule"]["kind"] == "warmup_cosine" and state["stage_start_step"] == 0
    resumed = WarmupCosineLR(warmup=0.5, unit="tokens")  # constructor args differ: checkpoint wins (warns)
    tr2 = fake_trainer(30, global_step=12)
    tr2.optimizers[0].load_state_dict(tr.optimizers[0].state_dict())
    with pytest.warns(UserWarning, match="differs from the one resolved"):
        resumed.on_fit_start(tr2, m)  # resolves from args first ...
        resumed.load_state_dict(state)  # ... then a late restore (strategies restoring after setup)
    rest = []
    resumed.on_train_start(tr2, m)
    for _ in range(18):
        for i in range(2):
            resumed.on_train_batch_start(tr2, m, None, i)
            rest.append(tr2.optimizers[0].param_groups[0]["lr"])
        tr2.global_step += 1
    assert first + rest == full


def test_fake_state_from_other_stage_is_ignored():
    cb = WarmupCosineLR(warmup=0.1, stage_name="pretrain")
    drive(cb, fake_trainer(10), FakeModule(), 10)
    new = WarmupCosineLR(warmup=0.1, stage_name="cpt-1")
    assert new.state_key != cb.state_key
    new.load_state_dict(cb.state_dict())
    assert new.schedule is None  # nothing restored: a new stage


def test_state_from_a_newer_litcpt_is_refused_in_one_line():
    cb = WarmupCosineLR(warmup=0.1, stage_name="pretrain")
    drive(cb, fake_trainer(10), FakeModule(), 10)
    state = {**cb.state_dict(), "version": 99}
    with pytest.raises(ValueError, match=r"^WarmupCosineLR: the checkpoint's LR-schedule state has version 99, this "
                                         r"litcpt reads up to 1"):
        WarmupCosineLR(warmup=0.1, stage_name="pretrain").load_state_dict(state)
    older = {k: v for k, v in cb.state_dict().items() if k != "version"}   # states of the first release read as 1
    WarmupCosineLR(warmup=0.1, stage_name="pretrain").load_state_dict(older)


def test_fake_constant_needs_no_stage_length():
    cb, tr = ConstantLR(warmup_steps=4), fake_trainer(-1)
    tr.estimated_stepping_batches = math.inf
    assert drive(cb, tr, FakeModule(), 6) == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1, 0.1], rel=1e-12)
    assert cb.schedule == Constant(lr=LR, warmup=4)


@pytest.mark.parametrize(
    "make, trainer_kw, match",
    [
        (
            lambda: WarmupCosineLR(warmup_steps=200),
            {},
            r"WarmupCosineLR: warmup=200 is longer than the stage \(total=100\)",
        ),
        (lambda: WSDLR(warmup_steps=50, decay_steps=60), {}, r"warmup=50 \+ decay=60 = 110 is longer than the stage"),
        (lambda: InfiniteLR(cooldown_steps=90, anneal_steps=20), {}, r"warmup=1 \+ cooldown=90 \+ anneal=20 = 111"),
        (lambda: InfiniteLR(const_lr=0.5), {}, r"const_lr=0.5 must lie in \[min_lr, max_lr\]"),
        (lambda: WarmupCosineLR(min_lr=1.0), {}, r"min_lr=1.0 must be <= max_lr=0.1"),
        (lambda: WarmupCosineLR(), {"max_steps": -1, "inf": True}, r"trainer.max_steps=-1 gives no stage length"),
        (lambda: WarmupCosineLR(unit="tokens"), {}, r"tokens_per_step is needed"),
        (lambda: WarmupCosineLR(warmup_tokens=100), {}, r"tokens_per_step is needed to convert warmup_tokens"),
        (lambda: WarmupCosineLR(total_steps=10), {"global_step": 0, "lr": 0.0}, r"configured lr=0.0 must be > 0"),
    ],
)
def test_fake_resolution_errors(make, trainer_kw, match):
    tr = fake_trainer(trainer_kw.get("max_steps", 100), groups=((trainer_kw.get("lr", LR),),))
    if trainer_kw.get("inf"):
        tr.estimated_stepping_batches = math.inf
    with pytest.raises(ValueError, match=match) as info:
        make().on_fit_start(tr, FakeModule())
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: WarmupCosineLR(warmup=0.1, warmup_steps=10), r"at most one of warmup=0.1, warmup_steps=10"),
        (lambda: WarmupCosineLR(warmup=1.5), r"warmup=1.5 must be in \[0, 1\]"),
        (lambda: WarmupCosineLR(warmup_steps=-3), r"warmup_steps=-3 must be >= 0"),
        (lambda: WarmupCosineLR(min_lr=0.1, min_lr_ratio=0.1), r"at most one of min_lr=0.1, min_lr_ratio=0.1"),
        (lambda: WarmupCosineLR(min_lr_ratio=2), r"min_lr_ratio=2 must be in \[0, 1\]"),
        (lambda: WarmupCosineLR(unit="epochs"), r"unit='epochs' must be one of 'steps', 'tokens'"),
        (lambda: WarmupCosineLR(total_steps=10, total_tokens=5), r"at most one of total_steps=10, total_tokens=5"),
        (lambda: WarmupCosineLR(tokens_per_step=0), r"tokens_per_step=0 must be > 0"),
        (lambda: InfiniteLR(anneal=0.5), r"fractions warmup=0.01 \+ cooldown=0.6 \+ anneal=0.5 = 1.11 exceed 1"),
        (lambda: InfiniteLR(warmup=0.2, cooldown=0.3, constant=0.4, anneal=0.2), r"= 1.1 exceed 1"),
        (lambda: InfiniteLR(stage_start="constant", warmup=0.01), r"warmup=0.01 must be 0 with stage_start='constant'"),
        (lambda: InfiniteLR(stage_start="middle"), r"stage_start='middle' must be one of"),
        (lambda: InfiniteLR(cooldown_shape="linear"), r"cooldown_shape='linear' must be one of"),
        (lambda: WSDLR(decay_shape="step"), r"decay_shape='step' must be one of"),
        (lambda: WSDLR(warmup=0.5, decay=0.6), r"fractions warmup=0.5 \+ decay=0.6 = 1.1 exceed 1"),
    ],
)
def test_constructor_errors(make, match):
    with pytest.raises(ValueError, match=match) as info:
        make()
    assert "\n" not in str(info.value)


def test_fake_resumed_warns_when_arguments_changed():
    cb, tr, m = WSDLR(decay=0.2), fake_trainer(50), FakeModule()
    drive(cb, tr, m, 10)
    state = cb.state_dict()
    same, longer = WSDLR(decay=0.2), WSDLR(decay=0.2)
    same.load_state_dict(state)  # normal order: restore, then on_fit_start
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same.on_fit_start(fake_trainer(50, global_step=10), m)
    longer.load_state_dict(state)
    with pytest.warns(UserWarning, match="continuing with the checkpoint's schedule"):
        longer.on_fit_start(fake_trainer(80, global_step=10), m)  # max_steps changed on resume
    assert longer.schedule == cb.schedule


def test_configurable_with_jsonargparse():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(InfiniteLR, "cb")
    cfg = parser.parse_args(["--cb.warmup_steps=10", "--cb.unit=tokens", "--cb.cooldown_shape=inv_sqrt"])
    cb = parser.instantiate_classes(cfg).cb
    assert (cb.unit, cb.config.cooldown_shape, cb.config.warmup.steps) == ("tokens", "inv_sqrt", 10)


def test_public_names():
    for cls in (WarmupCosineLR, InfiniteLR, WSDLR, ConstantLR):
        assert issubclass(cls, LRScheduleCallback) and cls.__doc__


# --------------------------------------------------------------------------- #
# slow: real Lightning trainings on CPU
# --------------------------------------------------------------------------- #
class TinyModel(BoringModel):
    """BoringModel (Linear 32->2, 64 random samples, batch size 1) with a plain SGD or AdamW optimizer."""

    def __init__(self, tokens_per_step=None, groups=False):
        super().__init__()
        self.tokens_per_step = tokens_per_step
        self.groups = groups

    def configure_optimizers(self):
        if self.groups:
            w, b = self.layer.weight, self.layer.bias
            return torch.optim.AdamW([{"params": [w]}, {"params": [b], "lr": LR / 10}], lr=LR)
        return torch.optim.SGD(self.parameters(), lr=LR)


class RecordLR(Callback):
    """Records the LR each optimizer step actually uses, and the LR at each micro-batch."""

    def __init__(self):
        self.steps: list[tuple[int, list[float]]] = []
        self.micro: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.micro.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.steps.append((trainer.global_step, [g["lr"] for g in optimizer.param_groups]))


class Boom(RuntimeError):
    pass


class KillAfter(Callback):
    """Saves a checkpoint after optimizer step ``k`` then crashes the run."""

    def __init__(self, k, path):
        self.k, self.path = k, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.k and not trainer.fit_loop._should_accumulate():
            trainer.save_checkpoint(self.path)
            raise Boom(f"killed after step {self.k}")


def make_trainer(tmp_path, callbacks, max_steps, accumulate=1, logger=False, **kw):
    kw.setdefault("log_every_n_steps", 1)
    return Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        accumulate_grad_batches=accumulate,
        callbacks=callbacks,
        logger=logger,
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        **kw,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "make, tps",
    [
        (lambda: WarmupCosineLR(warmup_steps=3, min_lr_ratio=0.1), None),
        (lambda: InfiniteLR(warmup=0.1, cooldown=0.3, anneal=0.3, unit="tokens", cooldown_shape="inv_sqrt"), 384),
        (lambda: WSDLR(warmup_steps=2, decay=0.5, decay_shape="cosine"), None),
    ],
    ids=["cosine-steps", "infinite-tokens", "wsd-steps"],
)
def test_resume_from_checkpoint_is_bitwise_exact(tmp_path, make, tps):
    n, k = 16, 7
    full = RecordLR()
    make_trainer(tmp_path, [make(), full], n, accumulate=2).fit(TinyModel(tps))

    ckpt = tmp_path / "killed.ckpt"
    part = RecordLR()
    with pytest.raises(Boom):
        make_trainer(tmp_path, [make(), part, KillAfter(k, ckpt)], n, accumulate=2).fit(TinyModel(tps))
    assert [s for s, _ in part.steps] == list(range(k))

    rest = RecordLR()
    make_trainer(tmp_path, [make(), rest], n, accumulate=2).fit(TinyModel(tps), ckpt_path=ckpt)
    assert [s for s, _ in rest.steps] == list(range(k, n))
    assert part.steps + rest.steps == full.steps  # bitwise equal floats
    assert len({lr for _, (lr,) in full.steps}) > n // 2  # the schedule actually moved


@pytest.mark.slow
def test_accumulation_changes_lr_once_per_optimizer_step(tmp_path):
    rec, cb = RecordLR(), WarmupCosineLR(warmup=0.25, min_lr_ratio=0.1)
    make_trainer(tmp_path, [cb, rec], 8, accumulate=4).fit(TinyModel())
    ref = WarmupCosine(warmup=2, total=8, max_lr=LR, min_lr=0.1 * LR)
    assert [lrs for _, lrs in rec.steps] == [[ref(k)] for k in range(8)]
    assert rec.micro == [ref(k) for k in range(8) for _ in range(4)]


@pytest.mark.slow
def test_tokens_unit_matches_steps_unit(tmp_path):
    a, b = RecordLR(), RecordLR()
    make_trainer(tmp_path, [WSDLR(warmup=0.2, decay=0.4), a], 10, accumulate=2).fit(TinyModel())
    cb = WSDLR(warmup=0.2, decay=0.4, unit="tokens")
    make_trainer(tmp_path, [cb, b], 10, accumulate=2).fit(TinyModel(tokens_per_step=2 * 2 * 128))
    assert a.steps == b.steps
    assert cb.schedule.total == 10 * 512


@pytest.mark.slow
def test_lr_in_csv_logs_and_learning_rate_monitor(tmp_path):
    cb, mon, rec = InfiniteLR(warmup_steps=2, cooldown_steps=4, anneal_steps=3), LearningRateMonitor("step"), RecordLR()
    logger = CSVLogger(tmp_path, name="csv")
    make_trainer(tmp_path, [cb, mon, rec], 12, logger=logger).fit(TinyModel(groups=True))
    expected = [cb.schedule(k) for k in range(12)]
    ratio = (LR / 10) / LR  # group lr = schedule(t) * initial_lr / base_lr
    assert [lrs for _, lrs in rec.steps] == [[v, v * ratio] for v in expected]
    with open(logger.log_dir + "/metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("lr")]
    assert [(int(r["step"]), float(r["lr"])) for r in rows] == list(enumerate(expected))
    assert mon.lrs["lr-AdamW/pg1"] == expected
    assert mon.lrs["lr-AdamW/pg2"] == [v * ratio for v in expected]


@pytest.mark.slow
def test_validation_error_raised_before_any_step(tmp_path):
    rec = RecordLR()
    trainer = make_trainer(tmp_path, [WarmupCosineLR(warmup_steps=50), rec], 10)
    with pytest.raises(ValueError, match=r"warmup=50 is longer than the stage \(total=10\)"):
        trainer.fit(TinyModel())
    assert rec.steps == []


@pytest.mark.slow
def test_stage_length_from_max_epochs(tmp_path):
    rec, cb = RecordLR(), WarmupCosineLR(warmup=0.1)
    make_trainer(tmp_path, [cb, rec], -1, accumulate=4, max_epochs=1).fit(TinyModel())  # 64 batches / 4
    assert cb.schedule.total == 16
    assert [lrs[0] for _, lrs in rec.steps] == [cb.schedule(k) for k in range(16)]


@pytest.mark.slow
def test_lr_logged_every_n_steps_with_accumulation(tmp_path):
    cb, logger = WarmupCosineLR(warmup_steps=2), CSVLogger(tmp_path, name="csv")
    make_trainer(tmp_path, [cb], 12, accumulate=2, logger=logger, log_every_n_steps=3).fit(TinyModel())
    with open(logger.log_dir + "/metrics.csv") as f:
        rows = [(int(r["step"]), float(r["lr"])) for r in csv.DictReader(f) if r.get("lr")]
    assert rows == [(k, cb.schedule(k)) for k in (2, 5, 8, 11)]
