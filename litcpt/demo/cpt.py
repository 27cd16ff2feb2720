"""The continual-pretraining part of ``litcpt demo``: the paper's experiment (Ibrahim et al. 2024, arXiv 2403.08763)
at toy scale with the bundled corpora, D1 = English, D2 = French (the runs: :mod:`litcpt.demo.scenarios`).

Every run validates on both D1 and D2 held-out sets (fixed blocks, the same in every run) and continued runs validate
before their first step, so the curves show forgetting and its recovery. Each run is an ordinary ``litcpt pretrain``
run (:func:`litcpt.demo.runtime.run_scenario`), in this process; its ``config.yaml`` is the recipe it ran (the same
schema as ``recipes/tiny/*.yaml``). Output in ``out_dir``: ``runs/<scenario>/`` (checkpoints, logs, ``train.log``),
``report.md``, ``report.json``, ``val_loss.png``, ``lr.png`` (written by :mod:`litcpt.report.files`, the code behind
``litcpt report``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from litcpt.demo.runtime import (
    DEFAULT_TOKENS,
    QUICK_MODEL,
    QUICK_TOKENS,
    TINY_MODEL,
    DemoProgress,
    run_scenario,
    runs_dir_of,
    torch_threads,
)
from litcpt.demo.scenarios import build_scenarios, pct

__all__ = ["TITLES", "observations", "run_cpt"]

TITLES = {"en": "D1 (en)", "fr": "D2 (fr)"}


def observations(json_runs: dict[str, dict[str, Any]], replay_fractions: Sequence[float]) -> list[str]:
    """Plain-language checks of the paper's claims on this run's numbers."""
    from litcpt.report.runs import format_tokens

    notes = []

    def final(name: str, source: str) -> float | None:
        run = json_runs.get(name)
        return None if run is None else run["final"].get(source)

    d1_en = final("d1", "en")
    fractions = sorted(replay_fractions)
    norep = f"d2-replay{pct(0.0)}" if 0.0 in fractions else None
    if d1_en is not None and norep and final(norep, "en") is not None:
        after = final(norep, "en")
        verb = "rises" if after > d1_en else "does not rise"
        notes.append(
            f"Forgetting: without replay the D1 (en) loss {verb} from {d1_en:.3f} (end of D1) to {after:.3f} after D2."
        )
    if norep:
        for f in fractions:
            name = f"d2-replay{pct(f)}"
            if f > 0 and final(name, "en") is not None and final(norep, "en") is not None:
                delta = final(name, "en") - final(norep, "en")
                d2 = final(name, "fr") - final(norep, "fr")
                notes.append(f"{pct(f)}% replay: D1 loss {delta:+.3f} vs. no replay, D2 loss {d2:+.3f}.")
    union = json_runs.get("union")
    if union and union["average"] is not None and norep and json_runs[norep]["average"] is not None:
        base = json_runs[norep]["average"]
        gap = base - union["average"]
        for f in fractions:
            run = json_runs.get(f"d2-replay{pct(f)}")
            if f > 0 and run and run["average"] is not None and abs(gap) > 1e-9:
                closed = (base - run["average"]) / gap
                notes.append(
                    f"{pct(f)}% replay closes {100 * closed:.0f}% of the average-loss gap between no replay "
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
    """The continual-pretraining part (``litcpt demo --part cpt``; the arguments are the command's): every scenario of
    :func:`~litcpt.demo.scenarios.build_scenarios` run in order, then the report of them all."""
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
        progress = DemoProgress(scenarios, file=sys.stderr)
        for index, scenario in enumerate(scenarios):
            t0 = time.perf_counter()
            run_scenario(scenario, runs_dir, verbose=verbose, on_step=progress.start(index))
            progress.finish()
            times[scenario.name] = time.perf_counter() - t0
        progress.close()
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
    notes = observations(by_name, replay_fractions)
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
