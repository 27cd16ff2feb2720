"""The architecture families litcpt moves to and from Hugging Face ``transformers``: one registry, :data:`FAMILIES`.

Each :class:`Family` says how a ``litgpt.Config`` becomes a ``config.json`` of that family and back, where its
weights live in the Hugging Face layout (the backbone's key prefix, the LM head, the final norm) and which of
LitGPT's own weight converters (``litgpt.scripts.convert_hf_checkpoint``) reads it in; writing it out goes through
``litgpt.scripts.convert_lit_checkpoint.convert_lit_checkpoint`` itself, whose choice of converter
(by ``Config.name`` and MLP class) :func:`family_of` mirrors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["FAMILIES", "Family", "family_of", "family_of_hf"]


@dataclass(frozen=True)
class Family:
    """One architecture family.

    Attributes:
        model_type: ``config.json``'s ``model_type`` (``transformers``' name of the family).
        architecture: the class name stem (``Llama`` -> ``LlamaForSequenceClassification``/``LlamaForCausalLM``).
        backbone: the prefix of the backbone's weights (``model.``, ``gpt_neox.``).
        lm_head: the LM head's weight key in the causal-LM layout.
        final_norm: the final norm's key stem (its ``.bias``, if any, absorbs a reward head's bias on export).
        embeddings: the token embedding's weight key.
        lit_name: the prefix of the ``litgpt.Config.name`` given on import: LitGPT's converters dispatch on it.
        hf_to_lit: the name of the converter in ``litgpt.scripts.convert_hf_checkpoint``; ``qkv`` whether it takes
            the holder of split q/k/v weights as its second argument.
        to_hf: ``litgpt.Config`` -> the family's own ``config.json`` keys.
        from_hf: ``config.json`` -> ``litgpt.Config`` keyword arguments.
    """

    model_type: str
    architecture: str
    backbone: str
    lm_head: str
    final_norm: str
    embeddings: str
    lit_name: str
    hf_to_lit: str
    qkv: bool
    to_hf: Callable[[Any], dict[str, Any]]
    from_hf: Callable[[dict[str, Any]], dict[str, Any]]


def _rope(config: Any) -> dict[str, Any]:
    """The RoPE keys, in ``transformers`` 5's ``rope_parameters`` and the older flat ``rope_theta``."""
    rope = {"rope_type": "default", "rope_theta": float(config.rope_base)}
    if config.rotary_percentage != 1.0:
        rope["partial_rotary_factor"] = float(config.rotary_percentage)
    return {"rope_parameters": rope, "rope_theta": float(config.rope_base)}


def _rope_base(hf: dict[str, Any]) -> float:
    rope = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    kind = rope.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    if kind not in ("default", None):
        raise ValueError(f"config.json: rope type {kind!r} is not supported by the import (only 'default' RoPE)")
    return float(rope.get("rope_theta", hf.get("rope_theta", hf.get("rotary_emb_base", 10000.0))))


def _rotary(hf: dict[str, Any], legacy: str) -> float:
    rope = hf.get("rope_parameters") or {}
    return float(rope.get("partial_rotary_factor", hf.get(legacy, hf.get("partial_rotary_factor", 1.0))))


def _common(config: Any) -> dict[str, Any]:
    return {"vocab_size": config.padded_vocab_size, "hidden_size": config.n_embd,
            "intermediate_size": config.intermediate_size, "num_hidden_layers": config.n_layer,
            "num_attention_heads": config.n_head, "max_position_embeddings": config.block_size,
            "tie_word_embeddings": False, **_rope(config)}


def _common_back(hf: dict[str, Any]) -> dict[str, Any]:
    n_head = hf["num_attention_heads"]
    return {"padded_vocab_size": hf["vocab_size"], "vocab_size": hf["vocab_size"], "n_embd": hf["hidden_size"],
            "intermediate_size": hf["intermediate_size"], "n_layer": hf["num_hidden_layers"], "n_head": n_head,
            "n_query_groups": hf.get("num_key_value_heads") or n_head,
            "head_size": hf.get("head_dim") or hf["hidden_size"] // n_head,
            "block_size": hf.get("max_position_embeddings", 4096), "rope_base": _rope_base(hf)}


def _llama(config: Any) -> dict[str, Any]:
    return {**_common(config), "num_key_value_heads": config.n_query_groups, "head_dim": config.head_size,
            "hidden_act": "silu", "rms_norm_eps": config.norm_eps, "attention_bias": config.attn_bias or config.bias,
            "mlp_bias": config.bias}


def _llama_back(hf: dict[str, Any]) -> dict[str, Any]:
    if hf.get("hidden_act", "silu") != "silu":
        raise ValueError(f"config.json: hidden_act {hf['hidden_act']!r} is not supported (expected 'silu')")
    return {**_common_back(hf), "norm_class_name": "RMSNorm", "mlp_class_name": "LLaMAMLP", "parallel_residual": False,
            "rotary_percentage": 1.0, "norm_eps": hf.get("rms_norm_eps", 1e-6), "bias": bool(hf.get("mlp_bias")),
            "attn_bias": bool(hf.get("attention_bias"))}


def _mistral(config: Any) -> dict[str, Any]:
    return {**_llama(config), "sliding_window": config.sliding_window_size}


def _mistral_back(hf: dict[str, Any]) -> dict[str, Any]:
    window = hf.get("sliding_window")
    return {**_llama_back(hf), **({"sliding_window_size": window} if window else {})}


def _qwen2(config: Any) -> dict[str, Any]:
    out = _llama(config)
    del out["attention_bias"], out["mlp_bias"]  # Qwen2: q/k/v always carry a bias, nothing else does
    return out


def _qwen2_back(hf: dict[str, Any]) -> dict[str, Any]:
    return {**_llama_back({**hf, "attention_bias": True, "mlp_bias": False})}


def _qwen3(config: Any) -> dict[str, Any]:
    return _llama(config)


def _qwen3_back(hf: dict[str, Any]) -> dict[str, Any]:
    return {**_llama_back(hf), "norm_qk": True}


def _gemma(config: Any) -> dict[str, Any]:
    out = _llama(config)
    del out["hidden_act"]
    return {**out, "hidden_activation": "gelu_pytorch_tanh"}


def _gemma_back(hf: dict[str, Any]) -> dict[str, Any]:
    act = hf.get("hidden_activation") or hf.get("hidden_act", "gelu_pytorch_tanh")
    if act not in ("gelu_pytorch_tanh", "gelu"):
        raise ValueError(f"config.json: hidden_activation {act!r} is not supported (expected 'gelu_pytorch_tanh')")
    return {**_llama_back({**hf, "hidden_act": "silu"}), "mlp_class_name": "GemmaMLP", "gelu_approximate": "tanh",
            "scale_embeddings": True}


def _neox(config: Any) -> dict[str, Any]:
    if config.n_query_groups != config.n_head:
        raise ValueError("checkpoint: GPT-NeoX has no grouped-query attention (n_query_groups != n_head)")
    return {**_common(config), "rotary_pct": config.rotary_percentage, "rotary_emb_base": float(config.rope_base),
            "hidden_act": "gelu" if config.gelu_approximate == "none" else "gelu_new",
            "use_parallel_residual": config.parallel_residual, "layer_norm_eps": config.norm_eps,
            "attention_bias": config.bias}


def _neox_back(hf: dict[str, Any]) -> dict[str, Any]:
    return {**_common_back(hf), "mlp_class_name": "GptNeoxMLP", "norm_class_name": "LayerNorm", "bias": True,
            "parallel_residual": bool(hf.get("use_parallel_residual", True)),
            "rotary_percentage": _rotary(hf, "rotary_pct"), "norm_eps": hf.get("layer_norm_eps", 1e-5),
            "gelu_approximate": "none" if hf.get("hidden_act", "gelu") == "gelu" else "tanh"}


def _phi(config: Any) -> dict[str, Any]:
    return {**_common(config), "num_key_value_heads": config.n_query_groups, "partial_rotary_factor":
            config.rotary_percentage, "hidden_act": "gelu_new" if config.gelu_approximate == "tanh" else "gelu",
            "layer_norm_eps": config.norm_eps, "qk_layernorm": False, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
            "attention_dropout": 0.0}


def _phi_back(hf: dict[str, Any]) -> dict[str, Any]:
    return {**_common_back(hf), "mlp_class_name": "GptNeoxMLP", "norm_class_name": "LayerNorm", "bias": True,
            "lm_head_bias": True, "parallel_residual": True, "shared_attention_norm": True,
            "rotary_percentage": _rotary(hf, "partial_rotary_factor"), "norm_eps": hf.get("layer_norm_eps", 1e-5),
            "gelu_approximate": "tanh" if hf.get("hidden_act", "gelu_new") == "gelu_new" else "none"}


_LLAMA_LIKE = {"backbone": "model.", "lm_head": "lm_head.weight", "final_norm": "model.norm",
               "embeddings": "model.embed_tokens.weight", "qkv": True}

#: The families, by ``model_type``.
FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("llama", "Llama", lit_name="Llama-", hf_to_lit="copy_weights_hf_llama", to_hf=_llama,
           from_hf=_llama_back, **_LLAMA_LIKE),
    Family("mistral", "Mistral", lit_name="Mistral-", hf_to_lit="copy_weights_hf_llama", to_hf=_mistral,
           from_hf=_mistral_back, **_LLAMA_LIKE),
    Family("qwen2", "Qwen2", lit_name="Qwen2.5-", hf_to_lit="copy_weights_qwen_2_5", to_hf=_qwen2,
           from_hf=_qwen2_back, **_LLAMA_LIKE),
    Family("qwen3", "Qwen3", lit_name="Qwen3-", hf_to_lit="copy_weights_qwen_3", to_hf=_qwen3,
           from_hf=_qwen3_back, **_LLAMA_LIKE),
    Family("gemma", "Gemma", lit_name="Gemma-", hf_to_lit="copy_weights_hf_llama", to_hf=_gemma,
           from_hf=_gemma_back, **_LLAMA_LIKE),
    Family("gpt_neox", "GPTNeoX", backbone="gpt_neox.", lm_head="embed_out.weight",
           final_norm="gpt_neox.final_layer_norm", embeddings="gpt_neox.embed_in.weight", lit_name="pythia-",
           hf_to_lit="copy_weights_gpt_neox", qkv=False, to_hf=_neox, from_hf=_neox_back),
    Family("phi", "Phi", backbone="model.", lm_head="lm_head.weight", final_norm="model.final_layernorm",
           embeddings="model.embed_tokens.weight", lit_name="phi-", hf_to_lit="copy_weights_phi", qkv=True,
           to_hf=_phi, from_hf=_phi_back),
)}


def family_of(config: Any) -> Family:
    """The family of a ``litgpt.Config``, chosen as ``convert_lit_checkpoint`` chooses its converter; a one-line
    error for what it converts but ``transformers`` cannot load as one of :data:`FAMILIES` (or it cannot convert)."""
    name = config.name.lower()
    unsupported = ("falcon", "gemma-2", "gemma-3", "olmo", "phi-3", "phi-4", "qwq")
    if name.startswith(unsupported) or "falcon" in name or getattr(config, "n_expert", 0):
        raise ValueError(f"checkpoint: model {config.name!r} is not supported by the Hugging Face export (supported "
                         f"families: {', '.join(FAMILIES)}; Gemma-2/3, Falcon, OLMo-2, Phi-3/4 and MoE are not)")
    if config.sliding_window_size is not None and not name.startswith("mistral"):
        raise ValueError(f"checkpoint: model {config.name!r} uses sliding-window attention, which the export "
                         "supports for Mistral only")
    if getattr(config, "rope_adjustments", None) or getattr(config, "rope_indices", None):
        raise ValueError(f"checkpoint: model {config.name!r} uses scaled RoPE (rope_adjustments), which the export "
                         "does not write")
    if name.startswith("phi"):
        return FAMILIES["phi"]
    if name.startswith("qwen2.5"):
        return FAMILIES["qwen2"]
    if name.startswith("qwen3"):
        return FAMILIES["qwen3"]
    if config.mlp_class_name == "GemmaMLP":
        return FAMILIES["gemma"]
    if config.mlp_class_name == "LLaMAMLP":
        if config.norm_qk:
            raise ValueError(f"checkpoint: model {config.name!r} has q/k norms but is not named Qwen3-*")
        return FAMILIES["mistral" if name.startswith("mistral") else "llama"]
    if (config.mlp_class_name, config.norm_class_name, config.shared_attention_norm) == ("GptNeoxMLP", "LayerNorm",
                                                                                       False):
        return FAMILIES["gpt_neox"]
    raise ValueError(f"checkpoint: model {config.name!r} ({config.mlp_class_name}, {config.norm_class_name}) is not "
                     f"one of the Hugging Face export's families ({', '.join(FAMILIES)})")


def family_of_hf(hf_config: dict[str, Any], *, path: str = "config.json") -> Family:
    """The family of a Hugging Face ``config.json`` (its ``model_type``), or a one-line error."""
    model_type = hf_config.get("model_type")
    if model_type not in FAMILIES:
        raise ValueError(f"{path}: model_type {model_type!r} is not supported (expected one of "
                         f"{', '.join(FAMILIES)})")
    return FAMILIES[model_type]
