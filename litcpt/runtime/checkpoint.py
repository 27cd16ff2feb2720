"""Read and write checkpoints in LitGPT's layout, atomically.

A LitGPT checkpoint directory holds ``lit_model.pth`` (a state dict of ``litgpt.GPT``, possibly wrapped as
``{"model": state_dict, ...}`` as ``litgpt pretrain`` writes it), ``model_config.yaml`` and the tokenizer files
(``tokenizer.json`` or ``tokenizer.model`` plus ``tokenizer_config.json``). Everything here works on plain state
dicts and paths; gathering a sharded model into one state dict lives in :mod:`litcpt.callbacks.litgpt_checkpoint`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from litgpt import Config
from litgpt.utils import copy_config_files, save_config

from litcpt.runtime.atomic import fsync_dir, write_atomic

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "generation_config.json",
    "config.json",
)
_STRIP_PREFIXES = ("_orig_mod.", "_forward_module.", "module.")


def check_checkpoint_dir(
    checkpoint_dir: Path | str, *, field: str = "checkpoint_dir", need_tokenizer: bool = True
) -> Path:
    """Return ``checkpoint_dir`` as a Path, or raise a one-line error saying what is missing."""
    path = Path(checkpoint_dir)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{field}: {str(path)!r} is not a directory (expected a LitGPT checkpoint dir with "
            "lit_model.pth, model_config.yaml and tokenizer files)"
        )
    missing = [name for name in ("lit_model.pth", "model_config.yaml") if not (path / name).is_file()]
    if need_tokenizer and not ((path / "tokenizer.json").is_file() or (path / "tokenizer.model").is_file()):
        missing.append("tokenizer.json or tokenizer.model")
    if missing:
        raise FileNotFoundError(f"{field}: {str(path)!r} is missing {', '.join(missing)}")
    return path


def load_config(checkpoint_dir: Path | str) -> Config:
    """The ``litgpt.Config`` saved in ``checkpoint_dir/model_config.yaml``."""
    path = Path(checkpoint_dir) / "model_config.yaml"
    try:
        return Config.from_file(path)
    except (OSError, TypeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: not a valid litgpt model_config.yaml ({err})") from None


def clean_state_dict(state_dict: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Unwrap ``{"model": sd}``, keep keys under ``prefix`` (stripped) and drop wrapper prefixes
    (``torch.compile``'s ``_orig_mod.``, DDP's ``module.``)."""
    if "model" in state_dict and isinstance(state_dict["model"], Mapping):
        state_dict = state_dict["model"]
    out = {}
    for key, value in state_dict.items():
        if prefix:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix) :]
        changed = True
        while changed:
            changed = False
            for p in _STRIP_PREFIXES:
                if key.startswith(p):
                    key, changed = key[len(p) :], True
            key = key.replace("._orig_mod.", ".").replace("._checkpoint_wrapped_module.", ".")
        out[key] = value
    return out


def load_state_dict(path: Path | str) -> dict[str, Any]:
    """Load ``lit_model.pth`` (mmap, on CPU) and return a clean ``GPT`` state dict."""
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: cannot be read as a PyTorch state dict ({type(err).__name__}: {err})") from None
    return clean_state_dict(raw)


def load_weights(
    model: torch.nn.Module, checkpoint_dir: Path | str, *, field: str = "initial_checkpoint_dir", strict: bool = True
) -> None:
    """Load ``checkpoint_dir/lit_model.pth`` into ``model`` with an error naming the mismatching keys/shapes."""
    path = Path(checkpoint_dir) / "lit_model.pth"
    state_dict = load_state_dict(path)
    check_weights_match(model.state_dict(), state_dict, path=path, field=field, strict=strict)
    model.load_state_dict(state_dict, strict=strict)


def check_weights_match(
    own: Mapping[str, Any],
    state_dict: Mapping[str, Any],
    *,
    path: Path | str,
    field: str = "initial_checkpoint_dir",
    strict: bool = True,
) -> None:
    """Raise a one-line error naming the mismatching keys/shapes of ``state_dict`` (read from ``path``) against a
    model's ``own`` state dict (a meta-device model's will do: only names and shapes are compared)."""
    shape_errors = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(own[k].shape) != tuple(v.shape)
    ]
    if shape_errors:
        raise ValueError(
            f"{field}: {path} does not match the model config: "
            + "; ".join(shape_errors[:3])
            + (f" (+{len(shape_errors) - 3} more)" if len(shape_errors) > 3 else "")
        )
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if strict and (missing or unexpected):
        raise ValueError(
            f"{field}: {path} does not match the model: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
        )


def atomic_torch_save(obj: Any, path: Path | str) -> None:
    """``torch.save`` that leaves ``path`` whole or untouched whatever ``TMPDIR`` is and wherever a kill lands (see
    :mod:`litcpt.runtime.atomic`; a stale ``.<name>.*.tmp`` may stay: :func:`litcpt.runtime.resume.clean_stale_saves`
    removes it)."""
    write_atomic(path, lambda fp: torch.save(obj, fp))


def save_litgpt_dir(
    state_dict: Mapping[str, torch.Tensor],
    config: Config,
    out_dir: Path | str,
    *,
    tokenizer_dir: Path | str | None = None,
    extra_files: Iterable[Path] = (),
    extra_objects: Mapping[str, Any] | None = None,
) -> Path:
    """Write a LitGPT checkpoint dir (``lit_model.pth`` + ``model_config.yaml`` + tokenizer files) atomically.

    Everything is written into a hidden sibling directory which then replaces ``out_dir`` with one rename, so a
    crash or a kill never leaves a half-written checkpoint: readers see the old directory or the new one.
    ``extra_objects`` are saved as ``<name>`` files: JSON for ``*.json`` names, else ``torch.save`` (a reward head).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        torch.save(dict(state_dict), tmp / "lit_model.pth")
        if tokenizer_dir is not None:  # litgpt's own copy: tokenizer + HF config files (and the source's config,
            copy_config_files(Path(tokenizer_dir), tmp)  # which save_config overwrites next)
        save_config(config, tmp)
        for src in extra_files:
            shutil.copy(src, tmp / Path(src).name)
        for name, obj in (extra_objects or {}).items():
            if name.endswith(".json"):
                (tmp / name).write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")
            else:
                torch.save(obj, tmp / name)
        _fsync_files(tmp)
        _replace_dir(tmp, out_dir)
        fsync_dir(out_dir.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def publish_dir(tmp: Path | str, out_dir: Path | str) -> Path:
    """Put the finished directory ``tmp`` (a hidden sibling of ``out_dir``) in place of ``out_dir`` with one rename,
    its files fsynced first: readers see the old directory or the new one, never half of one."""
    tmp, out_dir = Path(tmp), Path(out_dir)
    _fsync_files(tmp)
    _replace_dir(tmp, out_dir)
    fsync_dir(out_dir.parent)
    return out_dir


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; an existing ``dst`` is moved aside first and removed only after the swap."""
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_files(directory: Path) -> None:
    """fsync every file in ``directory`` and the directory itself (before it is renamed into place)."""
    for child in directory.iterdir():
        if child.is_file():
            with open(child, "rb") as fp:
                os.fsync(fp.fileno())
    fsync_dir(directory)


def load_lightning_checkpoint(path: str | Path, *, field: str = "checkpoint", safe: bool = False) -> dict[str, Any]:
    """A Lightning ``.ckpt`` as a dict on CPU, memory-mapped (only what is read is loaded); for a sharded checkpoint
    directory, its ``meta.pt``. The safe loader first; Lightning's own objects need the full one, unless ``safe``:
    then only ``torch.load(weights_only=True)`` (for plain entries such as callback states, in a file that may come
    from someone else). Anything that is not a readable Lightning checkpoint is a one-line ``ValueError`` naming
    ``field`` and the file."""
    import pickle

    path = Path(path)
    target = path / "meta.pt" if path.is_dir() else path
    try:
        try:
            ckpt = torch.load(target, map_location="cpu", mmap=True, weights_only=True)
        except pickle.UnpicklingError:
            if safe:
                raise
            ckpt = torch.load(target, map_location="cpu", mmap=True, weights_only=False)
    except Exception as err:
        raise ValueError(
            f"{field}: {str(path)!r} cannot be read as a Lightning checkpoint "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    if not isinstance(ckpt, dict) or "global_step" not in ckpt:
        raise ValueError(f"{field}: {str(path)!r} is not a Lightning checkpoint (no global_step)")
    return ckpt
