"""``litcpt export``: a litcpt checkpoint -> a Hugging Face ``transformers`` directory.

    litcpt export --checkpoint_dir out/reward/final --out_dir out/reward-hf     # AutoModelForSequenceClassification
    litcpt export --checkpoint_dir out/dpo/final --out_dir out/dpo-hf           # AutoModelForCausalLM

The run itself is :func:`litcpt.hf.export.run`.
"""

from __future__ import annotations

from pathlib import Path

from litcpt.hf.export import run

__all__ = ["main"]


def main(checkpoint_dir: Path, out_dir: Path, dtype: str | None = None) -> Path:
    """Export a litcpt checkpoint to a Hugging Face directory (``config.json``, ``model.safetensors``, tokenizer).

    A reward model (``litcpt reward`` or ``litcpt import-reward-model`` output) becomes a one-label
    ``<Family>ForSequenceClassification`` with a pad token, for TRL, OpenRLHF, vLLM and RewardBench's ``run_rm.py``;
    any other LitGPT checkpoint (``pretrain``, ``anneal``, ``dpo``, ``merge`` output) a ``<Family>ForCausalLM``.
    Families: Llama, Mistral, Qwen2, Qwen3, Gemma, GPT-NeoX (Pythia), Phi (1.5/2).

    Args:
        checkpoint_dir: a LitGPT checkpoint dir (``out/reward/final``).
        out_dir: the new Hugging Face directory (must not exist or be empty; written atomically).
        dtype: cast the weights to ``float32``, ``bfloat16`` or ``float16`` (default: as saved).

    Returns: ``out_dir``.
    """
    return run(checkpoint_dir=checkpoint_dir, out_dir=out_dir, dtype=dtype)
