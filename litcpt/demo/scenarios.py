"""The runs of ``litcpt demo``'s continual-pretraining part, as ``litcpt pretrain`` recipes (dicts), parents first:

1. ``d1``: pretrain on D1 from random init (linear warmup 1%, cosine to 0.1 x peak).
2. ``d2-replayN``: continue from (1) on D2, re-warming and re-decaying the LR, with ``N`` % of each batch replayed
   from D1 (one run per replay fraction; 0 % is the no-replay baseline).
3. ``union``: retrain from random init on D1 U D2 with the tokens of (1) + (2), EN/FR mixed in that proportion.
4. ``inf-d1`` -> ``inf-d2`` -> ``inf-anneal`` (``infinite=True``): an infinite schedule: D1 with warmup, cooldown and
   then a constant LR; D2 (with ``infinite_replay``) at the constant LR; a short anneal on D2 to 0.1 x peak.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from litcpt.demo.runtime import QUICK_MODEL, TINY_MODEL, Scenario, lr_schedule_spec, mix_data

__all__ = ["BATCH", "build_scenarios", "pct", "scenario_recipe"]

BATCH = 16
"""Sequences per optimizer step (one micro-batch) of every demo run."""


def pct(fraction: float) -> str:
    """A fraction as the percent the scenario names use (``0.05`` -> ``5``)."""
    return f"{100 * fraction:g}"


def scenario_recipe(steps: int, data: dict, schedule: dict, *, fresh: bool, model: dict[str, Any], interval: int,
                    seed: int, lr: float) -> dict[str, Any]:
    """The ``litcpt pretrain`` recipe of one run: ``steps`` optimizer steps of :data:`BATCH` blocks on ``data`` with
    the LR ``schedule``, validating every ``interval`` steps and before the first; ``fresh``: from random init."""
    tokens_per_step = BATCH * model["block_size"]
    recipe: dict[str, Any] = {
        "precision": "32-true",
        "accelerator": "cpu",
        "devices": 1,
        "data": data,
        "train": {"global_batch_size": BATCH, "micro_batch_size": BATCH, "max_tokens": steps * tokens_per_step,
                  "max_seq_length": model["block_size"], "log_interval": 1, "save_interval": None,
                  "max_norm": 1.0},
        "eval": {"interval": interval, "max_iters": 4, "initial_validation": True,
                 "final_validation": True},
        "lr_schedule": schedule,
        "optimizer": {"class_path": "torch.optim.AdamW",
                      "init_args": {"lr": lr, "weight_decay": 0.1, "betas": [0.9, 0.95]}},
        "seed": seed,
        "logger_name": "csv",
    }
    if fresh:
        recipe["model_config"] = dict(model)
    return recipe


def _check(steps1: int, steps2: int, tokens_per_step: int, d1_tokens: int, d2_tokens: int,
           fractions: Sequence[float], anneal_fraction: float) -> None:
    if steps1 < 4 or steps2 < 4:
        raise ValueError(f"d1_tokens/d2_tokens: need at least 4 optimizer steps of {tokens_per_step} tokens each, got "
                         f"{d1_tokens} and {d2_tokens}")
    for f in fractions:
        if not 0 <= f < 1:
            raise ValueError(f"replay fractions must be in [0, 1), got {f}")
    if not 0 < anneal_fraction < 1:
        raise ValueError(f"anneal_fraction must be in (0, 1), got {anneal_fraction}")


def _cosine_runs(recipe: Callable[..., dict], data: Callable[[str, str, float], dict], steps1: int, steps2: int,
                 replay_fractions: Sequence[float]) -> list[Scenario]:
    """``d1``, one ``d2-replayN`` per replay fraction, ``union``: the paper's cosine runs."""
    cosine = lr_schedule_spec("WarmupCosineLR", warmup=0.01, min_lr_ratio=0.1)
    runs = [Scenario("d1", "D1 pretrain (cosine)", recipe(steps1, data("en", "fr", 0.0), cosine, fresh=True))]
    for f in replay_fractions:
        runs.append(Scenario(f"d2-replay{pct(f)}", f"D1 → D2, {pct(f)}% replay",
                             recipe(steps2, data("fr", "en", f), cosine, fresh=False), parent="d1"))
    union_data = data("en", "fr", steps2 / (steps1 + steps2))
    runs.append(Scenario("union", "D1 ∪ D2 retrain (cosine)", recipe(steps1 + steps2, union_data, cosine, fresh=True)))
    return runs


def _infinite_runs(recipe: Callable[..., dict], data: Callable[[str, str, float], dict], steps1: int, steps2: int,
                   replay: float, anneal_fraction: float) -> list[Scenario]:
    """``inf-d1`` -> ``inf-d2`` -> ``inf-anneal``: the infinite schedule's chain over the same tokens."""
    anneal_steps = max(1, round(steps2 * anneal_fraction))
    infinite = functools.partial(lr_schedule_spec, "InfiniteLR")
    return [
        Scenario("inf-d1", "∞: D1 (cooldown → constant)",
                 recipe(steps1, data("en", "fr", 0.0),
                        infinite(warmup=0.01, cooldown=0.6, const_lr_ratio=0.55, min_lr_ratio=0.1,
                                 cooldown_shape="inv_sqrt"), fresh=True)),
        Scenario("inf-d2", f"∞: → D2 constant, {pct(replay)}% replay",
                 recipe(steps2 - anneal_steps, data("fr", "en", replay),
                        infinite(stage_start="constant", const_lr_ratio=0.55, min_lr_ratio=0.1), fresh=False),
                 parent="inf-d1"),
        Scenario("inf-anneal", f"∞: → D2 anneal, {pct(replay)}% replay",
                 recipe(anneal_steps, data("fr", "en", replay),
                        infinite(stage_start="constant", anneal=1.0, const_lr_ratio=0.55, min_lr_ratio=0.1,
                                 anneal_shape="cosine"), fresh=False),
                 parent="inf-d2"),
    ]


def build_scenarios(
    *,
    d1_tokens: int,
    d2_tokens: int,
    replay_fractions: Sequence[float],
    infinite: bool,
    infinite_replay: float,
    anneal_fraction: float,
    seed: int,
    quick: bool,
    lr: float,
    cache_dir: Path | None = None,
) -> tuple[list[Scenario], int]:
    """The demo's runs in order (parents first), and the tokens per optimizer step."""
    model = QUICK_MODEL if quick else TINY_MODEL
    tokens_per_step = BATCH * model["block_size"]
    steps1, steps2 = d1_tokens // tokens_per_step, d2_tokens // tokens_per_step
    _check(steps1, steps2, tokens_per_step, d1_tokens, d2_tokens, [*replay_fractions, infinite_replay],
           anneal_fraction)
    recipe = functools.partial(scenario_recipe, model=model, interval=max(1, min(steps1, steps2) // 8), seed=seed,
                               lr=lr)

    def data(new: str, old: str, fraction: float) -> dict[str, Any]:
        return mix_data(new, old, fraction, seed, cache_dir)

    runs = _cosine_runs(recipe, data, steps1, steps2, replay_fractions)
    if infinite:
        runs += _infinite_runs(recipe, data, steps1, steps2, infinite_replay, anneal_fraction)
    return runs, tokens_per_step
