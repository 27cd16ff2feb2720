"""D2Z (linear decay to zero) and the Power scheduler: pure functions vs closed forms, callbacks, resume."""

from __future__ import annotations

import math

import pytest

from litcpt.callbacks import LinearDecayLR, PowerLR
from litcpt.schedules.formulas import LinearDecay, Power, power_lr, schedule_from_dict
from tests.schedules.test_lr_callbacks import FakeModule, drive, fake_trainer

LR = 0.1


def test_linear_decay_closed_form():
    for t in range(121):
        if t <= 10:
            expected = 3e-3 * t / 10
        elif t <= 110:
            expected = 3e-3 * (1 - (t - 10) / 100)
        else:
            expected = 0.0
        assert LinearDecay(warmup=10, total=110, max_lr=3e-3)(t) == pytest.approx(expected, rel=1e-12, abs=1e-18)
    assert LinearDecay(warmup=10, total=110, max_lr=3e-3)(110) == 0.0  # D2Z: exactly zero at the end
    # with a floor: linear to min_lr
    assert LinearDecay(warmup=10, total=110, max_lr=1.0, min_lr=0.2)(60) == pytest.approx(0.2 + 0.8 * 0.5)
    assert LinearDecay(warmup=0, total=100, max_lr=1.0)(0) == 1.0  # no warmup: starts at the peak


def test_power_closed_form():
    a, b, beta, max_lr = 4.0, -0.51, 8.0, 0.02
    p = Power(warmup=1e5, total=math.inf, decay=0.0, max_lr=max_lr, a=a, b=b, batch_size=beta)
    for n in (1e5, 3e5, 1e6, 1e7, 1e9):
        assert p(n) == pytest.approx(min(max_lr, beta * a * n ** b), rel=1e-12)
    assert p(1e9) < max_lr and p(1e5) == max_lr  # the cap holds early, the power law later
    # warmup: linear to the power-law LR at the warmup's end
    q = Power(warmup=1e8, total=math.inf, decay=0.0, max_lr=1.0, a=a, b=b, batch_size=beta)
    end = beta * a * 1e8 ** b
    assert q(0) == 0.0 and q(5e7) == pytest.approx(0.5 * end, rel=1e-12) and q(1e8) == pytest.approx(end, rel=1e-12)
    # decay over the last 20% of a finite stage, from the power-law LR at its start to min_lr
    r = Power(warmup=0.0, total=1e9, decay=2e8, max_lr=1.0, a=a, b=b, batch_size=beta, min_lr=0.0)
    start = beta * a * 8e8 ** b
    assert r(8e8) == pytest.approx(start, rel=1e-12)
    assert r(9e8) == pytest.approx(0.5 * start, rel=1e-12)
    assert r(1e9) == 0.0 and r(2e9) == 0.0
    assert Power(warmup=0, total=math.inf, decay=0.0, max_lr=max_lr, a=a, b=b, batch_size=beta)(1e6) == power_lr(
        1e6, a=a, b=b, batch_size=beta, max_lr=max_lr
    )


def test_round_trip_and_errors():
    for s in (LinearDecay(warmup=1, total=10, max_lr=1.0), Power(warmup=5, total=100, decay=10, max_lr=0.1)):
        assert schedule_from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match=r"b=0.5 must be a negative number"):
        Power(warmup=0, total=math.inf, decay=0, max_lr=1.0, b=0.5)
    with pytest.raises(ValueError, match=r"decay=10 needs a finite total"):
        Power(warmup=0, total=math.inf, decay=10, max_lr=1.0)
    with pytest.raises(ValueError, match=r"warmup=20 is longer than the stage"):
        LinearDecay(warmup=20, total=10, max_lr=1.0)
    with pytest.raises(ValueError, match=r"unit='steps': PowerLR is defined in tokens"):
        PowerLR(unit="steps")


def test_linear_decay_callback_is_d2z_per_step():
    cb, tr, m = LinearDecayLR(warmup_steps=5), fake_trainer(50), FakeModule()
    seen = drive(cb, tr, m, 50, accumulate=2)
    ref = LinearDecay(warmup=5, total=50, max_lr=LR, min_lr=0.0)
    assert seen == [ref(k) for k in range(50) for _ in range(2)]
    assert cb.schedule == ref


def test_power_callback_reads_batch_size_and_counts_tokens():
    module = FakeModule(tokens_per_step=8 * 64)
    module.seq_length = 64
    cb = PowerLR(warmup_tokens=512 * 4, a=4.0, b=-0.51, max_lr=LR)
    seen = drive(cb, fake_trainer(40), module, 40)
    assert cb.schedule.batch_size == 8 and math.isfinite(cb.schedule.total)
    assert seen == [cb.schedule(512.0 * k) for k in range(40)]
    assert seen[4] == pytest.approx(min(LR, 8 * 4.0 * 2048**-0.51))
    # stage length only matters with a decay: same LRs for any max_steps
    other = drive(PowerLR(warmup_tokens=512 * 4, max_lr=LR), fake_trainer(400), module, 40)
    assert other == seen


def test_power_callback_resume_state_round_trip():
    module = FakeModule(tokens_per_step=4 * 32)
    module.seq_length = 32
    full = drive(PowerLR(warmup_steps=3, decay=0.25, max_lr=LR), fake_trainer(20), module, 20)
    first = PowerLR(warmup_steps=3, decay=0.25, max_lr=LR)
    tr = fake_trainer(20)
    part = drive(first, tr, module, 12)
    state = first.state_dict()
    second = PowerLR(warmup_steps=3, decay=0.25, max_lr=LR)
    second.load_state_dict(state)
    tr2 = fake_trainer(20, global_step=12)
    rest = []
    second.on_fit_start(tr2, module)
    second.on_train_start(tr2, module)
    for _ in range(8):
        second.on_train_batch_start(tr2, module, None, 0)
        rest.append(tr2.optimizers[0].param_groups[0]["lr"])
        tr2.global_step += 1
    assert part + rest == full
    assert full[-1] == pytest.approx(Power(warmup=384, total=2560, decay=640, max_lr=LR, batch_size=4)(19 * 128))


@pytest.mark.parametrize("recipe", ["recipes/tiny/d2z.yaml", "recipes/tiny/power.yaml"])
def test_recipes_parse_and_resolve(recipe):
    from litcpt.training.recipe import read_recipe
    from litcpt.training.recipe_stages import recipe_stage
    from tests.helpers import REPO

    args = read_recipe(REPO / recipe)
    stage = recipe_stage(args, name="x", recipe=REPO / recipe)
    schedule = stage.schedule
    assert schedule(0) == 0.0 and schedule(schedule.length) == 0.0  # warmup from 0, decay to 0 at the end
