"""Data phases (a replay share that changes at token counts, exact at every prefix) and max_repetition caps."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from litcpt.assets import data_dir, tokenizer_dir
from litcpt.data import Replay
from litcpt.data.mixing.blend import Mixer
from litcpt.data.mixing.phases import PhasedMixer, parse_phases

EN = data_dir() / "pretrain" / "en"
FR = data_dir() / "pretrain" / "fr"


def test_one_phase_is_the_replay_mixer():
    plain, phased = Mixer(0.05, [3, 1]), PhasedMixer([(0, 0.05)], [3, 1])
    positions = np.arange(3000)
    for a, b in zip(plain.locate(positions), phased.locate(positions)):
        assert np.array_equal(a, b)
    for p in (0, 1, 19, 20, 21, 2999, 10**9):
        assert plain.counts_at(p) == phased.counts_at(p)


def test_every_prefix_within_half_across_boundaries():
    phases = [(0, Fraction(1, 10)), (100, Fraction(1, 2)), (250, Fraction(0)), (400, Fraction(3, 10))]
    mixer = PhasedMixer(phases, [1, 1])
    sources, local = mixer.locate(np.arange(700))
    replay = np.cumsum(sources >= 1)
    for p in range(1, 701):
        target = mixer.target(p)
        assert abs(replay[p - 1] - target) <= Fraction(1, 2), p
        assert mixer.counts_at(p)[0] == p - replay[p - 1]
        assert sum(mixer.counts_at(p)[1:]) == replay[p - 1]
    assert mixer.target(700) == Fraction(1, 10) * 100 + Fraction(1, 2) * 150 + 0 + Fraction(3, 10) * 300
    assert not (sources[260:400] >= 1).any()  # fraction 0: no replay at all in that phase
    # source-local indices are consecutive per source (each block once per epoch, in stream order)
    for k in range(3):
        assert np.array_equal(local[sources == k], np.arange((sources == k).sum()))


def test_parse_phases_tokens_to_samples_and_errors():
    assert parse_phases([{"tokens": 640, "fraction": 0.5}], samples_per_token=Fraction(1, 64),
                        default_fraction=0.05) == [(0, Fraction(1, 20)), (10, Fraction(1, 2))]
    assert parse_phases([{"tokens": 0, "fraction": 0.25}], samples_per_token=Fraction(1, 64),
                        default_fraction=0.05) == [(0, Fraction(1, 4))]
    for phases, match in (([{"tokens": 10}], r"phases\[0\] must be a mapping with keys"),
                          ([{"tokens": 10, "fraction": 1.0}], r"phases\[0\].fraction must be in \[0, 1\)"),
                          ([{"tokens": 10, "fraction": 0.1}, {"tokens": 5, "fraction": 0.2}],
                           r"phases\[1\].tokens=5 must be larger"),
                          ([{"tokens": -1, "fraction": 0.1}], r"phases\[0\].tokens must be a number >= 0")):
        with pytest.raises(ValueError, match=match):
            Replay(new=FR, replay=EN, phases=phases)


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    dm = Replay(new=FR, replay=EN, fraction=0.0, phases=[{"tokens": 32 * 40, "fraction": 0.5}],
                cache_dir=tmp_path_factory.mktemp("phases-cache"), max_repetition={"replay0": 1.0})
    dm.connect(tokenizer_dir(), batch_size=4, max_seq_length=32)
    dm.prepare_data()
    dm.setup()
    return dm


def test_replay_with_phases_streams_the_phased_mix(replay):
    stream = replay.train_stream()
    assert isinstance(stream.mixer, PhasedMixer)
    batches = [b for _, b in zip(range(20), iter(stream))]  # 80 samples: 40 without replay, 40 half replay
    assert all(b.shape == (4, 33) for b in batches)
    counts = stream.mixer.counts_at(80)
    assert counts == [60, 20]
    sources, _ = stream.mixer.locate(np.arange(80))
    assert not sources[:40].any() and sources[40:].sum() == 20


def test_max_repetition_error_and_warning(replay):
    en_blocks = len(replay.replay[0].train_blocks())
    ok = 40 + 2 * en_blocks - 2  # the replay phase gives en half of the samples after 40
    epochs = replay.check_repetition(ok)
    assert epochs[1] <= 1.0
    with pytest.raises(ValueError, match=r"source 'replay0' would be used 1\.\d+ times .* more than max_repetition=1"):
        replay.check_repetition(ok + 4)
    replay.on_repetition = "warn"
    try:
        with pytest.warns(UserWarning, match="more than max_repetition=1"):
            replay.check_repetition(ok + 4)
    finally:
        replay.on_repetition = "error"
    with pytest.raises(ValueError, match=r"max_repetition must be a positive number"):
        Replay(new=FR, replay=EN, max_repetition=0)
    with pytest.raises(ValueError, match=r"max_repetition names unknown sources \['de'\]"):
        replay.max_repetition = {"de": 1.0}
        try:
            replay.check_repetition(10)
        finally:
            replay.max_repetition = {"replay0": 1.0}


# ------------------------------------------------------------------------------------------------ LR-threshold phases
def test_lr_crossing_step_is_the_first_step_that_stays_below():
    from litcpt.data.mixing.phases import lr_crossing_step
    from litcpt.schedules.formulas import WarmupCosine

    schedule = WarmupCosine(warmup=10, total=100, max_lr=1e-3, min_lr=1e-4)
    k = lr_crossing_step(schedule, 5e-4, steps=100)
    lrs = [schedule(j) for j in range(100)]
    assert lrs[0] < 5e-4 and lrs[k - 1] >= 5e-4 and all(lr < 5e-4 for lr in lrs[k:])  # the warmup does not count
    assert k == lr_crossing_step(schedule, 5e-4, steps=100, chunk=7)  # the backward scan's chunks do not matter
    assert lr_crossing_step(schedule, 1e-4, steps=100) is None  # min_lr is not below 1e-4
    assert lr_crossing_step(schedule, 5e-4, steps=k) is None  # the run ends before the crossing
    assert lr_crossing_step(schedule, 1.0, steps=100) == 0  # always below
    in_tokens = WarmupCosine(warmup=10 * 256, total=100 * 256, max_lr=1e-3, min_lr=1e-4)
    assert lr_crossing_step(in_tokens, 5e-4, steps=100, t_per_step=256) == k


def _fake_trainer(global_step=0, max_steps=100):
    """What the data module reads from its Trainer: the step, the run's length, accumulation and world size."""
    from types import SimpleNamespace

    return SimpleNamespace(global_step=global_step, max_steps=max_steps, accumulate_grad_batches=2, world_size=1)


def _fake_ckpt(path, callback, step, state):
    """A Lightning-checkpoint-shaped file with the LR callback's state at ``step`` (no weights)."""
    import torch

    torch.save({"global_step": step, "callbacks": {callback.state_key: state}, "state_dict": {}}, path)
    return path


def test_lr_phase_is_the_token_phase_at_the_crossing_and_resumes(replay, tmp_path):
    from litcpt.callbacks import WarmupCosineLR
    from litcpt.schedules.formulas import WarmupCosine

    callback = WarmupCosineLR(warmup=0.1, total_steps=100, max_lr=1e-3, min_lr_ratio=0.1)
    schedule = WarmupCosine(warmup=10, total=100, max_lr=1e-3, min_lr=1e-4)  # what it resolves to
    assert callback.schedule is None  # not resolved before on_fit_start: lr_stage resolves it without a Trainer
    per_step = 2 * replay.batch_size  # accumulate 2, 1 rank
    saved = replay.phases, replay.max_repetition
    try:
        replay.phases, replay.max_repetition = [{"lr_below": 5e-4, "fraction": 0.5}], None
        replay.set_lr_stage(callback.lr_stage(max_steps=100))  # what the harness hands over for a fresh run
        replay.trainer = _fake_trainer()
        replay._resume = (0, 0)
        mixer = replay.mixer()
        k = next(j for j in range(10, 100) if schedule(j) < 5e-4)  # decaying from step 10 on
        assert mixer.starts == [0, k * per_step]  # the first sample of the first step below the threshold
        positions = np.arange(100 * per_step)
        sources, _ = mixer.locate(positions)
        steps = positions // per_step
        lr_of_sample = np.array([schedule(int(s)) for s in steps])
        assert not sources[lr_of_sample >= 5e-4].any()  # no replay before the LR falls below 5e-4
        for p in range(1, positions.size + 1):  # exact at every prefix: within 1/2 of the target
            assert abs(int((sources[:p] >= 1).sum()) - mixer.target(p)) <= Fraction(1, 2)
        # the same stream as a token-count phase at the crossing's token count
        tokens = PhasedMixer(parse_phases([{"tokens": k * per_step * 32, "fraction": 0.5}],
                                          samples_per_token=Fraction(1, 32), default_fraction=0.0), [1.0])
        for a, b in zip(mixer.locate(positions), tokens.locate(positions)):
            assert np.array_equal(a, b)

        # resumed at step 37 (after the crossing): the checkpoint's stage and the stream position give the same
        # start; so does a resume before it
        for step in (37, 3):
            state = {**callback.state_dict(), "schedule": schedule.to_dict(), "stage_start_step": 0,
                     "last_step": step}
            resumed = WarmupCosineLR(warmup=0.1, total_steps=100, max_lr=1e-3, min_lr_ratio=0.1)
            ckpt = _fake_ckpt(tmp_path / f"step-{step}.ckpt", resumed, step, state)
            replay.set_lr_stage(resumed.lr_stage(max_steps=100, ckpt_path=ckpt))
            replay.trainer = _fake_trainer(global_step=step)
            replay._resume = (step * per_step, step)
            assert replay.mixer().starts == mixer.starts

        replay.set_lr_stage(callback.lr_stage(max_steps=100))
        replay.trainer = _fake_trainer()
        replay._resume = (0, 0)
        replay.phases = [{"lr_below": 1e-4, "fraction": 0.5}]
        with pytest.raises(ValueError, match=r"phases\[0\].lr_below=0.0001: the LR schedule never falls below it in "
                                             r"this run's 100 steps"):
            replay.mixer()
        replay.phases = [{"tokens": 32 * per_step * (k + 5), "fraction": 0.2}, {"lr_below": 5e-4, "fraction": 0.5}]
        with pytest.raises(ValueError, match=r"phases\[1\] \(lr_below=0.0005, reached at sample \d+\) starts before"):
            replay.mixer()
        replay.trainer = None
        with pytest.raises(ValueError, match=r"phases\[1\].lr_below needs the run's LR schedule"):
            replay.mixer()
    finally:
        replay.phases, replay.max_repetition = saved
        replay.trainer = None
        replay.set_lr_stage(None)
        replay._resume = (0, 0)


def test_lr_phase_arguments_are_checked_in_one_line():
    for phases, match in (([{"lr_below": 0, "fraction": 0.1}], r"phases\[0\].lr_below must be a number > 0"),
                          ([{"lr_below": 1e-4, "tokens": 5, "fraction": 0.1}], r"phases\[0\] must be a mapping"),
                          ([{"lr_below": 1e-4, "fraction": 0.1}, {"lr_below": 2e-4, "fraction": 0.2}],
                           r"phases\[1\].lr_below=0.0002 must be smaller than phases\[0\].lr_below=0.0001")):
        with pytest.raises(ValueError, match=match):
            Replay(new=FR, replay=EN, phases=phases)


# ------------------------------------------------------------------------------------------------ the harness hand-off
def test_the_harness_hands_the_runs_lr_stage_to_lr_phases():
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Callback

    from litcpt.callbacks import WSDLR
    from litcpt.schedules import WSD, LRStage
    from litcpt.training.harness import _hand_lr_stage

    model = SimpleNamespace(optimizer_spec={"class_path": "torch.optim.AdamW", "init_args": {"lr": 3e-3}},
                            tokens_per_step=512, seq_length=64)
    lr_phase = [{"lr_below": 1e-3, "fraction": 0.5}]
    data = Replay(new=FR, replay=EN, phases=lr_phase)
    assert data.needs_lr_stage and data.lr_stage is None
    _hand_lr_stage(data, model, [Callback(), WSDLR(decay=0.5, unit="tokens")], max_steps=40, ckpt_path=None)
    assert data.lr_stage == LRStage(WSD(warmup=0.01 * 40 * 512, total=40 * 512, decay=20 * 512, max_lr=3e-3,
                                        min_lr=0.1 * 3e-3), first_step=0, t_per_step=512)
    _hand_lr_stage(data, model, [Callback()], max_steps=40, ckpt_path=None)  # no litcpt LR callback
    assert data.lr_stage is None
    plain = Replay(new=FR, replay=EN, phases=[{"tokens": 100, "fraction": 0.5}])
    _hand_lr_stage(plain, model, [WSDLR()], max_steps=40, ckpt_path=None)  # nothing follows the LR: not computed
    assert not plain.needs_lr_stage and plain.lr_stage is None
    with pytest.raises(ValueError, match=r"set_lr_stage expects a litcpt.schedules.LRStage"):
        data.set_lr_stage("WSD")


def _pretrain(out_dir, phases, *, cache, resume=False, max_steps=12):
    """A tiny ``litcpt pretrain`` run (in process) on French with English replay from a data phase on."""
    import warnings

    from litcpt.callbacks import WarmupCosineLR
    from litcpt.commands.pretrain import setup
    from litcpt.training.args import EvalArgs, TrainArgs
    from tests.conftest import tiny_config

    data = Replay(new=FR, replay=EN, fraction=0.0, phases=phases, cache_dir=cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        setup(model_config=tiny_config(), out_dir=out_dir, data=data, resume=resume,
              train=TrainArgs(global_batch_size=8, micro_batch_size=4, max_steps=max_steps, save_interval=4,
                              log_interval=1),
              eval=EvalArgs(interval=1000, max_iters=1, final_validation=False),
              lr_schedule=WarmupCosineLR(warmup_steps=1, min_lr_ratio=0.1),
              optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 3e-3}}, accelerator="cpu",
              devices=1, seed=42)
    return data


@pytest.mark.slow
def test_a_pretrain_runs_lr_phase_is_its_token_phase_and_resumes(tmp_path):
    """Under ``litcpt pretrain`` the phase starts at the first step below the threshold (the same run as a token
    phase there, loss for loss), and a run resumed before that step finds it again from the checkpoint's stage."""
    from litcpt.schedules import WarmupCosine
    from tests.helpers import read_metrics, series

    schedule = WarmupCosine(warmup=1, total=12, max_lr=3e-3, min_lr=0.1 * 3e-3)
    k = 7  # the first step from which the LR stays below the threshold
    threshold = (schedule(k - 1) + schedule(k)) / 2
    cache = tmp_path / "cache"
    by_lr = _pretrain(tmp_path / "lr", [{"lr_below": threshold, "fraction": 0.5}], cache=cache)
    assert by_lr.lr_stage.schedule == schedule and by_lr.lr_stage.first_step == 0
    _pretrain(tmp_path / "tokens", [{"tokens": k * 8 * 64, "fraction": 0.5}], cache=cache)
    losses = {name: series(read_metrics(tmp_path / name), "train/loss") for name in ("lr", "tokens")}
    assert len(losses["lr"]) == 12 and losses["lr"] == losses["tokens"]  # bitwise: the same batches

    # resumed at step 4 with a longer run: the LR callback continues the checkpoint's schedule (a new resolution
    # over 16 steps would cross the threshold later), so the phase must start at step k again
    resumed = _pretrain(tmp_path / "resumed", [{"lr_below": threshold, "fraction": 0.5}], cache=cache, max_steps=16,
                        resume=tmp_path / "lr" / "checkpoints" / "step-00000004.ckpt")
    assert resumed.lr_stage == by_lr.lr_stage
    assert series(read_metrics(tmp_path / "resumed"), "train/loss")[:8] == losses["lr"][4:]


@pytest.mark.slow
def test_own_trainer_gives_the_lr_stage_itself(tmp_path):
    """docs/data.md: with your own ``lightning.Trainer``, ``data.set_lr_stage(lr.lr_stage(...))`` before ``fit``;
    forgetting it stops ``fit`` with one line that says so."""
    import lightning as L

    from litcpt.callbacks import WarmupCosineLR
    from litcpt.models.lm import LanguageModel
    from tests.conftest import tiny_config

    def fit(data, lr):
        L.seed_everything(42)
        model = LanguageModel(tiny_config(), optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}})
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=8, accumulate_grad_batches=2, logger=False,
                            limit_val_batches=0, num_sanity_val_steps=0, use_distributed_sampler=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            callbacks=[lr])
        trainer.fit(model, datamodule=data)

    def replay():
        data = Replay(new=FR, replay=EN, fraction=0.0, phases=[{"lr_below": 5e-4, "fraction": 0.5}],
                      cache_dir=tmp_path / "cache")
        data.connect(tokenizer_dir(), batch_size=2, max_seq_length=64)
        return data

    forgot = replay()
    with pytest.raises(ValueError, match=r"phases\[0\].lr_below needs the run's LR schedule.*set_lr_stage") as info:
        fit(forgot, WarmupCosineLR(warmup_steps=1, min_lr_ratio=0.1))
    assert "\n" not in str(info.value)

    data, lr = replay(), WarmupCosineLR(warmup_steps=1, min_lr_ratio=0.1)
    data.set_lr_stage(lr.lr_stage(max_steps=8, peak_lr=1e-3))
    fit(data, lr)
    k = next(j for j in range(1, 8) if all(lr.schedule(i) < 5e-4 for i in range(j, 8)))
    assert data.mixer().starts == [0, k * 2 * 2]  # step k's first sample (micro-batch 2, accumulation 2)
