"""The reward-model part of ``litcpt demo``: fine-tune the demo's pretrained tiny model as a reward model on the
bundled Anthropic HH-RLHF pairs and report held-out pairwise accuracy before and after training."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from litcpt.runtime.atomic import write_json, write_text

HEADS = ("linear", "logit")


def _first_last(run_dir: Path, key: str) -> tuple[float | None, float | None]:
    """(first, last) logged value of ``key`` over a run's logs (all versions, resume-aware)."""
    from litcpt.report.runs import read_rows

    values = [float(r[key]) for r in read_rows(run_dir)[0] if r.get(key) not in (None, "")]
    return (values[0], values[-1]) if values else (None, None)


def run_reward_part(backbone: Path, out_dir: Path, *, steps: int = 120, seed: int = 42, lr: float = 1e-3,
                    heads: tuple[str, ...] = HEADS, log_file: Path | None = None) -> dict[str, Any]:
    """Train one reward model per head on ``backbone`` (a LitGPT dir) and return held-out accuracies."""
    from litcpt.callbacks import WarmupCosineLR
    from litcpt.data import Preference
    from litcpt.runtime.checkpoint import load_config
    from litcpt.training.args import EvalArgs, TrainArgs
    from litcpt.training.reward import run

    block = load_config(backbone).block_size
    results: dict[str, Any] = {"backbone": str(backbone), "steps": steps, "heads": {}}
    for head in heads:
        run_dir = out_dir / f"reward-{head}"
        t0 = time.perf_counter()
        data = Preference(max_length=block, seed=seed)
        context = contextlib.nullcontext()
        if log_file is not None:
            from litcpt.demo.runtime import quiet_run

            context = quiet_run(log_file)
        with context:
            run(checkpoint_dir=backbone, out_dir=run_dir, precision=None, resume=False, data=data, head=head,
                head_token=None, head_token_id=None, loss_type="bradley_terry", center_coefficient=0.0,
                use_margin=True, share_prompt=False,
                train=TrainArgs(global_batch_size=16, micro_batch_size=8, max_steps=steps, save_interval=None,
                                log_interval=10),
                eval=EvalArgs(interval=steps, max_iters=25, initial_validation=True),
                lr_schedule=WarmupCosineLR(warmup=0.05, min_lr_ratio=0.1),
                optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": lr, "weight_decay": 0.0}},
                devices="auto", num_nodes=1, strategy="auto", logger_name="csv", seed=seed, accelerator="cpu",
                dry_run=False)
        before, after = _first_last(run_dir, "val/accuracy")
        results["heads"][head] = {"val_accuracy_before": before, "val_accuracy_after": after,
                                  "held_out_pairs": len(data.test_dataset or []), "checkpoint": str(run_dir / "final"),
                                  "wall_time_s": round(time.perf_counter() - t0, 1)}
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = ["| head | held-out pairs | accuracy before | accuracy after | time |", "|---|---:|---:|---:|---:|"]
    for head, r in results["heads"].items():
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
        lines.append(f"| {head} | {r['held_out_pairs']} | {fmt(r['val_accuracy_before'])} | "
                     f"{fmt(r['val_accuracy_after'])} | {r['wall_time_s']:.0f} s |")
    return "\n".join(lines)


def write(results: dict[str, Any], out_dir: Path) -> None:
    write_json(out_dir / "reward.json", results)
    text = ["# litcpt demo: reward model", "",
            f"Backbone `{results['backbone']}` fine-tuned for {results['steps']} optimizer steps (16 pairs each) on "
            "the bundled Anthropic HH-RLHF harmless-base pairs (90/10 split); accuracy = share of held-out pairs "
            "with r(chosen) > r(rejected), ties half.", "", markdown(results), ""]
    write_text(out_dir / "reward.md", "\n".join(text))
