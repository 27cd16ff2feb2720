"""Tests for litcpt.schedules.formulas: closed forms, continuity, bounds, properties, transformers parity,
validation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from litcpt.schedules.formulas import (
    WSD,
    Constant,
    Infinite,
    WarmupCosine,
    check_fits,
    check_length,
    check_lr_range,
    fractions_to_lengths,
    schedule_from_dict,
)

MAX, MIN, CONST = 3e-4, 3e-5, 1.65e-4
approx = lambda x: pytest.approx(x, rel=1e-12, abs=1e-18)


# --------------------------------------------------------------------------- #
# warmup_cosine
# --------------------------------------------------------------------------- #
def cos_kw(**over):
    kw = dict(warmup=10, total=110, max_lr=MAX, min_lr=MIN)
    kw.update(over)
    return kw


@pytest.mark.parametrize(
    "t, expected",
    [
        (0, 0.0),
        (5, MAX * 0.5),
        (10, MAX),
        (60, MIN + 0.5 * (MAX - MIN)),  # half-way through the cosine
        (35, MIN + 0.5 * (MAX - MIN) * (1 + math.cos(math.pi * 0.25))),
        (110, MIN),
        (1e6, MIN),
    ],
)
def test_warmup_cosine_closed_form(t, expected):
    assert WarmupCosine(**cos_kw())(t) == approx(expected)


def test_warmup_cosine_zero_warmup_starts_at_max():
    assert WarmupCosine(**cos_kw(warmup=0))(0) == approx(MAX)
    assert WarmupCosine(**cos_kw(warmup=0))(55) == approx(MIN + 0.5 * (MAX - MIN))


# --------------------------------------------------------------------------- #
# infinite
# --------------------------------------------------------------------------- #
def inf_kw(**over):
    kw = dict(warmup=10, cooldown=100, constant=50, anneal=40, max_lr=MAX, const_lr=CONST, min_lr=MIN)
    kw.update(over)
    return kw


def _h(x, alpha):
    return 1 / math.sqrt(1 + alpha * x) - 1


@pytest.mark.parametrize(
    "t, expected",
    [
        (0, 0.0),
        (4, MAX * 0.4),
        (10, MAX),
        (60, CONST + 0.5 * (MAX - CONST)),  # x = 0.5 of a cosine cooldown
        (35, CONST + 0.5 * (MAX - CONST) * (1 + math.cos(math.pi * 0.25))),
        (110, CONST),
        (135, CONST),
        (160, CONST),
        (170, CONST * (MIN / CONST) ** 0.25),  # exponential anneal, s = 0.25
        (200, MIN),
        (1e9, MIN),
    ],
)
def test_infinite_closed_form_cosine_exponential(t, expected):
    assert Infinite(**inf_kw())(t) == approx(expected)


@pytest.mark.parametrize("alpha", [1.0, 10.0, 100.0])
@pytest.mark.parametrize("x", [0.0, 0.1, 0.5, 0.9])
def test_infinite_inv_sqrt_cooldown(alpha, x):
    t = 10 + 100 * x
    expected = MAX + (CONST - MAX) * _h(x, alpha) / _h(1, alpha)
    assert Infinite(**inf_kw(cooldown_shape="inv_sqrt", alpha=alpha))(t) == approx(expected)


def test_inv_sqrt_drops_faster_than_cosine_early():
    kw = inf_kw()
    t = 10 + 100 * 0.1
    assert Infinite(**kw, cooldown_shape="inv_sqrt")(t) < Infinite(**{**kw, "cooldown_shape": "cosine"})(t)


@pytest.mark.parametrize(
    "shape, f",
    [
        ("exponential", lambda s: CONST * (MIN / CONST) ** s),
        ("linear", lambda s: CONST + (MIN - CONST) * s),
        ("cosine", lambda s: MIN + 0.5 * (CONST - MIN) * (1 + math.cos(math.pi * s))),
        ("1-sqrt", lambda s: MIN + (CONST - MIN) * (1 - math.sqrt(s))),
    ],
)
@pytest.mark.parametrize("s", [0.0, 0.3, 0.5, 0.99, 1.0])
def test_infinite_anneal_shapes(shape, f, s):
    t = 160 + 40 * s
    assert Infinite(**inf_kw(anneal_shape=shape))(t) == approx(f(s))


def test_infinite_later_stage_starts_at_const():
    kw = inf_kw(warmup=0, cooldown=0, constant=100, anneal=0)
    assert Infinite(**kw)(0) == CONST
    assert Infinite(**kw)(100) == CONST
    assert Infinite(**kw)(100.5) == MIN  # min_lr after the schedule
    forever = inf_kw(warmup=0, cooldown=0, constant=math.inf, anneal=0)
    assert Infinite(**forever)(1e18) == CONST


# --------------------------------------------------------------------------- #
# wsd / constant
# --------------------------------------------------------------------------- #
def wsd_kw(**over):
    kw = dict(warmup=10, total=100, decay=20, max_lr=MAX, min_lr=MIN)
    kw.update(over)
    return kw


@pytest.mark.parametrize(
    "shape, f",
    [
        ("linear", lambda p: MIN + (MAX - MIN) * (1 - p)),
        ("1-sqrt", lambda p: MIN + (MAX - MIN) * (1 - math.sqrt(p))),
        ("cosine", lambda p: MIN + 0.5 * (MAX - MIN) * (1 + math.cos(math.pi * p))),
        ("exponential", lambda p: MAX * (MIN / MAX) ** p),
    ],
)
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.9])
def test_wsd_decay_shapes(shape, f, p):
    assert WSD(**wsd_kw(decay_shape=shape))(80 + 20 * p) == approx(f(p))


@pytest.mark.parametrize("shape", ["linear", "1-sqrt", "cosine", "exponential"])
def test_wsd_phases(shape):
    kw = wsd_kw(decay_shape=shape)
    assert WSD(**kw)(0) == 0.0
    assert WSD(**kw)(5) == approx(MAX / 2)
    assert WSD(**kw)(10) == approx(MAX)
    assert WSD(**kw)(50) == MAX
    assert WSD(**kw)(80) == approx(MAX)
    assert WSD(**kw)(100) == MIN
    assert WSD(**kw)(500) == MIN
    assert WSD(**kw)(100 - 1e-9) == pytest.approx(MIN, rel=1e-3)  # reaches min_lr at the end


def test_wsd_exponential_half_life():
    kw = wsd_kw(decay_shape="exponential", min_lr=MAX / 8)  # 3 halvings over 20 units -> tau = 20/3
    tau = 20 * math.log(2) / math.log(8)
    assert WSD(**kw)(80 + tau) == approx(MAX / 2)
    assert WSD(**kw)(80 + 2 * tau) == approx(MAX / 4)


def test_constant():
    assert Constant(lr=1e-3)(0) == 1e-3
    assert Constant(lr=1e-3)(1e9) == 1e-3
    assert Constant(lr=1e-3, warmup=10)(0) == 0.0
    assert Constant(lr=1e-3, warmup=10)(2.5) == approx(2.5e-4)
    assert Constant(lr=1e-3, warmup=10)(10) == 1e-3


# --------------------------------------------------------------------------- #
# continuity, bounds, objects
# --------------------------------------------------------------------------- #
def _continuous_at(f, t, eps=1e-7, tol=1e-6):
    return abs(f(t - eps) - f(t + eps)) <= tol * MAX


@pytest.mark.parametrize("cooldown_shape", ["cosine", "inv_sqrt"])
@pytest.mark.parametrize("anneal_shape", ["exponential", "linear", "cosine", "1-sqrt"])
def test_infinite_continuous_at_phase_boundaries(cooldown_shape, anneal_shape):
    s = Infinite(**inf_kw(cooldown_shape=cooldown_shape, anneal_shape=anneal_shape))
    for b in (10, 110, 160, 200):
        assert _continuous_at(s, b, tol=1e-3 if anneal_shape == "1-sqrt" else 1e-6), b  # sqrt has infinite slope


@pytest.mark.parametrize("shape", ["linear", "1-sqrt", "cosine", "exponential"])
def test_wsd_continuous_at_phase_boundaries(shape):
    s = WSD(**wsd_kw(decay_shape=shape))
    for b in (10, 80, 100):
        assert _continuous_at(s, b, tol=1e-3 if shape == "1-sqrt" else 1e-6), b


def test_cosine_continuous_at_phase_boundaries():
    s = WarmupCosine(**cos_kw())
    for b in (10, 110):
        assert _continuous_at(s, b)


def test_object_equals_function_and_roundtrips():
    s = Infinite(**inf_kw(cooldown_shape="inv_sqrt", anneal_shape="cosine"))
    assert s(123.0) == Infinite(**inf_kw(cooldown_shape="inv_sqrt", anneal_shape="cosine"))(123.0)
    assert schedule_from_dict(s.to_dict()) == s
    for obj in (WarmupCosine(**cos_kw()), WSD(**wsd_kw()), Constant(lr=1.0, warmup=3)):
        assert schedule_from_dict(obj.to_dict()) == obj
    ts = [0.0, 5.0, 60.0, 170.0]
    assert s.sample(ts).tolist() == [s(t) for t in ts]
    assert s.length == 200
    assert WarmupCosine(**cos_kw()).length == 110


lengths = st.floats(min_value=0, max_value=1e6, allow_nan=False)
lrs = st.tuples(
    st.floats(min_value=1e-8, max_value=1.0), st.floats(min_value=0, max_value=1), st.floats(min_value=0, max_value=1)
)


def _lr_triplet(v):
    max_lr, a, b = v
    lo, hi = sorted((a, b))
    min_lr = max(lo * max_lr, 1e-12)
    const_lr = min(max_lr, max(min_lr, hi * (max_lr - min_lr) + min_lr))  # clamp rounding
    return max_lr, const_lr, min_lr  # max, const, min with min <= const <= max


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    w=lengths,
    c=lengths,
    k=lengths,
    a=lengths,
    lr=lrs,
    t=st.floats(0, 5e6),
    cs=st.sampled_from(["cosine", "inv_sqrt"]),
    ash=st.sampled_from(["exponential", "linear", "cosine", "1-sqrt"]),
)
def test_property_infinite_bounds(w, c, k, a, lr, t, cs, ash):
    max_lr, const_lr, min_lr = _lr_triplet(lr)
    s = Infinite(w, c, k, a, max_lr, const_lr, min_lr, cooldown_shape=cs, anneal_shape=ash)
    v = s(t)
    assert v <= max_lr * (1 + 1e-12)
    if t >= w:
        assert v >= min_lr * (1 - 1e-12)
    if t > w and w + c <= t <= w + c + k:  # (at t == w the warmup's end value max_lr wins)
        assert v == const_lr


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    total=st.floats(1e-3, 1e7),
    wf=st.floats(0, 1),
    t=st.floats(0, 2e7),
    lr=lrs,
)
def test_property_cosine_bounds_and_monotone_decay(total, wf, t, lr):
    max_lr, _, min_lr = _lr_triplet(lr)
    w = wf * total
    s = WarmupCosine(w, total, max_lr, min_lr)
    v = s(t)
    assert v <= max_lr * (1 + 1e-12)
    if t >= w:
        assert v >= min_lr * (1 - 1e-12)
        assert s(t * 1.01 + 1e-6) <= v * (1 + 1e-12) + 1e-18  # non-increasing after warmup
    else:
        assert s(t) <= s(min(w, t * 1.01 + 1e-9)) + 1e-18  # non-decreasing in warmup


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    total=st.floats(1e-3, 1e7),
    wf=st.floats(0, 0.5),
    df=st.floats(0, 0.5),
    t=st.floats(0, 2e7),
    lr=lrs,
    shape=st.sampled_from(["linear", "1-sqrt", "cosine", "exponential"]),
)
def test_property_wsd_bounds(total, wf, df, t, lr, shape):
    max_lr, _, min_lr = _lr_triplet(lr)
    s = WSD(wf * total, total, df * total, max_lr, min_lr, decay_shape=shape)
    v = s(t)
    assert v <= max_lr * (1 + 1e-12)
    if t >= wf * total:
        assert v >= min_lr * (1 - 1e-12)
    if t >= total:
        assert v == min_lr


@settings(max_examples=100, deadline=None, derandomize=True)
@given(total=st.floats(1, 1e7), fr=st.lists(st.floats(0, 0.3), min_size=1, max_size=3))
def test_property_fractions_to_lengths(total, fr):
    names = ["warmup", "cooldown", "anneal"][: len(fr)]
    out = fractions_to_lengths(total, **dict(zip(names, fr)))
    assert out == {n: f * total for n, f in zip(names, fr)}


# --------------------------------------------------------------------------- #
# parity with transformers (4.57) where the definitions coincide
# --------------------------------------------------------------------------- #
def _hf_lrs(make, n, base_lr):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("warmup, total", [(10, 100), (1, 37), (25, 25 + 1)])
def test_matches_transformers_cosine_with_min_lr(warmup, total):
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    hf = _hf_lrs(
        lambda o: get_cosine_with_min_lr_schedule_with_warmup(o, warmup, total, min_lr_rate=MIN / MAX), total + 1, MAX
    )
    ours = [WarmupCosine(warmup=warmup, total=total, max_lr=MAX, min_lr=MIN)(k) for k in range(total + 1)]
    assert ours == pytest.approx(hf, rel=1e-12, abs=1e-20)


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("min_ratio", [0.0, 0.1])
def test_matches_transformers_wsd(shape, min_ratio):
    from transformers import get_wsd_schedule

    warmup, decay, total = 10, 30, 100
    hf = _hf_lrs(
        lambda o: get_wsd_schedule(
            o, warmup, decay, num_training_steps=total, decay_type=shape, min_lr_ratio=min_ratio
        ),
        total + 5,
        MAX,
    )
    ours = [
        WSD(warmup=warmup, total=total, decay=decay, max_lr=MAX, min_lr=min_ratio * MAX, decay_shape=shape)(k)
        for k in range(total + 5)
    ]
    # transformers warms up from min_lr_ratio * lr, we warm up from 0: they coincide only for min_ratio=0
    start = 0 if min_ratio == 0 else warmup
    assert ours[start:] == pytest.approx(hf[start:], rel=1e-12, abs=1e-20)
    if min_ratio > 0:
        assert hf[0] == pytest.approx(min_ratio * MAX) and ours[0] == 0.0


# --------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: WarmupCosine(**cos_kw(warmup=200))(1), r"warmup=200 is longer than the stage \(total=110\)"),
        (lambda: WarmupCosine(**cos_kw(min_lr=1.0))(1), r"min_lr=1.0 must be <= max_lr=0.0003"),
        (lambda: WarmupCosine(**cos_kw(warmup=-1))(1), r"warmup=-1 must be a non-negative"),
        (lambda: WarmupCosine(**cos_kw())(-1), r"t=-1 must be a non-negative"),
        (lambda: WarmupCosine(**cos_kw(max_lr=0, min_lr=0))(1), r"max_lr=0 must be > 0"),
        (lambda: Infinite(**inf_kw(const_lr=1.0))(1), r"const_lr=1.0 must lie in \[min_lr, max_lr\]"),
        (lambda: Infinite(**inf_kw(const_lr=1e-6))(1), r"const_lr=1e-06 must lie in"),
        (lambda: Infinite(**inf_kw(cooldown=-5))(1), r"cooldown=-5 must be a non-negative"),
        (lambda: Infinite(**inf_kw(anneal=math.inf))(1), r"anneal=inf must be a non-negative finite"),
        (lambda: Infinite(**inf_kw(cooldown_shape="linear"))(1), r"cooldown_shape='linear' must be one of"),
        (lambda: Infinite(**inf_kw(anneal_shape="step"))(1), r"anneal_shape='step' must be one of"),
        (lambda: Infinite(**inf_kw(cooldown_shape="inv_sqrt", alpha=0))(1), r"alpha=0 must be a positive"),
        (lambda: Infinite(**inf_kw(min_lr=0.0))(1), r"min_lr=0.0 must be > 0 for anneal_shape='exponential'"),
        (lambda: WSD(**wsd_kw(decay=95))(1), r"warmup=10 \+ decay=95 = 105 is longer than the stage \(total=100\)"),
        (lambda: WSD(**wsd_kw(decay_shape="exp"))(1), r"decay_shape='exp' must be one of"),
        (lambda: WSD(**wsd_kw(min_lr=0.0, decay_shape="exponential"))(1), r"min_lr=0.0 must be > 0"),
        (lambda: Constant(lr=-1.0)(1), r"lr=-1.0 must be a positive"),
        (lambda: fractions_to_lengths(100, warmup=0.5, cooldown=0.6), r"fractions warmup=0.5 \+ cooldown=0.6 = 1.1"),
        (lambda: fractions_to_lengths(100, warmup=1.5), r"warmup=1.5 must be a fraction of the stage in \[0, 1\]"),
        (lambda: fractions_to_lengths(-1, warmup=0.1), r"total=-1 must be a non-negative"),
        (lambda: check_length("decay", float("nan")), r"decay=nan must be"),
        (
            lambda: check_fits({"anneal": 20}, 10, total_name="total_steps"),
            r"anneal=20 is longer than .*total_steps=10",
        ),
        (lambda: check_lr_range(1.0, 0.1, 2.0), r"const_lr=2.0"),
        (lambda: schedule_from_dict({"kind": "step"}), r"kind='step' must be one of"),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_valid_edge_cases_do_not_raise():
    fractions_to_lengths(100, warmup=0.1, cooldown=0.2, constant=0.7)  # 0.1+0.2+0.7 != 1.0 exactly in binary
    WSD(0.1 * 3, 0.3 + 0.7, 0.7, 1.0, 0.0)
    Infinite(0, 0, 0, 0, 1.0, 1.0, 1.0)
    assert fractions_to_lengths(10, warmup=None, anneal=0.5) == {"warmup": None, "anneal": 5.0}


# --------------------------------------------------------------------------- #
# plotting helpers (litcpt.report.plotting)
# --------------------------------------------------------------------------- #
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_sample_schedule_and_stage_curves():
    from litcpt.report.plotting import sample_schedule, stage_curves

    s = WarmupCosine(**cos_kw())
    xs, ys = sample_schedule(s, num=111)
    assert xs[0] == 0 and xs[-1] == 110 and len(xs) == 111
    assert ys.tolist() == [s(x) for x in xs]
    stages = [("a", 110.0), ("b", 50.0)]
    later = Infinite(0, 0, 50, 0, MAX, CONST, MIN)
    curves = stage_curves(stages, {"run": [s, later]}, num_per_stage=11)
    xs, ys = curves["run"]
    assert xs[:11].tolist() == pytest.approx([11.0 * i for i in range(11)])
    assert xs[11] == 110 and xs[-1] == 160  # second stage is offset by the first's length
    assert ys[0] == 0.0 and ys[10] == MIN and ys[11] == CONST  # stage 2 restarts its clock at const_lr


def test_plots_write_pngs(tmp_path):
    from litcpt.report.plotting import make_docs_figures, plot_schedules, sample_schedule

    p = plot_schedules({"wsd": sample_schedule(WSD(**wsd_kw()))}, tmp_path / "sub" / "x.png", title="t")
    assert p.read_bytes()[:8] == PNG_MAGIC
    for q in make_docs_figures(tmp_path / "img"):
        assert q.read_bytes()[:8] == PNG_MAGIC and q.stat().st_size > 10_000


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda P: P.sample_schedule(Constant(lr=1.0)), r"length=inf must be a positive finite number"),
        (lambda P: P.sample_schedule(Constant(lr=1.0), 10, num=1), r"num=1 must be >= 2"),
        (lambda P: P.plot_curves({}, "x.png"), r"curves=\{\} must contain"),
        (lambda P: P.plot_curves({"a": ([1, 2], [1])}, "x.png"), r"curves\['a'\] has len\(xs\)=2 != len\(ys\)=1"),
        (lambda P: P.stage_curves([("a", 1.0)], {"r": []}), r"runs\['r'\] has 0 schedules for 1 stages"),
        (lambda P: P.stage_curves([("a", 0)], {}), r"stage 'a' has length=0"),
        (lambda P: P.stage_curves([], {}), r"stages=\[\] must list"),
    ],
)
def test_plot_validation(call, match):
    import litcpt.report.plotting as P

    with pytest.raises(ValueError, match=match):
        call(P)
