"""The reward-model part of ``litcpt demo``: fine-tune the demo's pretrained tiny model as a reward model on the
bundled Anthropic HH-RLHF pairs and report held-out pairwise accuracy before and after training."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from litcpt.demo.runtime import DEFAULT_TOKENS, QUICK_TOKENS, run_scenario, torch_threads
from litcpt.demo.scenarios import build_scenarios
from litcpt.runtime.atomic import write_json, write_text

__all__ = ["HEADS", "markdown", "run_reward", "train_reward_models", "write"]

HEADS = ("linear", "logit")


def _first_last(run_dir: Path, key: str) -> tuple[float | None, float | None]:
    """(first, last) logged value of ``key`` over a run's logs (all versions, resume-aware)."""
    from litcpt.report.runs import read_rows

    values = [float(r[key]) for r in read_rows(run_dir)[0] if r.get(key) not in (None, "")]
    return (values[0], values[-1]) if values else (None, None)


def train_reward_models(backbone: Path, out_dir: Path, *, steps: int = 120, seed: int = 42, lr: float = 1e-3,
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


def run_reward(
    *, out_dir: Path, steps: int, seed: int, quick: bool, num_threads: int, verbose: bool, **cpt_kwargs: Any
) -> dict[str, Any]:
    """The reward part (``litcpt demo --part reward``; the arguments are the command's): the D1-pretrained tiny model
    (trained first if missing) -> two reward models, reported in ``reward.md`` / ``reward.json``."""
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
        results = train_reward_models(
            backbone,
            out_dir / "runs",
            steps=max(2, steps // 4) if quick else steps,
            seed=seed,
            log_file=None if verbose else out_dir / "runs" / "reward.log",
        )
    write(results, out_dir)
    print(markdown(results))
    print(f"report: {out_dir / 'reward.md'}")
    return results
