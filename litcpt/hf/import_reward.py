"""``litcpt import-reward-model``: a Hugging Face one-label ``<Family>ForSequenceClassification`` directory -> a
litcpt reward checkpoint (a LitGPT dir with ``reward_head.pth`` and ``reward_model.json``, head ``linear``), which
``litcpt rewardbench``, ``litcpt score`` and :func:`litcpt.models.reward.load_reward_model` read.

The backbone goes through LitGPT's own weight converters (``litgpt.scripts.convert_hf_checkpoint``, the one of the
family, :data:`litcpt.hf.families.FAMILIES`); the ``litgpt.Config`` is made from ``config.json`` (no LitGPT model
name needed). The ``score`` row becomes the linear head (a ``litcpt_reward_bias`` written by ``litcpt export`` its
bias). The LM head, which a classifier lacks, is the token embedding (zero bias): it is never read for scoring.
Weights are read from ``*.safetensors`` files, or ``*.bin`` files with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from litcpt.hf.families import family_of_hf

__all__ = ["read_hf_config", "read_hf_weights", "run"]


def read_hf_config(hf_dir: Path) -> dict[str, Any]:
    """``hf_dir/config.json``, or a one-line error."""
    path = hf_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"hf_dir: {str(hf_dir)!r} has no config.json (expected a Hugging Face model dir)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def read_hf_weights(hf_dir: Path) -> dict[str, torch.Tensor]:
    """All weights of ``hf_dir`` (every ``*.safetensors``, else every ``*.bin`` but ``training_args.bin``)."""
    from safetensors.torch import load_file

    files = sorted(hf_dir.glob("*.safetensors"))
    if files:
        return {k: v for f in files for k, v in load_file(str(f)).items()}
    files = sorted(f for f in hf_dir.glob("*.bin") if f.name != "training_args.bin")
    if not files:
        raise FileNotFoundError(f"hf_dir: {str(hf_dir)!r} has no *.safetensors or *.bin weights")
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            weights.update(torch.load(f, map_location="cpu", weights_only=True))
        except Exception as err:
            raise ValueError(f"{f}: cannot be read as a PyTorch state dict ({type(err).__name__}: {err})") from None
    return weights


def _check_classifier(hf_config: dict[str, Any], path: Path) -> None:
    architectures = hf_config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        raise ValueError(f"{path}: architectures {architectures} has no *ForSequenceClassification (a reward model "
                         "is a one-label sequence classifier)")
    labels = hf_config.get("num_labels", len(hf_config.get("id2label") or {"0": None}))
    if labels != 1:
        raise ValueError(f"{path}: num_labels is {labels}; a reward model has exactly one (one score per sequence)")


def _lit_weights(family: Any, config: Any, hf_weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LitGPT's converter of the family on the backbone, the missing LM head filled from the token embedding."""
    from litgpt import GPT
    from litgpt.scripts import convert_hf_checkpoint as converters

    copy = getattr(converters, family.hf_to_lit)
    state: dict[str, torch.Tensor] = {}
    args = (config, {}, state, hf_weights) if family.qkv else (config, state, hf_weights)
    copy(*args)
    with torch.device("meta"):
        expected = GPT(config).state_dict()
    if "lm_head.weight" not in state:
        state["lm_head.weight"] = state["transformer.wte.weight"].clone()
    if "lm_head.bias" in expected and "lm_head.bias" not in state:
        state["lm_head.bias"] = torch.zeros(config.padded_vocab_size, dtype=state["lm_head.weight"].dtype)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"hf_dir: the converted weights lack {', '.join(missing[:4])}"
                         f"{' ...' if len(missing) > 4 else ''} (is config.json the config of these weights?)")
    return {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def run(hf_dir: Path, out_dir: Path) -> Path:
    """Import ``hf_dir`` into ``out_dir`` (see the module docstring); returns ``out_dir``."""
    from litgpt import Config

    from litcpt.hf.export import check_out_dir
    from litcpt.models.reward import HEAD_FILE, META_FILE
    from litcpt.runtime.checkpoint import save_litgpt_dir

    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    if not hf_dir.is_dir():
        raise FileNotFoundError(f"hf_dir: {str(hf_dir)!r} is not a directory")
    keep = check_out_dir(out_dir, hf_dir)
    if not ((hf_dir / "tokenizer.json").is_file() or (hf_dir / "tokenizer.model").is_file()):
        raise FileNotFoundError(f"hf_dir: {str(hf_dir)!r} has no tokenizer.json or tokenizer.model")
    hf_config = read_hf_config(hf_dir)
    family = family_of_hf(hf_config, path=str(hf_dir / "config.json"))
    _check_classifier(hf_config, hf_dir / "config.json")
    config = Config(name=f"{family.lit_name}{hf_dir.name}", **family.from_hf(hf_config))
    hf_weights = read_hf_weights(hf_dir)
    score = hf_weights.pop("score.weight", None)
    if score is None or tuple(score.shape) != (1, config.n_embd):
        raise ValueError(f"hf_dir: expected a score.weight of shape (1, {config.n_embd}), got "
                         f"{None if score is None else tuple(score.shape)}")
    bias = hf_weights.pop("score.bias", torch.zeros(1)).reshape(1).float()
    bias = bias + float(hf_config.get("litcpt_reward_bias") or 0.0)
    weights = _lit_weights(family, config, hf_weights)
    head = {"weight": score.float().reshape(1, -1).clone(), "bias": bias.clone()}
    meta = {"head": "linear", "token_id": None, "loss_type": "bradley_terry", "base_checkpoint": None,
            "imported_from": str(hf_dir)}
    save_litgpt_dir(weights, config, out_dir, tokenizer_dir=hf_dir, extra_files=keep,
                     extra_objects={HEAD_FILE: head, META_FILE: meta})
    print(f"litcpt import-reward-model: wrote {out_dir} ({family.architecture}, {config.n_layer} layers)")
    return out_dir
