"""``litcpt rewardbench``: RewardBench-style accuracy of a reward model or a DPO policy (the signature is the CLI).

The run itself is :func:`litcpt.rewardbench.run.evaluate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from litcpt.rewardbench.run import ConventionName, Kind, RefFreeType, evaluate
from litcpt.runtime.strategies import StrategyName

__all__ = ["main"]


def main(
    checkpoint_dir: Path,
    data: str | Path,
    kind: Kind = "auto",
    ref_checkpoint_dir: Path | None = None,
    beta: float | None = None,
    ref_free: bool = False,
    average_logps: bool | None = None,
    split: str | None = None,
    prompt_style: str | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    truncation: Literal["left", "keep_end"] = "left",
    limit: int | None = None,
    share_prompt: bool = True,
    share_group: int = 16,
    out_dir: Path = Path("out/rewardbench"),
    plot: bool = False,
    devices: int = 1,
    num_nodes: int = 1,
    accelerator: str = "auto",
    strategy: StrategyName = "auto",
    precision: str | None = None,
    convention: ConventionName = "litcpt",
    ref_free_type: RefFreeType | None = None,
    max_prompt_length: int | None = None,
    version: Literal[1, 2] = 1,
) -> dict[str, Any]:
    """RewardBench-style evaluation of a reward model or a DPO policy: accuracy per subset, section scores, Score.

    Args:
        checkpoint_dir: a ``litcpt reward`` checkpoint (classifier), a ``litcpt dpo`` checkpoint (``dpo.json`` names
            its reference and β) or any LitGPT checkpoint scored as a DPO policy (give ``ref_checkpoint_dir`` or
            ``ref_free``), e.g. a hub model converted with ``litgpt download``.
        data: RewardBench rows ``prompt``/``chosen``/``rejected``/``subset``/``id`` (or any format
            ``litcpt.data.Preference`` reads) as ``.jsonl``/``.json``/``.parquet``, a ``save_to_disk`` dir or a hub
            dataset name (``allenai/reward-bench`` uses split ``filtered``). Rows without ``subset`` form one subset
            named after the data.
        kind: ``auto`` (from the checkpoint's files), ``reward`` or ``dpo``.
        ref_checkpoint_dir: DPO reference (default: the one in ``dpo.json``). Must share the policy's tokenizer.
        beta: β of the implicit reward (default: ``dpo.json``'s, else 0.1); scales rewards, never accuracies.
        ref_free: DPO without reference: reward ``β · log π(y|x)``.
        average_logps: length-average the response log-probs instead of summing them (default: ``dpo.json``'s,
            else false; RewardBench's ``avg`` vs ``sum``).
        split: dataset split for hub names and dataset dicts.
        prompt_style: ``raw`` / null (prompts verbatim), ``hh``, ``auto`` (the checkpoint's litgpt prompt style) or a
            litgpt prompt-style name.
        batch_size: pairs per forward pass (``2 x batch_size`` sequences); with ``share_prompt``, rows per forward in
            each of its two phases (prompts, then responses).
        max_length: tokens per sequence (default: the model's block size); longer sequences are truncated.
        truncation: ``left`` (drop the start of the prompt first) or ``keep_end``.
        limit: score only the first ``limit`` pairs (quick checks).
        share_prompt: compute each pair's prompt once and score chosen and rejected from its keys and values (same
            scores up to float rounding; models it cannot run, e.g. sliding-window attention, use plain forwards).
        share_group: with ``share_prompt``: batches whose prompts and responses are sorted and run together (less
            padding); their prompts' keys and values are held in memory at once.
        out_dir: where ``results.json``, ``scores.jsonl`` and ``accuracy.png`` go.
        plot: write ``accuracy.png``, a bar chart of per-subset accuracy.
        devices: processes per node; pairs are sharded over them and every pair is counted once.
        num_nodes: number of nodes.
        accelerator: ``auto``, ``cpu`` or ``gpu``.
        strategy: with several devices: ``auto``/``ddp`` (a full model copy per rank), ``fsdp`` or ``fsdp2`` (the
            models sharded over the ranks, for models that do not fit one device; prompt sharing is off there).
        precision: ``32-true``, ``bf16-mixed``, ``bf16-true``, ``16-mixed``, ``16-true`` (default: bf16-mixed on GPU).
        convention: ``litcpt`` (sequences and rewards as litcpt trains them) or ``rewardbench`` (the official code's
            tokenisation, truncation and rewards: joint prompt+response encoding with the boundary-merge rule, BOS
            always for DPO, log-probs summed with a reference and no β; see ``litcpt.rewardbench.conventions``).
        ref_free_type: reference-free DPO reduction ``sum``, ``avg`` or ``norm`` (``-‖log π‖₂``); default ``avg``
            with ``--convention rewardbench`` (``run_dpo.py``'s), else from ``average_logps``.
        max_prompt_length: ``--convention rewardbench``: tokens a too-long prompt keeps (default 128, at most half of
            ``max_length``); ``max_length`` defaults to 2048 there (or the block size when smaller).
        version: 1 (pairs, sections) or 2 (RewardBench 2: rows with lists ``chosen``/``rejected``, ``num_correct``;
            every completion scored, best-of-N with the tie penalty per subset, Ties by its own formula, Score = mean
            of the six subsets; ``data`` may be ``allenai/reward-bench-2``, split ``test``). Works for reward models
            and, through the implicit reward, DPO models.

    Returns: the ``results.json`` content.
    """
    return evaluate(
        checkpoint_dir=checkpoint_dir,
        data=data,
        kind=kind,
        ref_checkpoint_dir=ref_checkpoint_dir,
        beta=beta,
        ref_free=ref_free,
        average_logps=average_logps,
        split=split,
        prompt_style=prompt_style,
        batch_size=batch_size,
        max_length=max_length,
        truncation=truncation,
        limit=limit,
        share_prompt=share_prompt,
        share_group=share_group,
        out_dir=out_dir,
        plot=plot,
        devices=devices,
        num_nodes=num_nodes,
        accelerator=accelerator,
        strategy=strategy,
        precision=precision,
        convention=convention,
        ref_free_type=ref_free_type,
        max_prompt_length=max_prompt_length,
        version=version,
    )
