"""Greedy blend and the Replay data module: exact ratios, distributed/worker/resume semantics, validation, errors."""

import types
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from litcpt.assets import data_dir, tokenizer_dir
from litcpt.data import GreedyBlend, Replay, TextFiles, greedy_blend
from litcpt.data.mixing.blend import Mixer
from litcpt.data.mixing.stream import SourceExhaustedError
from tests.helpers import run_litgpt

EN = data_dir() / "pretrain" / "en"
FR = data_dir() / "pretrain" / "fr"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("replay-cache")


def make_replay(cache, new=FR, replay=EN, batch_size=4, T=32, **kwargs) -> Replay:
    dm = Replay(new=new, replay=replay, cache_dir=cache, **kwargs)
    dm.connect(tokenizer_dir(), batch_size=batch_size, max_seq_length=T)
    dm.prepare_data()
    dm.setup()
    return dm


def counts_by_prefix(order: np.ndarray, k: int) -> np.ndarray:
    return np.cumsum(np.eye(k, dtype=np.int64)[order], axis=0)


# ----------------------------------------------------------------------------- greedy blend


@pytest.mark.parametrize("fraction", [0.005, 0.01, 0.05, 0.25])
@pytest.mark.parametrize("n", [1, 2, 19, 20, 21, 199, 1000, 12345])
def test_greedy_blend_prefix_within_one(fraction, n):
    order = greedy_blend([1 - fraction, fraction], n)
    assert order.dtype == np.int64 and order.shape == (n,)
    replay = np.cumsum(order == 1)
    i = np.arange(1, n + 1)
    assert np.all(np.abs(replay - fraction * i) <= 0.5 + 1e-9)  # two sources: within 1/2
    assert abs(int(replay[-1]) - fraction * n) < 1


def test_greedy_blend_rule_and_ties():
    assert greedy_blend([1, 1], 6).tolist() == [0, 1, 0, 1, 0, 1]
    assert greedy_blend([1, 1, 1], 6).tolist() == [0, 1, 2, 0, 1, 2]
    assert greedy_blend([3, 1], 8).tolist() == [0, 0, 1, 0, 0, 0, 1, 0]  # weights are normalised
    assert greedy_blend([0.75, 0.25], 8).tolist() == greedy_blend([3, 1], 8).tolist()
    assert greedy_blend([1.0, 0.0], 5).tolist() == [0] * 5
    # explicit reference implementation of the largest-deficit rule, in exact arithmetic (for these
    # weights Tijdeman's rule, used for >= 3 sources, gives the same order)
    w = [Fraction(1, 2), Fraction(1, 3), Fraction(1, 6)]
    counts, ref = [0, 0, 0], []
    for i in range(60):
        scores = [w[k] * (i + 1) - counts[k] for k in range(3)]
        k = scores.index(max(scores))
        counts[k] += 1
        ref.append(k)
    assert greedy_blend([3, 2, 1], 60).tolist() == ref


def test_greedy_blend_bad_input():
    with pytest.raises(ValueError, match="positive sum"):
        greedy_blend([0, 0], 3)
    with pytest.raises(ValueError, match=">= 0"):
        greedy_blend([1, -1], 3)
    with pytest.raises(ValueError, match="finite"):
        greedy_blend([1, float("nan")], 3)
    with pytest.raises(ValueError, match="empty"):
        greedy_blend([], 3)


weights_st = st.lists(st.floats(min_value=1e-3, max_value=1e3, allow_nan=False), min_size=2, max_size=6)


@settings(max_examples=60, deadline=None)
@given(weights=weights_st, n=st.integers(min_value=0, max_value=1500))
def test_greedy_blend_prefix_bounds_hypothesis(weights, n):
    order = greedy_blend(weights, n)
    K = len(weights)
    w = np.asarray(weights) / sum(weights)
    cum = counts_by_prefix(order, K)
    i = np.arange(1, n + 1)[:, None]
    surplus = cum - w[None] * i
    if n:
        assert surplus.max() < 1 + 1e-9  # never more than one ahead of its share
        assert (-surplus).max() < K - 1 + 1e-9  # behind by less than the others' total surplus
        if K == 2:
            assert np.abs(surplus).max() <= 0.5 + 1e-9
        assert np.abs(surplus).max() <= 1 - 1 / (2 * K - 2) + 1e-9  # Tijdeman: within one, any K


@settings(max_examples=40, deadline=None)
@given(
    fraction=st.floats(min_value=1e-4, max_value=0.99),
    start=st.integers(min_value=0, max_value=10**12),
    n=st.integers(min_value=1, max_value=200),
)
def test_lazy_form_matches_closed_form_far_out(fraction, start, n):
    blend = GreedyBlend([1 - fraction, fraction])
    order = blend.take(start, n)
    c0 = blend.counts_at(start)
    c1 = blend.counts_at(start + n)
    assert c1[1] - c0[1] == int(order.sum()) and sum(c1) == start + n
    src, local = blend.locate(np.arange(start, start + n))
    assert src.tolist() == order.tolist()
    assert abs(c1[1] - float(Fraction(repr(fraction)) * (start + n))) <= 0.5 + 1e-9


@settings(max_examples=30, deadline=None)
@given(weights=weights_st, start=st.integers(0, 500), n=st.integers(0, 300))
def test_lazy_take_equals_slice(weights, start, n):
    full = greedy_blend(weights, start + n)
    blend = GreedyBlend(weights)
    assert blend.take(start, n).tolist() == full[start:].tolist()
    src, local = blend.locate(np.arange(start, start + n))
    assert src.tolist() == full[start:].tolist()
    for k in range(len(weights)):  # local index = how often the source was chosen before
        picks = np.flatnonzero(full == k)
        chosen = src == k
        assert local[chosen].tolist() == np.searchsorted(picks, np.arange(start, start + n)[chosen]).tolist()


def _largest_deficit_reference(weights, n):
    w = [Fraction(x) / sum(Fraction(x) for x in weights) for x in weights]
    counts, order = [0] * len(w), []
    for i in range(n):
        scores = [w[k] * (i + 1) - counts[k] for k in range(len(w))]
        k = scores.index(max(scores))
        counts[k] += 1
        order.append(k)
    return order


def _tijdeman_reference(weights, n):
    """Tijdeman's rule written out with Fractions: delta = 1/(2m - 2) for m positive weights; at
    time t = i + 1 the eligible sources have w_k t - count_k >= delta; the earliest deadline
    (count_k + 1 - delta) / w_k wins, ties to the lowest index."""
    w = [Fraction(x) / sum(Fraction(x) for x in weights) for x in weights]
    delta = Fraction(1, 2 * sum(x > 0 for x in w) - 2)
    counts, order = [0] * len(w), []
    for t in range(1, n + 1):
        eligible = [k for k in range(len(w)) if w[k] > 0 and w[k] * t - counts[k] >= delta]
        k = min(eligible, key=lambda k: ((counts[k] + 1 - delta) / w[k], k))
        counts[k] += 1
        order.append(k)
    return order


def _max_deviation(blend: GreedyBlend, order: np.ndarray) -> Fraction:
    """Exact max over prefixes and sources of |count_k - w_k * i|."""
    cum = counts_by_prefix(order, blend.num_sources).astype(object)
    i = np.arange(1, len(order) + 1, dtype=object)[:, None]
    scaled = cum * blend.denominator - np.asarray(blend.numerators, dtype=object)[None] * i
    return Fraction(int(np.abs(scaled).max()), blend.denominator) if len(order) else Fraction(0)


def test_three_or_more_sources_follow_tijdeman_rule():
    assert greedy_blend([5, 3, 2], 12).tolist() == [0, 1, 0, 2, 0, 1, 0, 2, 1, 0, 0, 1]
    assert _largest_deficit_reference([5, 3, 2], 12)[:4] == [0, 1, 2, 0]  # the old rule differs here
    cases = ([5, 3, 2], [1, 2, 3, 4, 0.5], [0.005, 0.3, 0.2, 0.495], [1, 0, 1, 1], [7, 1, 1, 1, 1, 1, 1, 1, 1, 0.25])
    for weights in cases:
        assert greedy_blend(weights, 300).tolist() == _tijdeman_reference(weights, 300), weights
    assert GreedyBlend([5, 3, 2]).rule == "tijdeman" and GreedyBlend([5, 3, 2]).bound == Fraction(3, 4)
    assert GreedyBlend([1] * 10).bound == Fraction(17, 18)


@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(st.fractions(min_value=0, max_value=20, max_denominator=50), min_size=2, max_size=2),
    zeros=st.integers(0, 2),
)
def test_two_sources_keep_the_largest_deficit_order(weights, zeros):
    """Two positive weights: the order is the (unchanged) largest-deficit one, zero-weight sources
    in between change nothing, and it stays within 1/2."""
    if sum(weights) == 0:
        return
    n = 400
    order = greedy_blend(weights, n)
    assert order.tolist() == _largest_deficit_reference(weights, n)
    padded = [weights[0]] + [0] * zeros + [weights[1]]
    assert greedy_blend(padded, n).tolist() == np.where(order == 1, zeros + 1, 0).tolist()
    blend = GreedyBlend(padded)
    assert blend.rule == "largest-deficit"
    assert _max_deviation(blend, greedy_blend(padded, n)) <= Fraction(1, 2)
    src, local = blend.locate(np.arange(n))
    assert src.tolist() == greedy_blend(padded, n).tolist()


@pytest.mark.parametrize("num", [3, 4, 5])
def test_bound_holds_for_every_prefix_exhaustively(num):
    """All integer weight vectors with entries 1..top: the order is periodic with period
    ``denominator`` (the counts are exactly ``w * denominator`` there), so checking one full period
    proves ``|count_k - w_k i| <= 1 - 1/(2 num - 2)`` for every prefix of the infinite order."""
    import itertools

    top = {3: 7, 4: 5, 5: 3}[num]
    bound = 1 - Fraction(1, 2 * num - 2)
    worst = Fraction(0)
    for weights in itertools.product(range(1, top + 1), repeat=num):
        blend = GreedyBlend(list(weights))
        period = blend.denominator
        order = blend.take(0, period)
        assert counts_by_prefix(order, num)[-1].tolist() == list(blend.numerators)
        assert blend.counts_at(3 * period + 5) == [3 * a + c for a, c in zip(blend.numerators, blend.counts_at(5))]
        worst = max(worst, _max_deviation(blend, order))
    assert worst <= bound
    tight = GreedyBlend({3: [1, 2, 5], 4: [1, 1, 3, 7], 5: [1, 1, 1, 2, 3]}[num])  # the bound is attained
    assert _max_deviation(tight, tight.take(0, tight.denominator)) == bound == tight.bound


@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(
        st.one_of(st.sampled_from([0.005, 0.001, 1.0]), st.floats(min_value=1e-3, max_value=1.0), st.integers(1, 1000)),
        min_size=3,
        max_size=10,
    ),
    n=st.integers(min_value=1, max_value=20000),
)
def test_many_sources_within_one_on_long_prefixes(weights, n):
    blend = GreedyBlend(weights)
    order = blend.take(0, n)
    K = len(weights)
    assert order.tolist() == greedy_blend(weights, n).tolist()
    cum = counts_by_prefix(order, K)
    w = np.asarray([float(x) for x in blend.weights])
    surplus = cum - w[None] * np.arange(1, n + 1)[:, None]
    assert np.abs(surplus).max() <= 1 - 1 / (2 * K - 2) + 1e-9
    assert np.abs(surplus).max() < 1
    assert blend.counts_at(n) == cum[-1].tolist()


@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(
        st.one_of(st.sampled_from([0, 0.005, 0.001]), st.floats(min_value=1e-3, max_value=1.0), st.integers(1, 50)),
        min_size=3,
        max_size=10,
    ),
    chunk=st.sampled_from([1, 5, 64, 1 << 18]),
    step_max=st.sampled_from([0, 3, 256]),
    queries=st.lists(st.integers(0, 3000), min_size=1, max_size=6),
)
def test_jumps_equal_stepping(weights, chunk, step_max, queries):
    """The vectorised jump (any chunk size, from any remembered state, in any query order) gives
    the same counts and order as stepping the rule from 0."""
    if not any(weights):
        return
    full = greedy_blend(weights, 3200)
    cum = np.vstack([np.zeros((1, len(weights)), np.int64), counts_by_prefix(full, len(weights))])
    blend = GreedyBlend(weights)
    blend._jump_chunk, blend._step_max = chunk, step_max
    for p in queries:
        assert blend.counts_at(p) == cum[p].tolist()
        positions = np.arange(p, p + 200, 7)[::-1]
        src, local = blend.locate(positions)
        assert src.tolist() == full[positions].tolist()
        assert local.tolist() == cum[positions, full[positions]].tolist()
        assert blend.take(p, 50).tolist() == full[p : p + 50].tolist()


@pytest.mark.parametrize(
    ("weights", "p"),
    [
        ([1 / 3, 1 / 6, 1 / 2], 10**7),  # huge denominator (~5e16): float estimate + exact correction
        ([0.005, 0.3, 0.2, 0.495, 0.001, 0.7, 0.05, 1, 2, 1 / 3], 10**7),  # 10 sources, period ~1e18
        ([123457, 98765, 55555, 7], 10**7),  # period 277784
        ([Fraction(10**19 + 7, 10**20), Fraction(3 * 10**19 + 1, 10**20), Fraction(1, 7)], 10**6),  # > int64
    ],
)
def test_many_sources_jump_far_out(weights, p):
    """Resume at position 1e7 (O(p mod period) vectorised work, ~0.3 s at 1e7 on one core, ~5x slower beyond
    int64) agrees with stepping from a nearby position, and stays within the bound. No wall-clock assertion: the
    suite runs on loaded machines."""
    blend = GreedyBlend(weights)
    counts = blend.counts_at(p)
    assert sum(counts) == p
    w = [Fraction(x) for x in blend.weights]
    assert all(abs(c - wk * p) <= blend.bound for c, wk in zip(counts, w))
    fresh = GreedyBlend(weights)
    fresh._jump_chunk = 1 << 16  # other chunk boundaries, same answer
    before = fresh.counts_at(p - 500)
    order = fresh.take(p - 500, 500)
    assert counts == [c + int((order == k).sum()) for k, c in enumerate(before)]
    src, _ = GreedyBlend(weights).locate(np.arange(p - 500, p))
    assert src.tolist() == order.tolist()


def test_many_sources_periodic_far_out():
    blend = GreedyBlend([5, 3, 2, 1, 1])  # period 12
    assert blend.denominator == 12
    start = 10**12 + 5
    order = blend.take(start, 40)
    assert order.tolist() == greedy_blend([5, 3, 2, 1, 1], 45 + 40)[45:].tolist()
    assert blend.counts_at(12 * 10**11) == [a * 10**11 for a in blend.numerators]
    assert blend.counts_at(10**12) == [a * (10**12 // 12) + c for a, c in zip(blend.numerators, blend.counts_at(4))]


def test_mixer_two_levels_exact_replay_total():
    mixer = Mixer(0.05, [5, 3, 2])
    n = 20000
    src, _ = mixer.locate(np.arange(n))
    replay = np.cumsum(src > 0)
    assert np.all(np.abs(replay - 0.05 * np.arange(1, n + 1)) <= 0.5 + 1e-9)
    counts = mixer.counts_at(n)
    assert counts == [int((src == k).sum()) for k in range(4)]
    assert [round(c / sum(counts[1:]), 2) for c in counts[1:]] == [0.5, 0.3, 0.2]
    assert Mixer(0, [1]).locate(np.arange(5))[0].tolist() == [0] * 5


# ----------------------------------------------------------------------------- Replay data module


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.25])
def test_first_n_samples_have_exact_replay_share(cache, fraction):
    dm = make_replay(cache, fraction=fraction)
    stream = dm.train_stream()
    n = 4000
    src, local, blocks = stream.plan(np.arange(n))
    replay = np.cumsum(src == 1)
    assert np.all(np.abs(replay - fraction * np.arange(1, n + 1)) <= 1)
    # the data really comes from the planned source and block
    batch = stream.read_batches(np.arange(64))
    for p in range(64):
        source = dm.sources[src[p]].train_blocks()
        assert torch.equal(batch[p], torch.from_numpy(source.read([blocks[p]])[0]))
    # and through the loader
    loader_batches = torch.cat([b for _, b in zip(range(16), dm.train_dataloader())])
    assert torch.equal(loader_batches, batch)


def test_fraction_zero_is_new_only_but_validates_everything(cache):
    dm = make_replay(cache, fraction=0.0)
    src, _, _ = dm.train_stream().plan(np.arange(500))
    assert not src.any()
    assert dm.val_names == ["new", "replay0"]
    assert len(dm.val_dataloaders()) == 2


def test_default_weights_follow_token_counts_and_user_weights_override(cache):
    wonder = TextFiles(EN / "wonderland.txt", name="alice")
    shakes = TextFiles(EN / "tinyshakespeare.txt", name="shakespeare")
    dm = make_replay(cache, replay=[wonder, shakes], fraction=0.5)
    sizes = [len(s.train_blocks()) for s in dm.replay]
    assert dm.replay_weights() == pytest.approx([s / sum(sizes) for s in sizes])
    assert dm.val_names == ["new", "alice", "shakespeare"]
    src, _, _ = dm.train_stream().plan(np.arange(4000))
    share_alice = (src == 1).sum() / (src > 0).sum()
    assert share_alice == pytest.approx(sizes[0] / sum(sizes), abs=1e-3)
    dm2 = make_replay(
        cache,
        replay=[TextFiles(EN / "wonderland.txt"), TextFiles(EN / "tinyshakespeare.txt")],
        fraction=0.5,
        weights=[1, 1],
    )
    src2, _, _ = dm2.train_stream().plan(np.arange(4000))
    assert (src2 == 1).sum() == (src2 == 2).sum() == 1000


@pytest.mark.parametrize("start", [0, 7])
def test_two_ranks_interleave_to_one_rank_stream(cache, start):
    dm = make_replay(cache, fraction=0.25, batch_size=3)

    def batches(rank, world, n):
        stream = dm.train_stream()
        stream.configure(start, rank, world)
        it = iter(stream)
        return torch.cat([next(it) for _ in range(n)])

    single = batches(0, 1, 10)
    assert torch.equal(single[0::2], batches(0, 2, 5))
    assert torch.equal(single[1::2], batches(1, 2, 5))


@pytest.mark.slow
def test_two_workers_same_order_as_zero(cache):
    ref = torch.cat([b for _, b in zip(range(30), make_replay(cache, fraction=0.25).train_dataloader())])
    got = torch.cat([b for _, b in zip(range(30), make_replay(cache, fraction=0.25, num_workers=2).train_dataloader())])
    assert torch.equal(ref, got)


def test_loader_and_module_state_resume(cache):
    ref = torch.cat([b for _, b in zip(range(12), make_replay(cache, fraction=0.25).train_dataloader())])
    dm = make_replay(cache, fraction=0.25)
    first = torch.cat([b for _, b in zip(range(5), dm.train_dataloader())])
    state = dm.state_dict()
    assert state["consumed_samples"] == 20 and state["stream"]["fraction"] == 0.25
    dm2 = make_replay(cache, fraction=0.25)
    dm2.load_state_dict(state)
    rest = torch.cat([b for _, b in zip(range(7), dm2.train_dataloader())])
    assert torch.equal(torch.cat([first, rest]), ref)
    dm3 = make_replay(cache, fraction=0.05)
    with pytest.warns(UserWarning, match="different data settings"):
        dm3.load_state_dict(state)


def _small_corpus(tmp_path, name="small.txt", words=120):
    path = tmp_path / name
    path.write_text(" ".join(f"word{i % 37}" for i in range(words)), encoding="utf-8")
    return path


def test_exhaustion_cycle_warns_once_per_epoch(cache, tmp_path):
    dm = make_replay(
        cache, replay=TextFiles(_small_corpus(tmp_path), name="tiny-old"), fraction=0.5, batch_size=4, T=16
    )
    n = len(dm.replay[0].train_blocks())
    assert 2 <= n < 60
    loader = dm.train_dataloader()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = [b for _, b in zip(range(n), loader)]  # 4n samples -> 2n replay samples: epochs 1 and 2
    messages = [str(w.message) for w in caught if "exhausted" in str(w.message)]
    assert len(messages) == 1, messages
    assert "'tiny-old'" in messages[0] and "epoch 2" in messages[0]
    # second epoch is a different order of the same blocks
    src, local, blocks = dm.train_stream().plan(np.arange(4 * n))
    rep = blocks[src == 1]
    assert sorted(rep[:n].tolist()) == sorted(rep[n : 2 * n].tolist()) and rep[:n].tolist() != rep[n : 2 * n].tolist()
    assert len(batches) == n


def test_exhaustion_error_names_source(cache, tmp_path):
    dm = make_replay(
        cache,
        replay=TextFiles(_small_corpus(tmp_path), name="tiny-old"),
        fraction=0.5,
        batch_size=4,
        T=16,
        on_exhausted="error",
    )
    n = len(dm.replay[0].train_blocks())
    loader = dm.train_dataloader()
    it = iter(loader)
    for _ in range(n // 2):  # 2n samples hold n replay samples: still fine
        next(it)
    with pytest.raises(SourceExhaustedError, match="'tiny-old' is exhausted"):
        for _ in range(4):
            next(it)


def test_per_source_validation_loaders(cache):
    dm = make_replay(cache, replay=TextFiles(EN / "wonderland.txt", name="en"), fraction=0.05)
    assert dm.val_names == ["new", "en"]
    loaders = dm.val_dataloaders()
    assert [len(dl.dataset) for dl in loaders] == [len(s.val_blocks()) for s in dm.sources]
    first = next(iter(loaders[1]))
    assert torch.equal(first[0], dm.replay[0].val_blocks()[0])
    # litgpt pretrain (no Lightning trainer attached): one loader interleaving the sources
    combined = dm.val_dataloader()
    assert isinstance(combined, torch.utils.data.DataLoader)
    assert len(combined.dataset) == sum(len(dl.dataset) for dl in loaders)
    assert torch.equal(combined.dataset[1], dm.replay[0].val_blocks()[0])
    # under a Lightning trainer: the list
    dm.trainer = types.SimpleNamespace(global_step=0, accumulate_grad_batches=1, world_size=1)
    assert isinstance(dm.val_dataloader(), list) and len(dm.val_dataloader()) == 2


def test_held_out_split_matches_stage_one(cache):
    """Replaying EN keeps the same held-out EN blocks as TextFiles(EN) used alone in stage 1."""
    stage1 = TextFiles(EN, cache_dir=cache)
    stage1.connect(tokenizer_dir(), batch_size=4, max_seq_length=32)
    stage1.setup()
    dm = make_replay(cache, fraction=0.05)
    a, b = stage1.val_blocks(), dm.replay[0].val_blocks()
    assert a.block_ids(np.arange(len(a))).tolist() == b.block_ids(np.arange(len(b))).tolist()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan"), "lots"])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        Replay(new=FR, replay=EN, fraction=fraction)


@pytest.mark.parametrize(
    ("weights", "match"),
    [([0.0], "weights\\[0\\] must be a positive"), ([-1.0], "positive"), ([1.0, 2.0], "2 entries for 1 replay")],
)
def test_bad_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        Replay(new=FR, replay=EN, weights=weights)


def test_bad_misc():
    with pytest.raises(ValueError, match="on_exhausted"):
        Replay(new=FR, replay=EN, on_exhausted="stop")
    with pytest.raises(ValueError, match="at least one"):
        Replay(new=FR, replay=[])
    with pytest.raises(ValueError, match="unique"):
        Replay(new=TextFiles(FR, name="x"), replay=TextFiles(EN, name="x"))
    with pytest.raises(ValueError, match="replay\\[0\\] must be"):
        Replay(new=FR, replay=[3])


def test_empty_and_missing_sources_named(cache, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    dm = Replay(new=FR, replay=tmp_path / "empty.txt", cache_dir=cache)
    dm.connect(tokenizer_dir(), batch_size=2, max_seq_length=32)
    with pytest.raises(ValueError, match="empty.txt.*empty corpus"):
        dm.prepare_data()
    dm = Replay(new=FR, replay=tmp_path / "missing", cache_dir=cache)
    dm.connect(tokenizer_dir(), batch_size=2, max_seq_length=32)
    with pytest.raises(ValueError, match="missing.*does not exist"):
        dm.prepare_data()


def test_sources_with_different_tokenizers_or_block_sizes(cache, tmp_path):
    from litgpt import Tokenizer

    from litcpt.assets.make_tokenizer import write_tokenizer_dir
    from litcpt.data.text.token_cache import ensure_tokens

    other = Tokenizer(write_tokenizer_dir(tmp_path / "tok", [EN / "wonderland.txt"], vocab_size=300))
    main = Tokenizer(tokenizer_dir())
    old = ensure_tokens(EN / "wonderland.txt", other, cache_dir=tmp_path / "c")  # pre-tokenised, other tokenizer
    new = ensure_tokens(FR / "notre-dame-de-paris.txt", main, cache_dir=tmp_path / "c")
    dm = Replay(new=str(new.path), replay=TextFiles(str(old.path), name="old"))
    dm.connect(None, batch_size=2, max_seq_length=16)
    with pytest.raises(ValueError, match="source 'old' was tokenised with another tokenizer"):
        dm.setup()
    dm.connect(main, batch_size=2, max_seq_length=16)
    with pytest.raises(ValueError, match="another tokenizer"):
        dm.setup()
    dm = make_replay(cache, fraction=0.05)
    dm.replay[0].connect(tokenizer_dir(), batch_size=4, max_seq_length=64)
    with pytest.raises(ValueError, match="source 'replay0' has block size 64, expected 32"):
        dm.setup()


# ----------------------------------------------------------------------------- config


RECIPE = """
data:
  class_path: litcpt.data.Replay
  init_args:
    new:
      class_path: litcpt.data.TextFiles
      init_args: {{train_data_path: {fr}, name: fr}}
    replay:
      - class_path: litcpt.data.TextFiles
        init_args: {{train_data_path: {en}, name: en}}
      - {en}/wonderland.txt
    fraction: 0.05
    weights: [3, 1]
    cache_dir: {cache}
"""


def test_jsonargparse_nested_class_path_and_lists(tmp_path):
    from jsonargparse import ArgumentParser
    from litgpt.data import DataModule

    cfg = tmp_path / "recipe.yaml"
    cfg.write_text(RECIPE.format(fr=FR / "notre-dame-de-paris.txt", en=EN, cache=tmp_path / "c"))
    parser = ArgumentParser()
    parser.add_argument("--config", action="config")
    parser.add_argument("--data", type=DataModule | None, default=None)
    data = parser.instantiate_classes(parser.parse_args(["--config", str(cfg)])).data
    assert isinstance(data, Replay) and isinstance(data.new, TextFiles)
    assert data.val_names == ["fr", "en", "replay1"]
    assert data.weights == [3, 1] and data.fraction == 0.05
    assert data.replay[0].cache_dir == str(tmp_path / "c")  # inherited from Replay
    args = ["--data", "litcpt.data.Replay", "--data.new", str(FR), "--data.replay", str(EN), "--data.fraction", "0.01"]
    data = parser.instantiate_classes(parser.parse_args(args)).data
    assert isinstance(data, Replay) and data.fraction == 0.01 and isinstance(data.replay[0], TextFiles)


# ----------------------------------------------------------------------------- Lightning resume


def _tiny_lightning_module():
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(1, 1)
            self.seen = []

        def training_step(self, batch, batch_idx):
            self.seen.append(batch.clone())
            return self.lin(batch[:, :1].float()).pow(2).mean() * 0

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    return Tiny()


def _fit(cache, tmp_path, max_steps, ckpt_in=None, ckpt_out=None):
    import lightning as L

    model = _tiny_lightning_module()
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    dm = Replay(new=FR, replay=[EN / "wonderland.txt", EN / "tinyshakespeare.txt"], fraction=0.25, cache_dir=cache)
    dm.connect(tokenizer_dir(), batch_size=2, max_seq_length=16)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_in)
    if ckpt_out:
        trainer.save_checkpoint(ckpt_out)
    return model.seen


@pytest.mark.slow
def test_lightning_resume_identical_sequence(cache, tmp_path):
    full = _fit(cache, tmp_path, 9)
    ckpt = tmp_path / "r.ckpt"
    part1 = _fit(cache, tmp_path, 4, ckpt_out=ckpt)
    assert torch.load(ckpt, weights_only=True)["Replay"]["consumed_samples"] == 8
    part2 = _fit(cache, tmp_path, 9, ckpt_in=ckpt)
    assert torch.equal(torch.stack(part1 + part2), torch.stack(full))


# ----------------------------------------------------------------------------- litgpt pretrain


LITGPT_CONFIG = """
model_name: litcpt-tiny
model_config:
  name: litcpt-tiny
  block_size: 32
  vocab_size: 4096
  padded_vocab_size: 4096
  n_layer: 1
  n_head: 2
  n_embd: 32
out_dir: {out}
tokenizer_dir: {tokenizer}
precision: 32-true
devices: 1
logger_name: csv
data:
  class_path: litcpt.data.Replay
  init_args:
    new:
      class_path: litcpt.data.TextFiles
      init_args: {{train_data_path: {fr}, name: fr}}
    replay:
      - class_path: litcpt.data.TextFiles
        init_args: {{train_data_path: {en}, name: en}}
    fraction: 0.25
    cache_dir: {cache}
train:
  micro_batch_size: 2
  global_batch_size: 2
  max_tokens: {max_tokens}
  log_interval: 1
  save_interval: 2
  lr_warmup_steps: 1
  max_norm: 1.0
eval:
  interval: 2
  max_iters: 2
  initial_validation: false
  final_validation: true
"""


@pytest.mark.slow
def test_litgpt_pretrain_with_replay_and_resume(tmp_path):
    """`litgpt pretrain --config recipe.yaml` trains with Replay and `--resume` continues the stream.

    TorchDynamo is off (:func:`tests.helpers.run_litgpt`) to keep the test fast (with it, the first CPU compile takes
    ~1 min but works).
    """
    cfg = tmp_path / "pretrain.yaml"
    cfg.write_text(
        LITGPT_CONFIG.format(
            out=tmp_path / "out",
            tokenizer=tokenizer_dir(),
            fr=FR / "notre-dame-de-paris.txt",
            en=EN / "wonderland.txt",
            cache=tmp_path / "cache",
            max_tokens=4 * 2 * 32,  # 4 iterations: litgpt stops on max_tokens, not max_steps
        )
    )
    run = run_litgpt("pretrain", "--config", str(cfg))
    assert "val loss" in run.stdout + run.stderr
    step4 = torch.load(tmp_path / "out" / "step-00000004" / "lit_model.pth", weights_only=True)
    assert step4["iter_num"] == 4 and step4["train_dataloader"] == {"consumed_samples": 8}
    assert (tmp_path / "out" / "logs" / "csv").exists()
    run = run_litgpt("pretrain", "--config", str(cfg), "--resume", "true", "--train.max_tokens", str(6 * 2 * 32))
    assert "Resuming training from" in run.stdout + run.stderr
    step6 = torch.load(tmp_path / "out" / "step-00000006" / "lit_model.pth", weights_only=True)
    assert step6["iter_num"] == 6 and step6["train_dataloader"] == {"consumed_samples": 12}
