"""Training throughput: `litcpt pretrain` vs `litgpt pretrain` on the same tiny model, data, batch and length.

Runs the two commands alternately (``--rounds`` times each) as subprocesses on CPU and compares steady-state
tokens/s, measured from each run's own logs between its ``--skip``-th and last optimizer step (so start-up and
litgpt's ``torch.compile`` warm-up are excluded). Prints per-round numbers and the ratio litcpt / litgpt.

    python benchmarks/train_throughput.py --steps 60 --rounds 2
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MICRO, GLOBAL = 8, 16


def tiny_model() -> dict:
    return yaml.safe_load((REPO / "recipes/tiny/pretrain.yaml").read_text())["model_config"]


def _rows(out: Path) -> list[dict]:
    rows = []
    for path in sorted(out.rglob("metrics.csv")):
        with open(path, newline="") as fp:
            rows += list(csv.DictReader(fp))
    return rows


def run_litcpt(out: Path, steps: int, seq: int, skip: int, *extra: str) -> float:
    cmd = [sys.executable, "-m", "litcpt", "pretrain", "--config", str(REPO / "recipes/tiny/pretrain.yaml"),
           "--out_dir", str(out), "--train.max_steps", str(steps), "--train.max_tokens", "null",
           "--train.log_interval", "1", "--train.save_interval", "100000", "--eval.interval", "100000",
           "--eval.final_validation", "false", "--data.init_args.train_data_path",
           str(REPO / "litcpt/assets/data/pretrain/en"), "--train.micro_batch_size", str(MICRO),
           "--train.global_batch_size", str(GLOBAL), *extra]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    # ThroughputMonitor logs cumulative train/time and train/lengths (tokens) at every optimizer step.
    points = [(float(r["train/time"]), float(r["train/lengths"])) for r in _rows(out) if r.get("train/time")]
    (t0, n0), (t1, n1) = points[skip - 1], points[-1]
    return (n1 - n0) / (t1 - t0)


def run_litgpt(out: Path, steps: int, seq: int, skip: int) -> float:
    config = {
        "model_name": "litcpt-tiny",
        "model_config": tiny_model(),
        "out_dir": str(out),
        "precision": "32-true",
        "devices": 1,
        "tokenizer_dir": str(REPO / "litcpt/assets/tokenizer"),
        "logger_name": "csv",
        "data": {
            "class_path": "litcpt.data.TextFiles",
            "init_args": {"train_data_path": str(REPO / "litcpt/assets/data/pretrain/en")},
        },
        "train": {
            "global_batch_size": GLOBAL,
            "micro_batch_size": MICRO,
            "max_tokens": steps * GLOBAL * seq,
            "log_interval": 1,
            "save_interval": None,
            "lr_warmup_steps": 1,
            "max_norm": 1.0,
        },
        "eval": {"interval": 100000, "max_iters": 1, "final_validation": False},
        "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.003, "weight_decay": 0.1}},
    }
    cfg = out.parent / f"{out.name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(yaml.safe_dump(config))
    subprocess.run(
        [sys.executable, "-m", "litgpt", "pretrain", "--config", str(cfg)],
        check=True,
        capture_output=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    # litgpt logs cumulative time (its ThroughputMonitor) and `tokens` per rank at every log_interval.
    points = [(float(r["time"]), float(r["tokens"])) for r in _rows(out) if r.get("time") and r.get("tokens")]
    points = points[:: GLOBAL // MICRO]  # one row per micro-batch iteration; keep optimizer-step boundaries
    (t0, n0), (t1, n1) = points[skip - 1], points[-1]
    return (n1 - n0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", type=int, default=10, help="optimizer steps excluded as warm-up")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    seq = tiny_model()["block_size"]
    results = {"litcpt": [], "litgpt": [], "litcpt+compile": []}
    runners = (
        ("litgpt", run_litgpt),
        ("litcpt", run_litcpt),
        ("litcpt+compile", lambda *a: run_litcpt(*a, "--train.compile", "true")),
    )
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, fn in runners:
                tps = fn(Path(tmp) / f"{name}-{r}", args.steps, seq, args.skip)
                results[name].append(tps)
                print(f"round {r} {name:15s} {tps:10.0f} tokens/s", flush=True)
    b = statistics.median(results["litgpt"])
    for name in ("litcpt", "litcpt+compile"):
        a = statistics.median(results[name])
        print(f"median {name} {a:.0f} tokens/s | litgpt {b:.0f} tokens/s | ratio {name}/litgpt = {a / b:.3f}")


if __name__ == "__main__":
    main()
