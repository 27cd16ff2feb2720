"""``litcpt export``: a litcpt checkpoint -> a Hugging Face ``transformers`` directory.

A reward-model checkpoint (``reward_head.pth`` + ``reward_model.json``, from ``litcpt reward`` or
``litcpt import-reward-model``) becomes a ``<Family>ForSequenceClassification`` with one label: the backbone's
weights through LitGPT's own converter (``convert_lit_checkpoint``), the reward head as the ``score`` row (the
repurposed-logit head is the LM head's row of its token: the same linear map). ``transformers`` reads a sequence's
score at its last token that is not the pad token, so the export needs a pad token that no text ever holds: the
tokenizer's own when it has one other than EOS, else a new ``<|pad|>`` (one more embedding row when the vocabulary
has no spare one). ``transformers``' ``score`` layer has no bias: a non-zero head bias goes into the final norm's
bias where the family has one (exact: nothing else reads the final hidden states), else it is left out (scores
then differ from litcpt's by that constant, rankings do not) and recorded as ``litcpt_reward_bias`` in
``config.json``.

Any other LitGPT checkpoint (``litcpt pretrain``/``anneal``/``dpo`` output) becomes a ``<Family>ForCausalLM``.
No ``transformers`` import is needed: ``config.json`` and ``model.safetensors`` are written directly.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from litcpt.hf.families import Family, family_of
from litcpt.runtime.checkpoint import check_checkpoint_dir, load_config, publish_dir

__all__ = ["PAD_TOKEN", "TOKENIZER_FILES", "check_out_dir", "hf_state_dict", "run"]

PAD_TOKEN = "<|pad|>"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "generation_config.json")


def hf_state_dict(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    """The Hugging Face causal-LM state dict of a LitGPT checkpoint dir, by LitGPT's own ``convert_lit_checkpoint``
    (into a scratch dir next to the checkpoint, removed after)."""
    from litgpt.scripts.convert_lit_checkpoint import convert_lit_checkpoint

    scratch = checkpoint_dir.parent / f".{checkpoint_dir.name}.hf-{uuid.uuid4().hex[:8]}"
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it pprints its arguments
            convert_lit_checkpoint(checkpoint_dir, scratch)
        return torch.load(scratch / "model.pth", map_location="cpu", weights_only=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _special_ids(checkpoint_dir: Path) -> dict[str, Any]:
    """``bos_token_id``/``eos_token_id`` as ``generation_config.json`` or litgpt's tokenizer says."""
    from litgpt import Tokenizer

    tokenizer = Tokenizer(checkpoint_dir)
    return {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id}


def _token_ids(tokenizer_json: dict[str, Any]) -> dict[str, int]:
    vocab = tokenizer_json.get("model", {}).get("vocab") or {}
    ids = dict(vocab) if isinstance(vocab, dict) else {piece: i for i, (piece, _) in enumerate(vocab)}
    ids.update({t["content"]: t["id"] for t in tokenizer_json.get("added_tokens", [])})
    return ids


def _pad_token(tmp: Path, eos_id: int | None) -> tuple[int, bool]:
    """Give the tokenizer files in ``tmp`` a pad token no text holds: ``(its id, whether it is new)``."""
    tokenizer_json = tmp / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise ValueError("checkpoint: the export of a reward model needs a tokenizer.json (transformers reads the "
                         "score at the last non-pad token, so the tokenizer must get a pad token)")
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    ids = _token_ids(data)
    config_path = tmp / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    pad = tok_config.get("pad_token")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    if pad in ids and ids[pad] != eos_id:
        return ids[pad], False
    if PAD_TOKEN in ids:
        raise ValueError(f"checkpoint: the tokenizer has a {PAD_TOKEN!r} token that is not its pad token")
    new_id = max(ids.values()) + 1
    data.setdefault("added_tokens", []).append({"id": new_id, "content": PAD_TOKEN, "single_word": False,
                                                "lstrip": False, "rstrip": False, "normalized": False,
                                                "special": True})
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    config_path.write_text(json.dumps({**tok_config, "pad_token": PAD_TOKEN}, indent=2) + "\n", encoding="utf-8")
    special = tmp / "special_tokens_map.json"
    special_map = json.loads(special.read_text(encoding="utf-8")) if special.is_file() else {}
    special.write_text(json.dumps({**special_map, "pad_token": PAD_TOKEN}, indent=2) + "\n", encoding="utf-8")
    return new_id, True


def _reward_weights(state: dict[str, torch.Tensor], family: Family, checkpoint_dir: Path,
                    pad_id: int) -> tuple[dict[str, torch.Tensor], float, int]:
    """The sequence-classification state dict (LM head out, ``score`` in; the head bias folded into the final norm
    where it can be), the bias left out (0.0 when none) and the vocabulary size (one more row for a new pad)."""
    from litcpt.models.reward import HEAD_FILE

    head = torch.load(checkpoint_dir / HEAD_FILE, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if k not in (family.lm_head, family.lm_head.replace(".weight", ".bias"))}
    weight = head["weight"].reshape(1, -1)
    state["score.weight"] = weight.to(state[family.embeddings].dtype).clone()
    bias = float(head["bias"].reshape(-1)[0]) if "bias" in head else 0.0
    norm_bias = f"{family.final_norm}.bias"
    if bias != 0.0 and norm_bias in state:
        w = weight[0].double()
        state[norm_bias] = (state[norm_bias].double() + bias * w / w.dot(w)).to(state[norm_bias].dtype)
        bias = 0.0
    embeddings = state[family.embeddings]
    if pad_id >= embeddings.shape[0]:
        extra = torch.zeros(pad_id + 1 - embeddings.shape[0], embeddings.shape[1], dtype=embeddings.dtype)
        state[family.embeddings] = torch.cat([embeddings, extra])
    return state, bias, state[family.embeddings].shape[0]


def _save_safetensors(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    seen: dict[int, str] = {}
    out = {}
    for key, value in state.items():  # safetensors refuses shared storage: tied weights are copied
        value = value.detach().contiguous()
        ptr = value.untyped_storage().data_ptr()
        out[key] = value.clone() if ptr in seen else value
        seen.setdefault(ptr, key)
    save_file(out, str(path), metadata={"format": "pt"})


def check_out_dir(out_dir: Path, source: Path) -> list[Path]:
    """Refuse an ``out_dir`` that is ``source`` or holds anything but the run's ``config.yaml`` (which the CLI
    writes first); returns the files to keep in the new directory."""
    if out_dir.resolve() == source.resolve():
        raise ValueError(f"out_dir: {str(out_dir)!r} is the source itself; choose a new directory")
    if out_dir.exists() and (not out_dir.is_dir() or {p.name for p in out_dir.iterdir()} - {"config.yaml"}):
        raise ValueError(f"out_dir: {str(out_dir)!r} exists and is not an empty directory")
    return [out_dir / "config.yaml"] if (out_dir / "config.yaml").is_file() else []


def run(checkpoint_dir: Path, out_dir: Path, dtype: str | None = None) -> Path:
    """Export ``checkpoint_dir`` to ``out_dir`` (see the module docstring); returns ``out_dir``."""
    from litcpt.models.reward import HEAD_FILE, META_FILE

    checkpoint_dir = check_checkpoint_dir(checkpoint_dir, field="checkpoint_dir")
    out_dir = Path(out_dir)
    keep = check_out_dir(out_dir, checkpoint_dir)
    if dtype not in (None, "float32", "bfloat16", "float16"):
        raise ValueError(f"dtype: expected float32, bfloat16 or float16, got {dtype!r}")
    config = load_config(checkpoint_dir)
    family = family_of(config)
    reward = (checkpoint_dir / HEAD_FILE).is_file() and (checkpoint_dir / META_FILE).is_file()
    state = hf_state_dict(checkpoint_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for src in [checkpoint_dir / name for name in TOKENIZER_FILES] + keep:
            if src.is_file():
                shutil.copy(src, tmp / src.name)
        special = _special_ids(checkpoint_dir)
        hf_config = {"architectures": [f"{family.architecture}ForCausalLM"], "model_type": family.model_type,
                     **family.to_hf(config), **special}
        if reward:
            pad_id, _ = _pad_token(tmp, special["eos_token_id"])
            state, bias, vocab = _reward_weights(state, family, checkpoint_dir, pad_id)
            meta = json.loads((checkpoint_dir / META_FILE).read_text(encoding="utf-8"))
            hf_config.update(architectures=[f"{family.architecture}ForSequenceClassification"], num_labels=1,
                             id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0}, pad_token_id=pad_id,
                             vocab_size=vocab, litcpt_reward_head=meta.get("head"))
            if bias:
                hf_config["litcpt_reward_bias"] = bias
        elif family.lm_head not in state:
            hf_config["tie_word_embeddings"] = True
        if dtype is not None:
            state = {k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v for k, v in state.items()}
        floats = [v.dtype for v in state.values() if v.is_floating_point()]
        hf_config["torch_dtype"] = str(floats[0] if floats else torch.float32).removeprefix("torch.")
        _save_safetensors(state, tmp / "model.safetensors")
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        publish_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if reward and hf_config.get("litcpt_reward_bias"):
        print(f"litcpt export: the reward head's bias {bias:+.6g} has no place in {family.architecture}'s score "
              "layer; transformers' scores are litcpt's minus it (rankings and accuracy are the same)")
    print(f"litcpt export: wrote {out_dir} ({hf_config['architectures'][0]})")
    return out_dir
