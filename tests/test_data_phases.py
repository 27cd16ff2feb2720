"""Data phases (a replay share that changes at token counts, exact at every prefix) and max_repetition caps."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from litcpt.assets import data_dir, tokenizer_dir
from litcpt.data import Replay
from litcpt.data.phases import PhasedMixer, parse_phases
from litcpt.data.sampling import Mixer

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
