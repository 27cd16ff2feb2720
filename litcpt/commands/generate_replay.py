"""``litcpt generate-replay``: sample a replay corpus from a model when its pretraining data is gone.

Generative replay (self-synthesized rehearsal, Huang et al. 2024, arXiv 2403.01244): text sampled from the base
model stands in for the old corpus D1 in ``litcpt.data.Replay``. The output directory is a litcpt token file plus
``manifest.json``; give it as a replay source (``replay: {class_path: litcpt.data.TextFiles, init_args:
{train_data_path: <out_dir>}}``). See docs/continual-pretraining.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litcpt.generation.run import cli_validate, run

__all__ = ["cli_validate", "main"]


def main(
    checkpoint_dir: Path,
    out_dir: Path = Path("out/self-replay"),
    max_tokens: int = 1_048_576,
    prompts: Path | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    min_new_tokens: int = 16,
    max_new_tokens: int | None = None,
    batch_size: int = 16,
    shard_tokens: int = 1_048_576,
    seed: int = 42,
    repetition_ngram: int = 4,
    repetition_threshold: float = 0.5,
    devices: int = 1,
    num_nodes: int = 1,
    accelerator: str = "auto",
    precision: str | None = None,
) -> dict[str, Any]:
    """Sample a corpus from a LitGPT checkpoint (KV cache, batched) into a token file that Replay reads.

    Args:
        checkpoint_dir: the base model: a LitGPT checkpoint dir (lit_model.pth, model_config.yaml, tokenizer).
        out_dir: the corpus: ``tokens.bin`` + ``meta.json`` (a litcpt token file) and ``manifest.json``; a run killed
            part-way keeps its finished shards there and the same command continues it.
        max_tokens: tokens of the corpus (the budget; documents are cut to fit it exactly).
        prompts: a UTF-8 text file, one prompt per line (e.g. a few seed words per domain); each sample starts from
            BOS and a line drawn at random. Default: BOS only (unconditional samples).
        temperature: sampling temperature (> 0).
        top_k: sample among the k most likely tokens only (null: all).
        top_p: nucleus sampling: the smallest set of tokens whose probability reaches top_p (1: all).
        min_new_tokens: samples that end (EOS) before this many new tokens are dropped (counted as short).
        max_new_tokens: most new tokens per sample; each batch draws its length uniformly from
            [min_new_tokens, max_new_tokens]. Default: the model's block size less the start token and prompt.
        batch_size: samples generated together (one KV cache).
        shard_tokens: tokens per shard: the unit of resumption and of the split between ranks, each with its own seed.
        seed: the corpus's seed (shard k samples from a seed derived from seed and k): the same arguments give the
            same corpus, on any number of devices.
        repetition_ngram: n of the repetition filter's n-grams (of tokens).
        repetition_threshold: samples whose share of repeated n-grams (1 - distinct/total) is above this are dropped
            as repetition loops (1: keep all).
        devices: devices (GPUs) per node; shards are split between the ranks, each writes its own.
        num_nodes: nodes.
        accelerator: ``auto``, ``cpu``, ``cuda``/``gpu``.
        precision: ``32-true``, ``bf16-mixed``, ``bf16-true``, ``16-mixed``, ``16-true``, or null: bf16-mixed on a
            GPU that has it, else 32-true.

    Returns: the corpus's manifest (``manifest.json``).
    """
    return run(
        checkpoint_dir=checkpoint_dir,
        out_dir=out_dir,
        max_tokens=max_tokens,
        prompts=prompts,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_new_tokens=min_new_tokens,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        shard_tokens=shard_tokens,
        seed=seed,
        repetition_ngram=repetition_ngram,
        repetition_threshold=repetition_threshold,
        devices=devices,
        num_nodes=num_nodes,
        accelerator=accelerator,
        precision=precision,
    )
