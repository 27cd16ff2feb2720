"""``litcpt import-reward-model``: a Hugging Face sequence-classification reward model -> a litcpt reward checkpoint.

    litcpt import-reward-model --hf_dir path/to/Skywork-Reward-V2-Qwen3-0.6B --out_dir out/skywork
    litcpt rewardbench --checkpoint_dir out/skywork

The run itself is :func:`litcpt.hf.import_reward.run`.
"""

from __future__ import annotations

from pathlib import Path

from litcpt.hf.import_reward import run

__all__ = ["main"]


def main(hf_dir: Path, out_dir: Path) -> Path:
    """Convert a local one-label ``<Family>ForSequenceClassification`` directory into a litcpt reward checkpoint.

    The result is read by ``litcpt rewardbench`` (v1 and v2), ``litcpt score`` and ``litcpt export``. Families:
    Llama, Mistral, Qwen2, Qwen3, Gemma, GPT-NeoX (Pythia), Phi (1.5/2), with default RoPE.

    Args:
        hf_dir: a local Hugging Face model dir (``config.json``, ``*.safetensors`` or ``*.bin``, tokenizer files).
        out_dir: the new reward checkpoint dir (must not exist or be empty; written atomically).

    Returns: ``out_dir``.
    """
    return run(hf_dir=hf_dir, out_dir=out_dir)
