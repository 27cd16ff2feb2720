"""The pure ``resolve(config, StageFacts) -> Schedule`` of litcpt.schedules.config, and ``LRStage``: no Trainer.

Each kind is checked against its closed form for lengths given as fractions, steps and tokens, and against what the
callback resolves from a (fake) Trainer: one definition, the same numbers bit for bit."""

from __future__ import annotations

import math

import pytest

from litcpt.schedules import (
    WSD,
    Constant,
    ConstantConfig,
    Infinite,
    InfiniteConfig,
    Length,
    LinearDecay,
    LinearDecayConfig,
    LRStage,
    Power,
    PowerConfig,
    StageFacts,
    WarmupCosine,
    WarmupCosineConfig,
    WSDConfig,
    resolve,
)

LR = 3e-3
TPS = 1024  # tokens per step (a power of 2: conversions are exact)


# ------------------------------------------------------------------------------------------------ every kind
@pytest.mark.parametrize("config, facts, expected", [
    (WarmupCosineConfig(), StageFacts(steps=200, peak_lr=LR),
     WarmupCosine(warmup=0.01 * 200, total=200.0, max_lr=LR, min_lr=0.1 * LR)),
    (WarmupCosineConfig(warmup=Length(steps=5), min_lr=1e-4), StageFacts(steps=50, peak_lr=LR),
     WarmupCosine(warmup=5.0, total=50.0, max_lr=LR, min_lr=1e-4)),
    (InfiniteConfig(cooldown_shape="inv_sqrt", anneal=Length(fraction=0.1)), StageFacts(steps=100, peak_lr=LR),
     Infinite(warmup=1.0, cooldown=60.0, constant=29.0, anneal=10.0, max_lr=LR, const_lr=0.55 * LR, min_lr=0.1 * LR,
              cooldown_shape="inv_sqrt")),
    (InfiniteConfig(stage_start="constant", anneal=Length(steps=10), const_lr=1e-3, min_lr_ratio=0.01,
                    anneal_shape="linear"), StageFacts(steps=40, peak_lr=LR),
     Infinite(warmup=0.0, cooldown=0.0, constant=30.0, anneal=10.0, max_lr=LR, const_lr=1e-3, min_lr=0.01 * LR,
              anneal_shape="linear")),
    (WSDConfig(), StageFacts(steps=100, peak_lr=LR),
     WSD(warmup=1.0, total=100.0, decay=20.0, max_lr=LR, min_lr=0.1 * LR, decay_shape="1-sqrt")),
    (WSDConfig(warmup=Length(tokens=4 * TPS), decay=Length(steps=30), decay_shape="cosine", min_lr=0.0),
     StageFacts(steps=100, peak_lr=LR, tokens_per_step=TPS),
     WSD(warmup=4.0, total=100.0, decay=30.0, max_lr=LR, min_lr=0.0, decay_shape="cosine")),
    (ConstantConfig(warmup=Length(steps=4)), StageFacts(peak_lr=LR), Constant(lr=LR, warmup=4.0)),
    (ConstantConfig(warmup=Length(fraction=0.1)), StageFacts(steps=30, peak_lr=LR), Constant(lr=LR, warmup=3.0)),
    (LinearDecayConfig(), StageFacts(steps=100, peak_lr=LR), LinearDecay(warmup=1.0, total=100.0, max_lr=LR)),
    (LinearDecayConfig(min_lr_ratio=0.1, warmup=Length(steps=0)), StageFacts(steps=10, peak_lr=LR),
     LinearDecay(warmup=0.0, total=10.0, max_lr=LR, min_lr=0.1 * LR)),
    (PowerConfig(warmup=Length(tokens=3 * TPS), decay=Length(fraction=0.25)),
     StageFacts(steps=20, tokens_per_step=TPS, peak_lr=LR, seq_length=256),
     Power(warmup=3.0 * TPS, total=20.0 * TPS, decay=5.0 * TPS, max_lr=LR, batch_size=TPS / 256)),
    (PowerConfig(batch_size=8, a=0.5, b=-0.6, min_lr=1e-5, decay=Length(steps=2), decay_shape="exponential"),
     StageFacts(steps=20, tokens_per_step=TPS, peak_lr=LR),
     Power(warmup=0.0, total=20.0 * TPS, decay=2.0 * TPS, max_lr=LR, a=0.5, b=-0.6, batch_size=8.0, min_lr=1e-5,
           decay_shape="exponential")),
], ids=["cosine-defaults", "cosine-steps", "infinite", "infinite-later", "wsd", "wsd-tokens-steps", "constant-steps",
        "constant-fraction", "d2z", "linear-ratio", "power-tokens", "power-batch"])
def test_every_kind_resolves_to_its_closed_form(config, facts, expected):
    assert resolve(config, facts) == expected


def test_lengths_in_steps_and_in_tokens_give_the_same_curve():
    steps = resolve(InfiniteConfig(warmup=Length(steps=8), cooldown=Length(tokens=40 * TPS), anneal=Length(0.2)),
                    StageFacts(steps=100, tokens_per_step=TPS, peak_lr=LR))
    tokens = resolve(InfiniteConfig(unit="tokens", warmup=Length(steps=8), cooldown=Length(tokens=40 * TPS),
                                    anneal=Length(0.2)), StageFacts(steps=100, tokens_per_step=TPS, peak_lr=LR))
    assert tokens.warmup == 8 * TPS and tokens.cooldown == 40 * TPS and tokens.anneal == 0.2 * 100 * TPS
    assert [steps(k) for k in range(100)] == [tokens(k * TPS) for k in range(100)]


def test_stage_length_from_the_config_or_the_facts():
    facts = StageFacts(steps=100, tokens_per_step=TPS, peak_lr=LR)
    assert resolve(WarmupCosineConfig(total_steps=40), facts).total == 40  # the config's wins
    assert resolve(WarmupCosineConfig(total_tokens=20 * TPS), facts).total == 20
    assert resolve(WarmupCosineConfig(unit="tokens", total_steps=40), facts).total == 40 * TPS
    assert resolve(WarmupCosineConfig(), StageFacts(tokens=30 * TPS, tokens_per_step=TPS, peak_lr=LR)).total == 30
    assert resolve(WarmupCosineConfig(unit="tokens"), StageFacts(tokens=30 * TPS, peak_lr=LR)).total == 30 * TPS
    assert resolve(WarmupCosineConfig(max_lr=1e-3, tokens_per_step=2 * TPS, unit="tokens"), facts) == WarmupCosine(
        warmup=0.01 * 200 * TPS, total=200.0 * TPS, max_lr=1e-3, min_lr=1e-4)  # config's tps and peak LR win


def test_what_needs_no_stage_length_resolves_without_one():
    assert resolve(ConstantConfig(), StageFacts(peak_lr=LR)) == Constant(lr=LR, warmup=0.0)
    assert resolve(PowerConfig(batch_size=4), StageFacts(peak_lr=LR)) == Power(
        warmup=0.0, total=math.inf, decay=0.0, max_lr=LR, batch_size=4.0)
    assert resolve(PowerConfig(warmup=Length(tokens=100)), StageFacts(peak_lr=LR, tokens_per_step=64,
                                                                      seq_length=16)).batch_size == 4.0
    assert not ConstantConfig(warmup=Length(steps=3)).needs_length and ConstantConfig(warmup=Length(0.1)).needs_length
    assert PowerConfig(decay=Length(steps=1)).needs_length and not PowerConfig(decay=Length(steps=0)).needs_length


@pytest.mark.parametrize("config, facts, match", [
    (WarmupCosineConfig(), StageFacts(peak_lr=LR), r"^the stage length is unknown"),
    (WarmupCosineConfig(warmup=Length(steps=50)), StageFacts(steps=10, peak_lr=LR),
     r"^warmup=50 is longer than the stage \(total=10\)$"),
    (WarmupCosineConfig(), StageFacts(steps=10), r"^the peak LR is unknown"),
    (WarmupCosineConfig(unit="tokens"), StageFacts(steps=10, peak_lr=LR),
     r"^tokens_per_step is needed to convert the stage length \(unit='tokens'\)"),
    (WarmupCosineConfig(warmup=Length(tokens=100)), StageFacts(steps=10, peak_lr=LR),
     r"^tokens_per_step is needed to convert warmup_tokens between steps and tokens"),
    (WSDConfig(warmup=Length(steps=50), decay=Length(steps=60)), StageFacts(steps=100, peak_lr=LR),
     r"^warmup=50 \+ decay=60 = 110 is longer than the stage"),
    (InfiniteConfig(const_lr=0.5), StageFacts(steps=100, peak_lr=0.1), r"^const_lr=0.5 must lie in \[min_lr, max_lr\]"),
    (PowerConfig(), StageFacts(peak_lr=LR), r"^batch_size is needed \(sequences per optimizer step\)"),
    (ConstantConfig(warmup=Length(0.5)), StageFacts(peak_lr=LR), r"^the stage length is unknown"),
])
def test_resolution_errors_are_one_line(config, facts, match):
    with pytest.raises(ValueError, match=match) as info:
        resolve(config, facts)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("make, match", [
    (lambda: WarmupCosineConfig(warmup=Length(fraction=0.1, steps=10)),
     r"^give at most one of warmup=0.1, warmup_steps=10 \(length of the warmup phase\)$"),
    (lambda: WarmupCosineConfig(warmup=Length(1.5)), r"^warmup=1.5 must be in \[0, 1\]$"),
    (lambda: WSDConfig(decay=Length(tokens=-1)), r"^decay_tokens=-1 must be >= 0$"),
    (lambda: WarmupCosineConfig(warmup=0.1), r"^warmup=0.1 must be a Length"),
    (lambda: WarmupCosineConfig(unit="epochs"), r"^unit='epochs' must be one of 'steps', 'tokens'$"),
    (lambda: WarmupCosineConfig(total_steps=10, total_tokens=5),
     r"^give at most one of total_steps=10, total_tokens=5"),
    (lambda: WarmupCosineConfig(max_lr=0), r"^max_lr=0 must be > 0$"),
    (lambda: LinearDecayConfig(min_lr=0.1, min_lr_ratio=0.1), r"^give at most one of min_lr=0.1, min_lr_ratio=0.1$"),
    (lambda: InfiniteConfig(anneal=Length(0.5)), r"^fractions warmup=0.01 \+ cooldown=0.6 \+ anneal=0.5 = 1.11 exceed"),
    (lambda: InfiniteConfig(stage_start="constant", cooldown=Length(steps=3)),
     r"^cooldown=3 must be 0 with stage_start='constant' \(a later stage\)$"),
    (lambda: InfiniteConfig(const_lr_ratio=2), r"^const_lr_ratio=2 must be in \[0, 1\]$"),
    (lambda: WSDConfig(decay_shape="step"), r"^decay_shape='step' must be one of"),
    (lambda: PowerConfig(b=0.5), r"^b=0.5 must be a negative number"),
    (lambda: PowerConfig(batch_size=0), r"^batch_size=0 must be > 0$"),
    (lambda: StageFacts(steps=10, tokens=5), r"^give at most one of steps=10, tokens=5$"),
    (lambda: StageFacts(steps=0), r"^steps=0 must be > 0$"),
    (lambda: StageFacts(peak_lr=math.nan), r"^peak_lr=nan must be a finite number$"),
])
def test_configuration_errors_are_one_line(make, match):
    with pytest.raises(ValueError, match=match) as info:
        make()
    assert "\n" not in str(info.value)


def test_configurations_are_frozen_values():
    a, b = WSDConfig(decay=Length(steps=10)), WSDConfig(decay=Length(steps=10))
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.decay = Length(steps=5)  # type: ignore[misc]
    assert WSDConfig().unit == "steps" and PowerConfig().unit == "tokens"
    with pytest.raises(TypeError):
        PowerConfig(unit="steps")  # type: ignore[call-arg]  # the Power scheduler always counts tokens


# ------------------------------------------------------------------------------------------------ the callbacks
def _fake_trainer(max_steps, global_step=0, lr=LR):
    from types import SimpleNamespace

    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    return SimpleNamespace(max_steps=max_steps, estimated_stepping_batches=max_steps, global_step=global_step,
                           optimizers=[optimizer], lr_scheduler_configs=[])


@pytest.mark.parametrize("make", [
    lambda c: c.WarmupCosineLR(warmup=0.05, min_lr=1e-4),
    lambda c: c.InfiniteLR(warmup_steps=3, cooldown=0.3, anneal_tokens=12 * TPS, unit="tokens",
                           cooldown_shape="inv_sqrt"),
    lambda c: c.InfiniteLR(stage_start="constant", anneal=0.25, const_lr_ratio=0.5),
    lambda c: c.WSDLR(warmup_tokens=2 * TPS, decay_steps=20, decay_shape="exponential", min_lr_ratio=0.01),
    lambda c: c.ConstantLR(warmup=0.1),
    lambda c: c.LinearDecayLR(warmup_steps=4),
    lambda c: c.PowerLR(warmup_tokens=5 * TPS, decay=0.2, a=0.5),
], ids=["cosine", "infinite-tokens", "infinite-later", "wsd", "constant", "d2z", "power"])
def test_a_callback_resolves_its_config_with_the_trainers_facts(make):
    """The callback's schedule at on_fit_start (a stage starting at global step 20 of 120) is resolve(config, facts)
    of the same facts, and the same as its resolve() without a Trainer."""
    from types import SimpleNamespace

    from litcpt import callbacks

    callback = make(callbacks)
    module = SimpleNamespace(tokens_per_step=TPS, seq_length=256)
    callback.on_fit_start(_fake_trainer(120, global_step=20), module)
    facts = StageFacts(steps=100, tokens_per_step=TPS, peak_lr=LR, seq_length=256)
    assert callback.schedule == resolve(callback.config, facts) == callback.resolve(facts)


def test_callback_resolve_names_the_class():
    from litcpt.callbacks import WSDLR

    with pytest.raises(ValueError, match=r"^WSDLR: warmup=50 \+ decay=60 = 110 is longer than the stage"):
        WSDLR(warmup_steps=50, decay_steps=60).resolve(StageFacts(steps=100, peak_lr=LR))


# ------------------------------------------------------------------------------------------------ LRStage
def test_lr_stage_places_the_schedule_on_global_steps():
    schedule = WarmupCosine(warmup=2, total=10, max_lr=LR, min_lr=0.1 * LR)
    stage = LRStage(schedule, first_step=5)
    assert [stage.lr(5 + k) for k in range(10)] == [schedule(k) for k in range(10)]
    tokens = LRStage(WarmupCosine(warmup=2 * TPS, total=10 * TPS, max_lr=LR, min_lr=0.1 * LR), first_step=-3,
                     t_per_step=TPS)
    assert tokens.progress(0) == 3 * TPS and [tokens.lr(k - 3) for k in range(10)] == [schedule(k) for k in range(10)]
    for kwargs, match in (({"first_step": 1.5}, r"^first_step=1.5 must be a whole number"),
                          ({"t_per_step": 0}, r"^t_per_step=0 must be a positive finite number$")):
        with pytest.raises(ValueError, match=match):
            LRStage(schedule, **kwargs)
    with pytest.raises(ValueError, match=r"must be a litcpt.schedules.formulas schedule"):
        LRStage(lambda t: 1.0)  # type: ignore[arg-type]
