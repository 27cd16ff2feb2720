"""``litcpt score``: score prompt/response rows or preference pairs with a reward model.

The run itself is :func:`litcpt.rewardbench.score.score_file`.
"""

from __future__ import annotations

from pathlib import Path

from litcpt.rewardbench.score import score_file

__all__ = ["main"]


def main(
    checkpoint_dir: Path,
    data: Path,
    out_dir: Path | None = None,
    out_file: Path | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    device: str = "cpu",
    encoding: str = "utf-8",
) -> dict:
    """Score a jsonl file with a reward model trained by ``litcpt reward``.

    Rows are either ``{"prompt", "response"}`` (one score each) or preference pairs in any format
    ``litcpt.data.Preference`` reads (``prompt``/``chosen``/``rejected`` or whole HH-RLHF conversations): then both
    responses are scored and the pairwise accuracy (ties count half) is printed.

    Args:
        checkpoint_dir: a reward checkpoint dir (``out/reward/final``).
        data: a ``.jsonl`` / ``.jsonl.gz`` file.
        out_dir: where the scores go: ``<out_dir>/<data name>.scores.jsonl`` (the data's full name without
            ``.jsonl``/``.jsonl.gz``), plus the run's ``config.yaml``; default ``out/score`` (never the data's dir).
        out_file: write the scores to this file instead.
        batch_size: sequences per forward pass.
        max_length: tokens per sequence (default: the model's block size). Rows are truncated as in training
            (the prompt is cut from the left after BOS, both responses of a pair keep the same prompt, a response
            still too long loses its end).
        device: ``cpu`` or ``cuda``.
        encoding: text encoding of ``data`` (``utf-8``, ``latin-1``, ``cp1252``, ...).

    Every output row carries ``index`` (0-based position among the data rows) and ``line`` (its line in ``data``).
    """
    return score_file(
        checkpoint_dir=checkpoint_dir,
        data=data,
        out_dir=out_dir,
        out_file=out_file,
        batch_size=batch_size,
        max_length=max_length,
        device=device,
        encoding=encoding,
    )
