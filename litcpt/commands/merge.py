"""``litcpt merge``: average LitGPT checkpoints of one model into a new LitGPT checkpoint (a model soup).

    litcpt merge out/anneal-seed1/final out/anneal-seed2/final --out_dir out/soup
    litcpt merge out/run-a/final out/run-b/final --weights '[0.75, 0.25]' --out_dir out/soup-75-25
    litcpt merge out/infinite-run --last 4 --out_dir out/pma-4      # PMA: the last 4 step-* checkpoints of a run

Uses: a soup of anneal runs that differ only in their data seed (OLMo 2), or pre-trained model averaging (PMA,
arXiv 2505.12082): the average of the last k checkpoints of a constant-LR phase, as an alternative to annealing.
"""

from __future__ import annotations

from pathlib import Path

from litcpt.averaging.merge import merge_checkpoints

__all__ = ["main", "cli_positional"]

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
    return merge_checkpoints(checkpoint_dirs=checkpoint_dirs, out_dir=out_dir, weights=weights, last=last)
