"""``litcpt merge``: average LitGPT checkpoints of one model into a new LitGPT checkpoint (a model soup).

    litcpt merge out/anneal-seed1/final out/anneal-seed2/final --out_dir out/soup
    litcpt merge out/run-a/final out/run-b/final --weights '[0.75, 0.25]' --out_dir out/soup-75-25
    litcpt merge out/infinite-run --last 4 --out_dir out/pma-4      # PMA: the last 4 step-* checkpoints of a run

Uses: a soup of anneal runs that differ only in their data seed (OLMo 2), or pre-trained model averaging (PMA,
arXiv 2505.12082): the average of the last k checkpoints of a constant-LR phase, as an alternative to annealing.
"""

from __future__ import annotations

import os
from pathlib import Path

from litcpt.averaging.merge import average_checkpoints, check_out_dir, last_checkpoints, normalize_weights
from litcpt.runtime.checkpoint import check_checkpoint_dir, load_config, save_litgpt_dir

cli_positional = "checkpoint_dirs"


def main(checkpoint_dirs: list[Path], out_dir: Path, weights: list[float] | None = None,
         last: int | None = None) -> Path:
    """Average LitGPT checkpoints of the same model (uniformly or weighted) into ``out_dir``.

    Args:
        checkpoint_dirs: LitGPT checkpoint dirs (``lit_model.pth``, ``model_config.yaml``, tokenizer) of one model
            and one tokenizer; with ``last``: run dirs whose ``step-*`` checkpoints are averaged.
        out_dir: the merged LitGPT checkpoint dir (written atomically; ``merge.json`` records sources and weights).
        weights: one non-negative weight per checkpoint (normalized by their sum). Default: uniform.
        last: average the last ``last`` ``step-*`` checkpoint dirs of each run dir given (PMA).

    Returns: ``out_dir``.
    """
    if not checkpoint_dirs:
        raise ValueError("checkpoint_dirs: give the LitGPT checkpoint dirs to average (litcpt merge DIR DIR ... "
                         "--out_dir OUT)")
    if last is not None:
        dirs = [d for run in checkpoint_dirs for d in last_checkpoints(Path(run), int(last))]
    else:
        dirs = [Path(d) for d in checkpoint_dirs]
    weights = normalize_weights(weights, len(dirs))
    for d in dirs:
        check_checkpoint_dir(d, field="checkpoint_dirs")
    out_dir = Path(out_dir)
    check_out_dir(out_dir, dirs)
    state = average_checkpoints(dirs, weights)
    total = sum(weights)
    record = {"sources": [str(d.resolve()) for d in dirs], "weights": [w / total for w in weights]}
    config_yaml = out_dir / "config.yaml"  # written by the CLI (the merge's own arguments): kept in the result
    save_litgpt_dir(state, load_config(dirs[0]), out_dir, tokenizer_dir=dirs[0],
                    extra_files=[config_yaml] if config_yaml.is_file() else [], extra_objects={"merge.json": record})
    if os.environ.get("RANK", "0") == "0":
        shown = ", ".join(f"{w / total:.4g}" for w in weights)
        print(f"litcpt merge: {len(dirs)} checkpoints -> {out_dir} (weights {shown})")
    return out_dir
