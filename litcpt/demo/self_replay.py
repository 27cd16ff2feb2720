"""The ``self-replay`` part of ``litcpt demo`` (``--part self-replay``): continual pretraining when D1 is gone, with
replay sampled from the D1 model itself (``litcpt generate-replay``), against true D1 replay, at toy scale.

D1 = English, D2 = French, the quick model of the demo (2 layers, d=64, 64-token blocks) so that 3 seeds fit in
minutes. One D1 pretraining, then for each seed: ``litcpt generate-replay`` from the D1 model at temperature 1.0
(and 0.7, the ablation), each corpus as large as the largest replay share needs; and D2 continuations with (i) no
replay, (ii) self-generated replay at each share, (iii) true D1 replay at each share, (iv) self-generated replay at the
largest share sampled at temperature 0.7. Every final model is evaluated on the same held-out blocks of en and fr
(:func:`litcpt.demo.beyond.evaluate_checkpoint`). The gap closed by self-replay at share ``r`` is
``(en loss without replay - en loss with self-replay) / (en loss without replay - en loss with true replay)``, per
seed. Output: ``self-replay.md`` / ``self-replay.json`` in ``out_dir``, runs in ``out_dir/runs-self-replay``.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from litcpt.demo.runtime import (
    QUICK_MODEL,
    Scenario,
    lr_schedule_spec,
    mix_data,
    run_scenario,
    runs_dir_of,
    text_data,
    torch_threads,
)
from litcpt.demo.scenarios import BATCH, pct, scenario_recipe
from litcpt.runtime.atomic import write_json, write_text

__all__ = ["ABLATION_TEMPERATURE", "SEEDS", "run_self_replay"]

SEEDS = 3
ABLATION_TEMPERATURE = 0.7
D1_TOKENS = 131_072
"""D1 pretraining tokens of this part (128 steps of 16 x 64): a D1 model good enough to sample English-like text."""
D2_TOKENS = 65_536


def _self_data(corpus: Path, fraction: float, seed: int, cache_dir: Path | None) -> dict[str, Any]:
    replay = {"class_path": "litcpt.data.TextFiles",
              "init_args": {"train_data_path": str(corpus), "name": "self", "val_split_fraction": 0.05}}
    if cache_dir is not None:
        replay["init_args"]["cache_dir"] = str(cache_dir)
    return {"class_path": "litcpt.data.Replay",
            "init_args": {"new": text_data("fr", cache_dir), "replay": replay, "fraction": float(fraction),
                          "seed": seed}}


def _recipe(steps: int, data: dict, *, fresh: bool, seed: int, lr: float) -> dict[str, Any]:
    """A demo run's recipe, validated once at the end (the finals are evaluated on en and fr separately)."""
    recipe = scenario_recipe(steps, data, lr_schedule_spec("WarmupCosineLR", warmup=0.01, min_lr_ratio=0.1),
                             fresh=fresh, model=QUICK_MODEL, interval=steps, seed=seed, lr=lr)
    recipe["eval"].update(initial_validation=False, max_iters=1)
    return recipe


def _generate(d1: Path, out: Path, *, tokens: int, temperature: float, seed: int) -> dict[str, Any]:
    """``litcpt generate-replay`` from the D1 model (BOS-only prompts, 16-63 new tokens per sample)."""
    import contextlib
    import io

    from litcpt.generation.run import run

    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        return run(checkpoint_dir=d1, out_dir=out, max_tokens=tokens, prompts=None, temperature=temperature,
                   top_k=None, top_p=1.0, min_new_tokens=16, max_new_tokens=None, batch_size=64, shard_tokens=tokens,
                   seed=seed, repetition_ngram=4, repetition_threshold=0.5, devices=1, num_nodes=1,
                   accelerator="cpu", precision="32-true")


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _rows(results: list[dict[str, Any]], fractions: list[float]) -> list[dict[str, Any]]:
    """Mean and spread over seeds per row, and the gap closed relative to true replay at the same share."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault(r["row"], []).append(r)
    none = {r["seed"]: r["en"] for r in by["none"]}
    rows = []
    for name, runs in by.items():
        row: dict[str, Any] = {"row": name, "label": runs[0]["label"], "seeds": len(runs)}
        for key in ("en", "fr"):
            row[key], row[f"{key}_sd"] = _mean_sd([r[key] for r in runs])
        if runs[0].get("true_row"):
            true = {r["seed"]: r["en"] for r in by[runs[0]["true_row"]]}
            closed = [(none[r["seed"]] - r["en"]) / (none[r["seed"]] - true[r["seed"]]) for r in runs
                      if abs(none[r["seed"]] - true[r["seed"]]) > 1e-9]
            if closed:
                row["gap_closed"], row["gap_closed_sd"] = _mean_sd(closed)
        gen = [r["generation"] for r in runs if r.get("generation")]
        if gen:
            row["gen_tokens"] = gen[0]["tokens"]
            row["gen_seconds"] = statistics.fmean(g["seconds"] for g in gen)
            row["gen_dropped"] = gen[0]["dropped"]
        rows.append(row)
    return rows


def _markdown(summary: dict[str, Any]) -> str:
    lines = [f"Command: `{summary['command']}`; wall time {summary['wall_time_s'] / 60:.1f} min; "
             f"{summary['seeds']} seeds (mean ± sd); D1 model: en {summary['d1']['en']:.3f}, fr "
             f"{summary['d1']['fr']:.3f}.", "",
             "| D2 continuation | D1 (en) loss | D2 (fr) loss | forgetting gap closed vs. true replay | "
             "generated tokens (s) |", "|---|---:|---:|---:|---:|"]
    for r in summary["rows"]:
        gap = (f"{100 * r['gap_closed']:.0f}% ± {100 * r['gap_closed_sd']:.0f}%" if "gap_closed" in r else "")
        gen = f"{r['gen_tokens']:,} ({r['gen_seconds']:.1f} s)" if "gen_tokens" in r else ""
        lines.append(f"| {r['label']} | {r['en']:.3f} ± {r['en_sd']:.3f} | {r['fr']:.3f} ± {r['fr_sd']:.3f} | {gap} "
                     f"| {gen} |")
    return "\n".join(lines) + "\n"


def run_self_replay(*, out_dir: Path, d1_tokens: int | None, d2_tokens: int | None, replay_fractions: list[float],
                    lr: float, seed: int, num_threads: int, cache_dir: Path | None, verbose: bool,
                    **_: Any) -> dict[str, Any]:
    """Run the part (the arguments are ``litcpt demo``'s; ``quick`` does not apply: this part always uses the quick
    model) and write ``self-replay.md`` / ``self-replay.json``."""
    # Long on purpose: the part's whole experiment in order (D1, then per seed: generation, the D2 rows, evaluation).
    from litcpt.demo.beyond import evaluate_checkpoint

    fractions = sorted({float(f) for f in replay_fractions if f > 0})
    if not fractions:
        raise ValueError(f"replay_fractions: the self-replay part needs a share > 0, got {replay_fractions}")
    d1_tokens, d2_tokens = d1_tokens or D1_TOKENS, d2_tokens or D2_TOKENS
    tps = BATCH * QUICK_MODEL["block_size"]
    steps1, steps2 = d1_tokens // tps, d2_tokens // tps
    if steps1 < 4 or steps2 < 4:
        raise ValueError(f"d1_tokens/d2_tokens: need at least 4 optimizer steps of {tps} tokens each")
    # the largest share's blocks, after the corpus's 5% held out, plus a block of slack
    corpus_tokens = math.ceil((math.ceil(max(fractions) * steps2 * BATCH) + 2) * QUICK_MODEL["block_size"] / 0.95)
    out_dir, runs_dir = runs_dir_of(out_dir, "runs-self-replay")
    seq = QUICK_MODEL["block_size"]
    start = time.perf_counter()
    results: list[dict[str, Any]] = []

    def say(text: str) -> None:
        print(f"litcpt demo (self-replay): {text}", file=sys.stderr)

    with torch_threads(num_threads):
        say("D1 pretraining ...")
        run_scenario(Scenario("d1", "D1", _recipe(steps1, mix_data("en", "fr", 0.0, seed, cache_dir), fresh=True,
                                                  seed=seed, lr=lr)), runs_dir, verbose=verbose)
        d1 = runs_dir / "d1" / "final"
        d1_loss = evaluate_checkpoint(d1, seed=seed, cache_dir=cache_dir, seq_length=seq)
        for s in range(seed, seed + SEEDS):
            corpora = {}
            for temperature in (1.0, ABLATION_TEMPERATURE):
                say(f"seed {s}: generate-replay at temperature {temperature:g} ({corpus_tokens:,} tokens) ...")
                path = runs_dir / f"self-s{s}-t{temperature:g}"
                corpora[temperature] = (path, _generate(d1, path, tokens=corpus_tokens, temperature=temperature,
                                                        seed=s))
            rows = [("none", "no replay", mix_data("fr", "en", 0.0, s, cache_dir), None, None)]
            for f in fractions:
                rows.append((f"self{pct(f)}", f"self-generated replay {pct(f)}% (T=1.0)",
                             _self_data(corpora[1.0][0], f, s, cache_dir), corpora[1.0][1], f"true{pct(f)}"))
                rows.append((f"true{pct(f)}", f"true D1 replay {pct(f)}%", mix_data("fr", "en", f, s, cache_dir),
                             None, None))
            top = max(fractions)
            rows.append((f"self{pct(top)}-t{ABLATION_TEMPERATURE:g}",
                         f"self-generated replay {pct(top)}% (T={ABLATION_TEMPERATURE:g})",
                         _self_data(corpora[ABLATION_TEMPERATURE][0], top, s, cache_dir),
                         corpora[ABLATION_TEMPERATURE][1], f"true{pct(top)}"))
            for name, label, data, generation, true_row in rows:
                say(f"seed {s}: D2 {label} ...")
                run = f"{name}-s{s}"
                run_scenario(Scenario(run, label, _recipe(steps2, data, fresh=False, seed=s, lr=lr), parent="d1"),
                             runs_dir, verbose=verbose)
                losses = evaluate_checkpoint(runs_dir / run / "final", seed=seed, cache_dir=cache_dir,
                                             seq_length=seq)
                results.append({"row": name, "label": label, "seed": s, **losses, "true_row": true_row,
                                "generation": None if generation is None else
                                {"tokens": generation["tokens"], "seconds": generation["seconds"],
                                 "dropped": generation["dropped"]}})
    wall = time.perf_counter() - start
    command = f"litcpt demo --part self-replay --out_dir {out_dir}"
    summary = {"command": command, "wall_time_s": round(wall, 1), "seeds": SEEDS, "d1": d1_loss,
               "d1_tokens": steps1 * tps, "d2_tokens": steps2 * tps, "fractions": fractions,
               "rows": _rows(results, fractions), "runs": results}
    write_json(out_dir / "self-replay.json", summary)
    md = _markdown(summary)
    write_text(out_dir / "self-replay.md", md)
    print(md)
    return summary
