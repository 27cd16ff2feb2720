"""The few lines a training command prints when it is done (as ``litgpt pretrain`` ends with its training time and
where it saved): steps, tokens, wall time, tokens/s, the final train and validation losses (per source: replay's
``val/loss/<name>``), and where ``final/`` and the logs are."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["summary_lines"]


def _number(value: Any) -> float | None:
    try:
        out = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def summary_lines(*, metrics: Mapping[str, Any], steps: int, start_step: int, tokens_per_step: int | None,
                  seconds: float, final_dir: Path | None, log_dir: str | Path | None) -> list[str]:
    """The summary of a finished run. ``metrics``: the Trainer's ``callback_metrics`` (last values logged);
    ``start_step``: the step this process started at (a resumed run counts its own time and tokens)."""
    done = steps - start_step
    resumed = f" (resumed at step {start_step})" if start_step else ""
    line = f"{steps} optimizer steps{resumed}"
    tokens = _number(metrics.get("train/tokens"))
    if tokens_per_step:
        tokens = steps * tokens_per_step
    if tokens is not None:
        line += f", {_count(tokens)} tokens"
    line += f" in {seconds:.1f} s wall"
    if tokens_per_step and seconds > 0 and done > 0:
        line += f" ({_count(done * tokens_per_step / seconds)} tokens/s)"
    lines = [line]
    losses = []
    train = _number(metrics.get("train/loss"))
    if train is not None:
        losses.append(f"train loss {train:.4f}")
    val = _number(metrics.get("val/loss"))
    if val is not None:
        sources = {k[len("val/loss/"):]: _number(v) for k, v in sorted(metrics.items()) if k.startswith("val/loss/")}
        per_source = ", ".join(f"{k} {v:.4f}" for k, v in sources.items() if v is not None)
        losses.append(f"val loss {val:.4f}" + (f" ({per_source})" if per_source else ""))
    if losses:
        lines.append("final " + "; ".join(losses))
    if final_dir is not None:
        lines.append(f"final checkpoint: {final_dir}")
    if log_dir is not None:
        lines.append(f"logs: {log_dir}")
    return lines
