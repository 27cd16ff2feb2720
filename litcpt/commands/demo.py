"""``litcpt demo``: the paper's continual-pretraining experiment in miniature, offline, on a few CPU cores.

Ibrahim et al. (2024, arXiv 2403.08763) at toy scale, with the bundled corpora: D1 = English, D2 = French (a strong
distribution shift). The runs (:mod:`litcpt.demo.scenarios`) are ordinary ``litcpt pretrain`` runs in this process
(:func:`litcpt.training.pretrain.run`), each with its ``config.yaml``; the parts: :mod:`litcpt.demo` (``cpt``,
``reward``, ``beyond``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litcpt.demo.run import Part, run_demo

__all__ = ["main"]


def main(
    out_dir: Path = Path("out/demo"),
    d1_tokens: int | None = None,
    d2_tokens: int | None = None,
    replay_fractions: list[float] = [0.0, 0.05, 0.25],  # noqa: B006 - shown as the CLI default
    infinite: bool = True,
    infinite_replay: float = 0.05,
    anneal_fraction: float = 0.2,
    lr: float = 3e-3,
    seed: int = 42,
    quick: bool = False,
    num_threads: int = 1,
    cache_dir: Path | None = None,
    verbose: bool = False,
    part: Part = "cpt",
    reward_steps: int = 120,
) -> dict[str, Any]:
    """Run the paper's continual-pretraining comparison at toy scale on CPU and write a report.

    Args:
        out_dir: output dir: ``runs/<scenario>/``, ``report.md``, ``report.json``, ``val_loss.png``, ``lr.png``.
        d1_tokens: training tokens of the D1 (English) pretraining (default 262144 = 128 steps; 65536 with quick).
        d2_tokens: training tokens of each D2 (French) continuation, replay included (compute-equivalent);
            default as d1_tokens.
        replay_fractions: D1 replay shares of the D2 continuations (one run each; 0 = no replay).
        infinite: also run the infinite-schedule chain (D1 cooldown -> constant, D2 constant, anneal).
        infinite_replay: replay share of the infinite chain's D2 stages.
        anneal_fraction: share of ``d2_tokens`` spent in the infinite chain's final anneal.
        lr: peak learning rate (AdamW, betas 0.9/0.95, weight decay 0.1); the minimum is 0.1 x peak.
        seed: seed of model init and data order.
        quick: a smaller model (2 layers, d=64, 64-token blocks) and 64K-token stages, for tests (~1 min).
        num_threads: torch CPU threads (1 is fastest on a busy 2-core machine).
        cache_dir: token cache dir (default: ``$LITCPT_CACHE_DIR/tokens`` or ``~/.cache/litcpt/tokens``).
        verbose: show Lightning's per-run output instead of writing it to ``runs/<scenario>/train.log``.
        part: ``cpt`` (the continual-pretraining comparison), ``reward`` (fine-tune the D1-pretrained tiny model
            as a reward model on the bundled HH-RLHF pairs, both heads, and report held-out accuracy; runs only the
            D1 pretraining first if ``runs/d1/final`` is missing), ``all`` (both), or ``beyond`` (opt-in: EMA,
            checkpoint
            averaging vs. anneal, D2Z vs. cosine, optimizer state carried at the D1 -> D2 boundary; see
            :mod:`litcpt.demo.beyond`).
        reward_steps: optimizer steps (16 pairs each) of each reward model in the reward part.

    Returns: the JSON summary of ``report.json`` plus ``wall_time_s``.
    """
    return run_demo(
        part=part,
        out_dir=out_dir,
        d1_tokens=d1_tokens,
        d2_tokens=d2_tokens,
        replay_fractions=replay_fractions,
        infinite=infinite,
        infinite_replay=infinite_replay,
        anneal_fraction=anneal_fraction,
        lr=lr,
        seed=seed,
        quick=quick,
        num_threads=num_threads,
        cache_dir=cache_dir,
        verbose=verbose,
        reward_steps=reward_steps,
    )
