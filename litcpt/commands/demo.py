"""``litcpt demo``: the paper's continual-pretraining experiment in miniature, offline, on a few CPU cores.

Ibrahim et al. (2024, arXiv 2403.08763) at toy scale, with the bundled corpora: D1 = English, D2 = French (a strong
distribution shift). Scenarios, all with the same tiny LLaMA-style model and the same peak LR:

1. ``d1``: pretrain on D1 from random init (linear warmup 1%, cosine to 0.1 x peak).
2. ``d2-replayN``: continue from (1) on D2, re-warming and re-decaying the LR, with ``N`` % of each batch replayed
   from D1 (one run per replay fraction; 0 % is the no-replay baseline).
3. ``union``: retrain from random init on D1 U D2 with the tokens of (1) + (2), EN/FR mixed in that proportion.
4. ``inf-d1`` -> ``inf-d2`` -> ``inf-anneal`` (``infinite=True``): an infinite schedule: D1 with warmup, cooldown and
   then a constant LR; D2 (with ``infinite_replay``) at the constant LR; a short anneal on D2 to 0.1 x peak.

Every run validates on both D1 and D2 held-out sets (fixed blocks, the same in every run) and continued runs validate
before their first step, so the curves show forgetting and its recovery. Each run is an ordinary
``litcpt.training.pretrain.setup`` call, in this process; its ``config.yaml`` is the recipe it ran (the same schema as
``recipes/tiny/*.yaml``). Output in ``out_dir``: ``runs/<scenario>/`` (checkpoints, logs, ``train.log``),
``report.md``, ``report.json``, ``val_loss.png``, ``lr.png`` (written by :mod:`litcpt.report.runs`, the code behind
``litcpt report``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from litcpt.demo.runtime import (
    DEFAULT_TOKENS,
    QUICK_MODEL,
    QUICK_TOKENS,
    TINY_MODEL,
    Scenario,
    lr_schedule_spec,
    mix_data,
    run_scenario,
    runs_dir_of,
    torch_threads,
)

__all__ = ["main", "build_scenarios"]

TITLES = {"en": "D1 (en)", "fr": "D2 (fr)"}


def _pct(fraction: float) -> str:
    return f"{100 * fraction:g}"


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
    batch = 16
    tps = batch * model["block_size"]
    steps1, steps2 = d1_tokens // tps, d2_tokens // tps
    if steps1 < 4 or steps2 < 4:
        raise ValueError(f"d1_tokens/d2_tokens: need at least 4 optimizer steps of {tps} tokens each, got "
                         f"{d1_tokens} and {d2_tokens}")
    for f in [*replay_fractions, infinite_replay]:
        if not 0 <= f < 1:
            raise ValueError(f"replay fractions must be in [0, 1), got {f}")
    if not 0 < anneal_fraction < 1:
        raise ValueError(f"anneal_fraction must be in (0, 1), got {anneal_fraction}")
    interval = max(1, min(steps1, steps2) // 8)

    def recipe(tokens_steps: int, data: dict, schedule: dict, *, fresh: bool) -> dict[str, Any]:
        r: dict[str, Any] = {
            "precision": "32-true",
            "accelerator": "cpu",
            "devices": 1,
            "data": data,
            "train": {"global_batch_size": batch, "micro_batch_size": batch, "max_tokens": tokens_steps * tps,
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
            r["model_config"] = dict(model)
        return r

    cosine = lr_schedule_spec("WarmupCosineLR", warmup=0.01, min_lr_ratio=0.1)
    runs = [Scenario("d1", "D1 pretrain (cosine)", recipe(steps1, mix_data("en", "fr", 0.0, seed, cache_dir), cosine,
                                                         fresh=True))]
    for f in replay_fractions:
        runs.append(
            Scenario(
                f"d2-replay{_pct(f)}",
                f"D1 → D2, {_pct(f)}% replay",
                recipe(steps2, mix_data("fr", "en", f, seed, cache_dir), cosine, fresh=False),
                parent="d1",
            )
        )
    union_fraction = steps2 / (steps1 + steps2)
    union_data = mix_data("en", "fr", union_fraction, seed, cache_dir)
    runs.append(Scenario("union", "D1 ∪ D2 retrain (cosine)", recipe(steps1 + steps2, union_data, cosine, fresh=True)))
    if infinite:
        anneal_steps = max(1, round(steps2 * anneal_fraction))
        runs += [
            Scenario(
                "inf-d1",
                "∞: D1 (cooldown → constant)",
                recipe(
                    steps1,
                    mix_data("en", "fr", 0.0, seed, cache_dir),
                    lr_schedule_spec(
                        "InfiniteLR",
                        warmup=0.01,
                        cooldown=0.6,
                        const_lr_ratio=0.55,
                        min_lr_ratio=0.1,
                        cooldown_shape="inv_sqrt",
                    ),
                    fresh=True,
                ),
            ),
            Scenario(
                "inf-d2",
                f"∞: → D2 constant, {_pct(infinite_replay)}% replay",
                recipe(
                    steps2 - anneal_steps,
                    mix_data("fr", "en", infinite_replay, seed, cache_dir),
                    lr_schedule_spec("InfiniteLR", stage_start="constant", const_lr_ratio=0.55, min_lr_ratio=0.1),
                    fresh=False,
                ),
                parent="inf-d1",
            ),
            Scenario(
                "inf-anneal",
                f"∞: → D2 anneal, {_pct(infinite_replay)}% replay",
                recipe(
                    anneal_steps,
                    mix_data("fr", "en", infinite_replay, seed, cache_dir),
                    lr_schedule_spec(
                        "InfiniteLR",
                        stage_start="constant",
                        anneal=1.0,
                        const_lr_ratio=0.55,
                        min_lr_ratio=0.1,
                        anneal_shape="cosine",
                    ),
                    fresh=False,
                ),
                parent="inf-d2",
            ),
        ]
    return runs, tps


def _observations(json_runs: dict[str, dict[str, Any]], replay_fractions: Sequence[float]) -> list[str]:
    """Plain-language checks of the paper's claims on this run's numbers."""
    from litcpt.report.runs import format_tokens

    notes = []

    def final(name: str, source: str) -> float | None:
        run = json_runs.get(name)
        return None if run is None else run["final"].get(source)

    d1_en = final("d1", "en")
    fractions = sorted(replay_fractions)
    norep = f"d2-replay{_pct(0.0)}" if 0.0 in fractions else None
    if d1_en is not None and norep and final(norep, "en") is not None:
        after = final(norep, "en")
        verb = "rises" if after > d1_en else "does not rise"
        notes.append(
            f"Forgetting: without replay the D1 (en) loss {verb} from {d1_en:.3f} (end of D1) to {after:.3f} after D2."
        )
    if norep:
        for f in fractions:
            name = f"d2-replay{_pct(f)}"
            if f > 0 and final(name, "en") is not None and final(norep, "en") is not None:
                delta = final(name, "en") - final(norep, "en")
                d2 = final(name, "fr") - final(norep, "fr")
                notes.append(f"{_pct(f)}% replay: D1 loss {delta:+.3f} vs. no replay, D2 loss {d2:+.3f}.")
    union = json_runs.get("union")
    if union and union["average"] is not None and norep and json_runs[norep]["average"] is not None:
        base = json_runs[norep]["average"]
        gap = base - union["average"]
        for f in fractions:
            run = json_runs.get(f"d2-replay{_pct(f)}")
            if f > 0 and run and run["average"] is not None and abs(gap) > 1e-9:
                closed = (base - run["average"]) / gap
                notes.append(
                    f"{_pct(f)}% replay closes {100 * closed:.0f}% of the average-loss gap between no replay "
                    f"({base:.3f}) and the union retrain ({union['average']:.3f}), training on "
                    f"{format_tokens(run['tokens'])} tokens given the D1 model, where the union retrain "
                    f"trains on {format_tokens(union['tokens'])}."
                )
    inf = json_runs.get("inf-anneal")
    if inf and inf["average"] is not None:
        cos_name = next(
            (
                n
                for n in json_runs
                if n.startswith("d2-replay") and abs(json_runs[n]["label_fraction"] - inf["label_fraction"]) < 1e-9
            ),
            None,
        )
        if cos_name and json_runs[cos_name]["average"] is not None:
            diff = inf["average"] - json_runs[cos_name]["average"]
            notes.append(
                f"Infinite schedule after its anneal vs. re-warmed cosine (same replay): average loss "
                f"{inf['average']:.3f} vs. {json_runs[cos_name]['average']:.3f} ({diff:+.3f})."
            )
    return notes


def main(
    out_dir: Path = Path("out/demo"),
    d1_tokens: int | None = None,
    d2_tokens: int | None = None,
    replay_fractions: list[float] = [0.0, 0.05, 0.25],  # noqa: B006 - shown as the CLI default
    infinite: bool = True,
    infinite_replay: float = 0.05,
    anneal_fraction: float = 0.2,
    lr: float = 3e-3,
    seed: int = 42,
    quick: bool = False,
    num_threads: int = 1,
    cache_dir: Path | None = None,
    verbose: bool = False,
    part: Literal["cpt", "reward", "all", "beyond"] = "cpt",
    reward_steps: int = 120,
) -> dict[str, Any]:
    """Run the paper's continual-pretraining comparison at toy scale on CPU and write a report.

    Args:
        out_dir: output dir: ``runs/<scenario>/``, ``report.md``, ``report.json``, ``val_loss.png``, ``lr.png``.
        d1_tokens: training tokens of the D1 (English) pretraining (default 262144 = 128 steps; 65536 with quick).
        d2_tokens: training tokens of each D2 (French) continuation, replay included (compute-equivalent);
            default as d1_tokens.
        replay_fractions: D1 replay shares of the D2 continuations (one run each; 0 = no replay).
        infinite: also run the infinite-schedule chain (D1 cooldown -> constant, D2 constant, anneal).
        infinite_replay: replay share of the infinite chain's D2 stages.
        anneal_fraction: share of ``d2_tokens`` spent in the infinite chain's final anneal.
        lr: peak learning rate (AdamW, betas 0.9/0.95, weight decay 0.1); the minimum is 0.1 x peak.
        seed: seed of model init and data order.
        quick: a smaller model (2 layers, d=64, 64-token blocks) and 64K-token stages, for tests (~1 min).
        num_threads: torch CPU threads (1 is fastest on a busy 2-core machine).
        cache_dir: token cache dir (default: ``$LITCPT_CACHE_DIR/tokens`` or ``~/.cache/litcpt/tokens``).
        verbose: show Lightning's per-run output instead of writing it to ``runs/<scenario>/train.log``.
        part: ``cpt`` (the continual-pretraining comparison), ``reward`` (fine-tune the D1-pretrained tiny model
            as a reward model on the bundled HH-RLHF pairs, both heads, and report held-out accuracy; runs only the
            D1 pretraining first if ``runs/d1/final`` is missing), ``all`` (both), or ``beyond`` (opt-in: EMA,
            checkpoint
            averaging vs. anneal, D2Z vs. cosine, optimizer state carried at the D1 -> D2 boundary; see
            :mod:`litcpt.demo.beyond`).
        reward_steps: optimizer steps (16 pairs each) of each reward model in the reward part.

    Returns: the JSON summary of ``report.json`` plus ``wall_time_s``.
    """
    if part not in ("cpt", "reward", "all", "beyond"):
        raise ValueError(f"part: expected 'cpt', 'reward', 'all' or 'beyond', got {part!r}")
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
    summary: dict[str, Any] = {}
    if part == "beyond":
        from litcpt.demo.beyond import run_beyond

        return run_beyond(**kwargs)
    if part in ("cpt", "all"):
        summary = run_cpt(**kwargs)
    if part in ("reward", "all"):
        summary["reward"] = run_reward(**kwargs, steps=reward_steps)
    return summary


def run_reward(
    *, out_dir: Path, steps: int, seed: int, quick: bool, num_threads: int, verbose: bool, **cpt_kwargs: Any
) -> dict[str, Any]:
    """The reward part: the D1-pretrained tiny model (trained first if missing) -> two reward models."""
    from litcpt.demo import reward as demo_reward

    out_dir = Path(out_dir)
    backbone = out_dir / "runs" / "d1" / "final"
    if not (backbone / "lit_model.pth").is_file():
        default_tokens = QUICK_TOKENS if quick else DEFAULT_TOKENS
        scenarios, _ = build_scenarios(
            d1_tokens=cpt_kwargs["d1_tokens"] or default_tokens,
            d2_tokens=cpt_kwargs["d2_tokens"] or default_tokens,
            replay_fractions=cpt_kwargs["replay_fractions"],
            infinite=False,
            infinite_replay=cpt_kwargs["infinite_replay"],
            anneal_fraction=cpt_kwargs["anneal_fraction"],
            seed=seed,
            quick=quick,
            lr=cpt_kwargs["lr"],
            cache_dir=cpt_kwargs["cache_dir"],
        )
        print("litcpt demo: pretraining the tiny D1 model for the reward part ...", file=sys.stderr)
        with torch_threads(num_threads):
            run_scenario(scenarios[0], out_dir / "runs", verbose=verbose)
    print("litcpt demo: training reward models (linear and logit heads) ...", file=sys.stderr)
    with torch_threads(num_threads):
        results = demo_reward.run_reward_part(
            backbone,
            out_dir / "runs",
            steps=max(2, steps // 4) if quick else steps,
            seed=seed,
            log_file=None if verbose else out_dir / "runs" / "reward.log",
        )
    demo_reward.write(results, out_dir)
    print(demo_reward.markdown(results))
    print(f"report: {out_dir / 'reward.md'}")
    return results


def run_cpt(
    *,
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
) -> dict[str, Any]:
    """The continual-pretraining part of :func:`main` (same arguments)."""
    from tqdm.auto import tqdm

    from litcpt.report.files import write_report
    from litcpt.report.runs import load_runs, markdown_table, table_rows, to_json

    default_tokens = QUICK_TOKENS if quick else DEFAULT_TOKENS
    d1_tokens = default_tokens if d1_tokens is None else d1_tokens
    d2_tokens = default_tokens if d2_tokens is None else d2_tokens
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    scenarios, tps = build_scenarios(
        d1_tokens=d1_tokens,
        d2_tokens=d2_tokens,
        replay_fractions=replay_fractions,
        infinite=infinite,
        infinite_replay=infinite_replay,
        anneal_fraction=anneal_fraction,
        seed=seed,
        quick=quick,
        lr=lr,
        cache_dir=cache_dir,
    )
    out_dir, runs_dir = runs_dir_of(out_dir, "runs")
    start = time.perf_counter()
    times: dict[str, float] = {}
    with torch_threads(num_threads):
        bar = tqdm(scenarios, desc="litcpt demo", unit="run", file=sys.stderr, dynamic_ncols=True)
        for scenario in bar:
            bar.set_postfix_str(scenario.name)
            t0 = time.perf_counter()
            run_scenario(scenario, runs_dir, verbose=verbose)
            times[scenario.name] = time.perf_counter() - t0
        bar.close()
    wall = time.perf_counter() - start

    runs = load_runs([runs_dir / s.name for s in scenarios], [s.label for s in scenarios])
    summary = to_json(runs, ["en", "fr"])
    by_name: dict[str, dict[str, Any]] = {}
    fractions = {s.name: float(s.recipe["data"]["init_args"]["fraction"]) for s in scenarios}
    for s, entry in zip(scenarios, summary["runs"]):
        entry["scenario"] = s.name
        entry["wall_time_s"] = round(times[s.name], 1)
        entry["label_fraction"] = fractions[s.name] if s.name != "union" else None
        by_name[s.name] = entry
    notes = _observations(by_name, replay_fractions)
    model_name = (QUICK_MODEL if quick else TINY_MODEL)["name"]
    command = f"litcpt demo --out_dir {out_dir}" + (" --quick true" if quick else "")
    intro = "\n".join(
        [
            f"Command: `{command}` (d1_tokens={d1_tokens}, d2_tokens={d2_tokens}, replay_fractions={replay_fractions}, "
            f"infinite={infinite}, seed={seed}, num_threads={num_threads}); wall time **{wall / 60:.1f} min** "
            f"({', '.join(f'{k} {v:.0f}s' for k, v in times.items())}).",
            "",
            f"D1 = bundled English corpus, D2 = bundled French corpus; model `{model_name}`, {tps} tokens per "
            f"optimizer step, peak LR {lr:g} (min 0.1 x peak).",
            "",
            *(f"- {n}" for n in notes),
        ]
    )
    write_report(
        runs, out_dir, sources=["en", "fr"], titles=TITLES, title="litcpt demo: continual pretraining", intro=intro
    )
    print(markdown_table(table_rows(runs, ["en", "fr"]), TITLES))
    for n in notes:
        print(f"- {n}")
    print(f"\nwall time {wall / 60:.1f} min; report: {out_dir / 'report.md'}")
    summary["wall_time_s"] = round(wall, 1)
    summary["observations"] = notes
    return summary
