"""``litcpt demo``'s run: the part asked for (:data:`PARTS`) with the command's arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

__all__ = ["PARTS", "Part", "run_demo"]

Part = Literal["cpt", "reward", "all", "beyond", "self-replay"]
PARTS: tuple[str, ...] = get_args(Part)


def run_demo(
    *,
    part: Part,
    out_dir: Path,
    d1_tokens: int | None,
    d2_tokens: int | None,
    replay_fractions: list[float],
    infinite: bool,
    infinite_replay: float,
    anneal_fraction: float,
    lr: float,
    seed: int,
    quick: bool,
    num_threads: int,
    cache_dir: Path | None,
    verbose: bool,
    reward_steps: int,
) -> dict[str, Any]:
    """Run ``part`` of the demo: ``cpt`` (:func:`litcpt.demo.cpt.run_cpt`), ``reward``
    (:func:`litcpt.demo.reward.run_reward`), ``all`` (both, the reward summary under ``"reward"``) or ``beyond``
    (:func:`litcpt.demo.beyond.run_beyond`) or ``self-replay`` (:func:`litcpt.demo.self_replay.run_self_replay`). The
    arguments are ``litcpt demo``'s."""
    if part not in PARTS:
        raise ValueError(f"part: expected one of {', '.join(map(repr, PARTS))}, got {part!r}")
    kwargs = dict(
        out_dir=out_dir,
        d1_tokens=d1_tokens,
        d2_tokens=d2_tokens,
        replay_fractions=replay_fractions,
        infinite=infinite,
        infinite_replay=infinite_replay,
        anneal_fraction=anneal_fraction,
        lr=lr,
        seed=seed,
        quick=quick,
        num_threads=num_threads,
        cache_dir=cache_dir,
        verbose=verbose,
    )
    if part == "beyond":
        from litcpt.demo.beyond import run_beyond

        return run_beyond(**kwargs)
    if part == "self-replay":
        from litcpt.demo.self_replay import run_self_replay

        return run_self_replay(**kwargs)
    summary: dict[str, Any] = {}
    if part in ("cpt", "all"):
        from litcpt.demo.cpt import run_cpt

        summary = run_cpt(**kwargs)
    if part in ("reward", "all"):
        from litcpt.demo.reward import run_reward

        summary["reward"] = run_reward(**kwargs, steps=reward_steps)
    return summary
