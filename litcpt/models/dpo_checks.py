"""What DPO and ``litcpt rewardbench`` check before they load models: the policy and the reference share a
tokenizer, every pair keeps a response token to score, and the ``dpo.json`` a DPO run writes next to its policy.

Kept apart from :mod:`litcpt.models.dpo` so that commands can validate inputs without building a module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from litcpt.runtime.checkpoint import load_config

__all__ = ["DPO_META_FILE", "check_reference_compatible", "check_scorable", "read_dpo_metadata"]

DPO_META_FILE = "dpo.json"


def _tokenizer_identity(path: Path) -> tuple[str, Any] | None:
    """What defines a tokenizer dir's vocabulary: the model + added tokens of ``tokenizer.json``, else the bytes of
    ``tokenizer.model``."""
    if (path / "tokenizer.json").is_file():
        try:
            raw = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path / 'tokenizer.json'}: not valid JSON ({err})") from None
        return "tokenizer.json", (raw.get("model"), raw.get("added_tokens"))
    if (path / "tokenizer.model").is_file():
        return "tokenizer.model", hashlib.sha256((path / "tokenizer.model").read_bytes()).hexdigest()
    return None


def check_reference_compatible(policy_dir: Path | str, ref_dir: Path | str, *, policy_field: str = "checkpoint_dir",
                               ref_field: str = "ref_checkpoint_dir") -> None:
    """Raise a one-line ``ValueError`` naming both dirs if the policy and the reference cannot be compared token by
    token: different vocabulary sizes in ``model_config.yaml`` or different tokenizers."""
    policy_dir, ref_dir = Path(policy_dir), Path(ref_dir)
    a, b = load_config(policy_dir), load_config(ref_dir)
    for name in ("vocab_size", "padded_vocab_size"):
        if getattr(a, name) != getattr(b, name):
            raise ValueError(f"{policy_field} {str(policy_dir)!r} and {ref_field} {str(ref_dir)!r} have different "
                             f"{name} ({getattr(a, name)} vs {getattr(b, name)}): the reference must share the "
                             "policy's tokenizer")
    ta, tb = _tokenizer_identity(policy_dir), _tokenizer_identity(ref_dir)
    if ta is not None and tb is not None and ta != tb:
        raise ValueError(f"{policy_field} {str(policy_dir)!r} and {ref_field} {str(ref_dir)!r} have different "
                         f"tokenizers ({ta[0]} vs {tb[0]} differ): the reference must share the policy's tokenizer")


def check_scorable(items: Sequence[Any], *, source: str = "data") -> None:
    """Raise a ``ValueError`` naming the first pair whose chosen or rejected sequence has no response token that
    can be scored (a response token at position 0 has no prediction: this happens only when truncation removed the
    whole prompt and left a single response token). ``items`` are
    :class:`~litcpt.data.preference.pair_tokens.TokenizedPair`."""
    for item in items:
        for name, ids, prompt_length in (
            ("chosen", item.chosen_ids, item.chosen_prompt_length),
            ("rejected", item.rejected_ids, item.rejected_prompt_length),
        ):
            if len(ids) - max(int(prompt_length), 1) < 1:
                raise ValueError(
                    f"{source}: pair {item.index} ({name}): no response token left to score after "
                    f"truncation ({prompt_length} prompt tokens, {len(ids) - prompt_length} response "
                    "tokens); raise max_length or use truncation='left'"
                )


def read_dpo_metadata(checkpoint_dir: Path | str) -> dict[str, Any] | None:
    """The ``dpo.json`` written next to a DPO policy checkpoint, or None."""
    path = Path(checkpoint_dir) / DPO_META_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg})") from None
