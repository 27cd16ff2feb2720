"""The ``beyond`` part of ``litcpt demo`` (opt-in: ``--part beyond``): what came after the paper, at toy scale.

Rows (D1 = English, D2 = French, the tiny model of the demo, every final model evaluated the same way on the same
held-out blocks of both sources):

1. ``const``: D1 at a constant LR (warmup 1 %) with an EMA of the weights; from it
   * its raw final weights, its EMA (``final-ema/``), and the PMA average of its last 4 periodic checkpoints
     (``litcpt.averaging.merge``, as ``litcpt merge --last 4``);
   * ``const-anneal``: a branch that carries weights, optimizer and data position (``carry.*``) and decays the LR
     linearly to 0 over 20 % more tokens (an anneal; the OLMo 2 recipe).
2. ``d1-cosine`` vs ``d1-d2z``: D1 with the paper's cosine to 0.1 x peak vs. linear decay to zero (D2Z).
3. ``d2-fresh`` vs ``d2-carried``: D2 continued from ``d1-cosine`` (re-warmed cosine, 5 % replay) with a fresh
   optimizer (the paper) vs. the D1 run's AdamW state carried over the boundary (``carry.optimizer``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from litcpt.demo.runtime import (
    DEFAULT_TOKENS,
    QUICK_MODEL,
    QUICK_TOKENS,
    TINY_MODEL,
    DemoProgress,
    Scenario,
    lr_schedule_spec,
    mix_data,
    run_scenario,
    runs_dir_of,
    torch_threads,
)
from litcpt.runtime.atomic import write_json, write_text

__all__ = ["run_beyond", "evaluate_checkpoint", "build_beyond"]

PMA_K = 4
EMA_DECAY = 0.98
ANNEAL_FRACTION = 0.2


def build_beyond(*, d1_tokens: int, d2_tokens: int, lr: float, seed: int, quick: bool, cache_dir: Path | None
                 ) -> tuple[list[Scenario], int, int]:
    """The runs of the part (parents first), tokens per step and the periodic-checkpoint interval (steps)."""
    model = QUICK_MODEL if quick else TINY_MODEL
    batch = 16
    tps = batch * model["block_size"]
    steps1, steps2 = d1_tokens // tps, d2_tokens // tps
    interval = max(1, steps1 // 8)
    if steps1 < 2 * PMA_K or steps2 < 4:
        raise ValueError(f"d1_tokens={d1_tokens}, d2_tokens={d2_tokens}: the beyond part needs at least "
                         f"{2 * PMA_K} optimizer steps of {tps} tokens on D1 and 4 on D2")
    anneal_steps = max(2, round(steps1 * ANNEAL_FRACTION))

    def recipe(steps: int, data: dict, schedule: dict, *, fresh: bool, **extra: Any) -> dict[str, Any]:
        r: dict[str, Any] = {
            "precision": "32-true", "accelerator": "cpu", "devices": 1, "data": data,
            "train": {"global_batch_size": batch, "micro_batch_size": batch, "max_tokens": steps * tps,
                      "max_seq_length": model["block_size"], "log_interval": 1, "save_interval": interval,
                      "max_norm": 1.0},
            "eval": {"interval": max(1, steps // 8), "max_iters": 4, "initial_validation": False,
                     "final_validation": True},
            "lr_schedule": schedule,
            "optimizer": {"class_path": "torch.optim.AdamW",
                          "init_args": {"lr": lr, "weight_decay": 0.1, "betas": [0.9, 0.95]}},
            "seed": seed, "logger_name": "csv", **extra,
        }
        if fresh:
            r["model_config"] = dict(model)
        return r

    d1 = mix_data("en", "fr", 0.0, seed, cache_dir)
    d2 = mix_data("fr", "en", 0.05, seed, cache_dir)
    cosine = lr_schedule_spec("WarmupCosineLR", warmup=0.01, min_lr_ratio=0.1)
    ema = [{"class_path": "litcpt.callbacks.EMA", "init_args": {"decay": EMA_DECAY}}]
    runs = [
        Scenario("const", "D1 constant LR", recipe(steps1, d1, lr_schedule_spec("ConstantLR", warmup=0.01), fresh=True,
                                                    callbacks=ema)),
        Scenario("const-anneal", f"D1 constant → anneal (+{100 * ANNEAL_FRACTION:g}% tokens, linear to 0)",
                 recipe(anneal_steps, d1, lr_schedule_spec("LinearDecayLR", warmup=0.0, min_lr=0.0), fresh=False,
                        carry={"optimizer": True, "data": True}), parent="const"),
        Scenario("d1-cosine", "D1 cosine to 0.1 × peak", recipe(steps1, d1, cosine, fresh=True)),
        Scenario("d1-d2z", "D1 linear decay to 0 (D2Z)",
                 recipe(steps1, d1, lr_schedule_spec("LinearDecayLR", warmup=0.01, min_lr=0.0), fresh=True)),
        Scenario("d2-fresh", "D1 → D2, 5% replay, fresh AdamW", recipe(steps2, d2, cosine, fresh=False),
                 parent="d1-cosine"),
        Scenario("d2-carried", "D1 → D2, 5% replay, AdamW state carried",
                 recipe(steps2, d2, cosine, fresh=False, carry={"optimizer": True}), parent="d1-cosine"),
    ]
    return runs, tps, interval


@torch.no_grad()
def evaluate_checkpoint(checkpoint_dir: Path, *, seed: int, cache_dir: Path | None, seq_length: int,
                        batches: int = 8, batch_size: int = 16) -> dict[str, float]:
    """Mean next-token loss of a LitGPT checkpoint on the first ``batches`` held-out batches of en and fr."""
    from litgpt.utils import chunked_cross_entropy

    from litcpt.demo.runtime import instantiate
    from litcpt.models.base import build_gpt
    from litcpt.models.lm import split_block
    from litcpt.runtime.checkpoint import load_config

    config = load_config(checkpoint_dir)
    model = build_gpt(config, checkpoint_dir=checkpoint_dir).eval()
    model.max_seq_length = seq_length
    data = instantiate(mix_data("en", "fr", 0.0, seed, cache_dir))
    data.connect(tokenizer=checkpoint_dir, batch_size=batch_size, max_seq_length=seq_length)
    data.prepare_data()
    data.setup()
    out = {}
    for name, loader in zip(data.val_names, data.val_dataloaders()):
        total, count = 0.0, 0
        for i, batch in enumerate(loader):
            if i >= batches:
                break
            inputs, targets = split_block(batch, seq_length)
            total += float(chunked_cross_entropy(model(inputs), targets)) * batch.shape[0]
            count += batch.shape[0]
        out[name] = total / count
    return out


def _merge_last(run_dir: Path, k: int, out: Path) -> Path:
    from litcpt.averaging.merge import average_checkpoints, last_checkpoints
    from litcpt.runtime.checkpoint import load_config, save_litgpt_dir

    dirs = last_checkpoints(run_dir, k)
    state = average_checkpoints(dirs)
    return save_litgpt_dir(state, load_config(dirs[0]), out, tokenizer_dir=dirs[0],
                           extra_objects={"merge.json": {"sources": [str(d) for d in dirs], "weights": [1 / k] * k}})


def run_beyond(*, out_dir: Path, d1_tokens: int | None, d2_tokens: int | None, lr: float, seed: int, quick: bool,
               num_threads: int, cache_dir: Path | None, verbose: bool, **_: Any) -> dict[str, Any]:
    """Run the part into ``out_dir/runs-beyond`` and write ``beyond.md`` / ``beyond.json`` / ``beyond.png``."""
    default_tokens = QUICK_TOKENS if quick else DEFAULT_TOKENS
    d1_tokens = default_tokens if d1_tokens is None else d1_tokens
    d2_tokens = default_tokens if d2_tokens is None else d2_tokens
    scenarios, tps, interval = build_beyond(d1_tokens=d1_tokens, d2_tokens=d2_tokens, lr=lr, seed=seed, quick=quick,
                                            cache_dir=cache_dir)
    seq = (QUICK_MODEL if quick else TINY_MODEL)["block_size"]
    out_dir, runs_dir = runs_dir_of(out_dir, "runs-beyond")
    start = time.perf_counter()
    times: dict[str, float] = {}
    with torch_threads(num_threads):
        progress = DemoProgress(scenarios, file=sys.stderr, desc="litcpt demo (beyond)")
        for index, scenario in enumerate(scenarios):
            t0 = time.perf_counter()
            run_scenario(scenario, runs_dir, verbose=verbose, on_step=progress.start(index))
            progress.finish()
            times[scenario.name] = time.perf_counter() - t0
        progress.close()
        _merge_last(runs_dir / "const", PMA_K, runs_dir / "const-pma" / "final")
        steps = {s.name: int(s.recipe["train"]["max_tokens"]) // tps for s in scenarios}
        rows = [
            ("const", "final", "D1 constant LR: raw weights", steps["const"]),
            ("const", "final-ema", f"D1 constant LR: EMA (decay {EMA_DECAY})", steps["const"]),
            ("const-pma", "final", f"D1 constant LR: average of the last {PMA_K} checkpoints (PMA, every "
                                   f"{interval} steps)", steps["const"]),
            ("const-anneal", "final", f"D1 constant LR → anneal (+{steps['const-anneal']} steps, linear to 0)",
             steps["const"] + steps["const-anneal"]),
            ("d1-cosine", "final", "D1 cosine to 0.1 × peak", steps["d1-cosine"]),
            ("d1-d2z", "final", "D1 linear decay to 0 (D2Z)", steps["d1-d2z"]),
            ("d2-fresh", "final", "D1 → D2 (5% replay): fresh AdamW at the boundary",
             steps["d1-cosine"] + steps["d2-fresh"]),
            ("d2-carried", "final", "D1 → D2 (5% replay): AdamW state carried",
             steps["d1-cosine"] + steps["d2-carried"]),
        ]
        results = []
        for run, ckpt, label, n_steps in rows:
            losses = evaluate_checkpoint(runs_dir / run / ckpt, seed=seed, cache_dir=cache_dir, seq_length=seq)
            results.append({"run": run, "checkpoint": ckpt, "label": label, "tokens": n_steps * tps, **losses,
                            "average": (losses["en"] + losses["fr"]) / 2})
    wall = time.perf_counter() - start
    command = f"litcpt demo --part beyond --out_dir {out_dir}" + (" --quick true" if quick else "")
    summary = {"command": command, "wall_time_s": round(wall, 1), "rows": results,
               "run_times_s": {k: round(v, 1) for k, v in times.items()}, "tokens_per_step": tps, "lr": lr}
    write_json(out_dir / "beyond.json", summary)
    md = markdown(summary)
    write_text(out_dir / "beyond.md", md)
    _plot(runs_dir, out_dir / "beyond.png")
    print(md)
    return summary


def markdown(summary: dict[str, Any]) -> str:
    lines = [f"Command: `{summary['command']}`; wall time {summary['wall_time_s'] / 60:.1f} min.", "",
             "| model | tokens | D1 (en) loss | D2 (fr) loss | average |", "|---|---:|---:|---:|---:|"]
    for r in summary["rows"]:
        lines.append(f"| {r['label']} | {r['tokens'] / 1e3:.0f}K | {r['en']:.3f} | {r['fr']:.3f} | "
                     f"{r['average']:.3f} |")
    return "\n".join(lines) + "\n"


def _plot(runs_dir: Path, path: Path) -> None:
    """LR and D1 validation loss of the D1 runs (constant, cosine, D2Z) over steps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return
    from litcpt.report.plotting import save_figure
    from litcpt.report.runs import read_rows

    fig, (ax_lr, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in ("const", "d1-cosine", "d1-d2z"):
        rows, _ = read_rows(runs_dir / name)
        lr = [(int(r["step"]), float(r["lr"])) for r in rows if r.get("lr") not in (None, "")]
        val = [(int(r["step"]), float(r["val/loss/en"])) for r in rows if r.get("val/loss/en") not in (None, "")]
        if lr:
            ax_lr.plot(*zip(*lr), label=name)
        if val:
            ax_loss.plot(*zip(*val), marker="o", label=name)
    ax_lr.set(xlabel="step", ylabel="LR", title="LR schedules")
    ax_loss.set(xlabel="step", ylabel="val loss D1 (en)", title="D1 validation loss")
    for ax in (ax_lr, ax_loss):
        ax.legend()
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)
