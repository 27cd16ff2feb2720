"""Average LitGPT checkpoints tensor by tensor (model soups, PMA "average the last k checkpoints").

The inputs are memory-mapped (``torch.load(mmap=True)``), so only the output model and one tensor's float64
accumulator are resident: memory stays at about one model whatever the number of checkpoints.

For every floating-point tensor the result is ``sum_i w_i x_i / sum_i w_i``, accumulated in float64 and rounded once
to the checkpoint's dtype. With uniform weights over two float32 checkpoints this is bit-for-bit ``(a + b) / 2``
(both round the exact sum once; halving is exact). Integer/bool tensors must be equal in every checkpoint.
``litcpt merge`` runs :func:`merge_checkpoints`.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml

from litcpt.runtime.checkpoint import (
    TOKENIZER_FILES,
    check_checkpoint_dir,
    load_config,
    load_state_dict,
    save_litgpt_dir,
)

__all__ = ["average_checkpoints", "check_out_dir", "check_same_model", "check_same_tokenizer", "last_checkpoints",
           "merge_checkpoints", "normalize_weights", "weighted_mean"]

_STEP_DIR = re.compile(r"^step-(\d+)$")


def normalize_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """``weights`` as floats (``None``: uniform ``1.0`` each); errors unless there is one non-negative finite weight
    per checkpoint and their sum is positive."""
    if weights is None:
        return [1.0] * n
    weights = list(weights)
    if len(weights) != n:
        raise ValueError(f"weights: got {len(weights)} weights for {n} checkpoints (give one per checkpoint)")
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"weights[{i}]={w!r} must be a non-negative finite number")
    if sum(weights) <= 0:
        raise ValueError(f"weights={weights} sum to 0: at least one must be positive")
    return [float(w) for w in weights]


def weighted_mean(tensors: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """``sum_i w_i t_i / sum_i w_i`` in float64, rounded once to the dtype of ``tensors[0]``."""
    acc = torch.zeros(tensors[0].shape, dtype=torch.float64)
    for w, t in zip(weights, tensors):
        if w:
            acc += t.to(torch.float64) * w  # product then sum, each rounded in float64 (no fused multiply-add)
    acc.div_(math.fsum(weights))
    return acc.to(tensors[0].dtype)


def _config_dict(directory: Path) -> dict:
    path = directory / "model_config.yaml"
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: not a readable model_config.yaml ({err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping of litgpt Config fields, got {type(config).__name__}")
    return config


def check_same_model(directories: Sequence[Path]) -> None:
    """Error (one line) unless every ``model_config.yaml`` equals the first one."""
    first = _config_dict(directories[0])
    for directory in directories[1:]:
        other = _config_dict(directory)
        if other != first:
            diff = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
            shown = ", ".join(f"{k}: {first.get(k)!r} vs {other.get(k)!r}" for k in diff[:3])
            raise ValueError(f"{directory}/model_config.yaml differs from {directories[0]}/model_config.yaml "
                             f"({shown}{' ...' if len(diff) > 3 else ''}): only checkpoints of the same model can be "
                             "averaged")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_same_tokenizer(directories: Sequence[Path]) -> None:
    """Error (one line) unless every checkpoint has the same tokenizer files, byte for byte."""
    names = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
    ref = directories[0]
    for directory in directories[1:]:
        for name in names:
            a, b = ref / name, directory / name
            if a.is_file() != b.is_file():
                has, lacks = (ref, directory) if a.is_file() else (directory, ref)
                raise ValueError(f"{lacks} has no {name} but {has} has one: the checkpoints' tokenizers differ")
            if a.is_file() and _digest(a) != _digest(b):
                raise ValueError(f"{b} differs from {a}: checkpoints with different tokenizers cannot be averaged")


def last_checkpoints(run_dir: Path, k: int) -> list[Path]:
    """The last ``k`` periodic LitGPT checkpoints ``run_dir/step-*`` of a run, oldest first."""
    if k < 1:
        raise ValueError(f"last={k} must be >= 1")
    steps = sorted((int(m.group(1)), d) for d in Path(run_dir).iterdir()
                   if (m := _STEP_DIR.match(d.name)) and (d / "lit_model.pth").is_file())
    if len(steps) < k:
        raise ValueError(f"last={k}: {run_dir} has only {len(steps)} step-* checkpoint dirs")
    return [d for _, d in steps[-k:]]


def average_checkpoints(directories: Sequence[Path | str], weights: Sequence[float] | None = None
                        ) -> dict[str, torch.Tensor]:
    """The weighted mean of the ``lit_model.pth`` of LitGPT checkpoint dirs of one model, tensor by tensor.

    Raises:
        ValueError: fewer than two dirs, different configs or tokenizers, keys, shapes or dtypes that differ, or
            bad weights; every message is one line naming the file.
    """
    dirs = [check_checkpoint_dir(d, field="checkpoint_dirs") for d in directories]
    if len(dirs) < 2:
        raise ValueError(f"checkpoint_dirs: give at least two checkpoints to average (got {len(dirs)})")
    weights = normalize_weights(weights, len(dirs))
    check_same_model(dirs)
    check_same_tokenizer(dirs)
    states = [load_state_dict(d / "lit_model.pth", field="checkpoint_dirs") for d in dirs]
    keys = list(states[0])
    for d, state in zip(dirs[1:], states[1:]):
        if set(state) != set(keys):
            missing, extra = sorted(set(keys) - set(state)), sorted(set(state) - set(keys))
            raise ValueError(f"{d}/lit_model.pth has other tensors than {dirs[0]}/lit_model.pth (missing "
                             f"{missing[:3]}, unexpected {extra[:3]})")
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        tensors = [state[key] for state in states]
        for d, t in zip(dirs[1:], tensors[1:]):
            if t.shape != tensors[0].shape or t.dtype != tensors[0].dtype:
                raise ValueError(f"{d}/lit_model.pth: {key} is {tuple(t.shape)} {t.dtype}, but "
                                 f"{tuple(tensors[0].shape)} {tensors[0].dtype} in {dirs[0]}/lit_model.pth")
        if tensors[0].is_floating_point():
            out[key] = weighted_mean(tensors, weights)
        else:
            for d, t in zip(dirs[1:], tensors[1:]):
                if not torch.equal(t, tensors[0]):
                    raise ValueError(f"{d}/lit_model.pth: the non-float tensor {key} differs from "
                                     f"{dirs[0]}/lit_model.pth and cannot be averaged")
            out[key] = tensors[0].clone()
    return out


_OUT_FILES = set(TOKENIZER_FILES) | {"lit_model.pth", "model_config.yaml", "config.yaml", "merge.json"}


def check_out_dir(out_dir: Path, inputs: Sequence[Path]) -> None:
    """Refuse an ``out_dir`` that is one of the inputs or holds anything but a checkpoint (e.g. a whole run)."""
    out = Path(out_dir)
    for d in inputs:
        if out.resolve() == Path(d).resolve():
            raise ValueError(f"out_dir: {str(out)!r} is one of the checkpoints being averaged: write to a new dir")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in _OUT_FILES)
        if other:
            raise ValueError(f"out_dir: {str(out)!r} exists and holds {other[:3]}: it would be replaced; give a new "
                             "dir or an earlier merge's")


def merge_checkpoints(*, checkpoint_dirs: list[Path], out_dir: Path, weights: list[float] | None,
                      last: int | None) -> Path:
    """Average LitGPT checkpoints of the same model (uniformly or weighted) into the LitGPT dir ``out_dir``, written
    atomically with ``merge.json`` (sources and normalised weights) and the ``config.yaml`` the CLI wrote there.

    The arguments are ``litcpt merge``'s (:func:`litcpt.commands.merge.main`: its signature holds their defaults, its
    docstring what each means); every one is given, by name.

    Returns: ``out_dir``.
    """
    if not checkpoint_dirs:
        raise ValueError("checkpoint_dirs: give the LitGPT checkpoint dirs to average (litcpt merge DIR DIR ... "
                         "--out_dir OUT)")
    if last is not None:
        dirs = [d for run in checkpoint_dirs for d in last_checkpoints(Path(run), int(last))]
    else:
        dirs = [Path(d) for d in checkpoint_dirs]
    weights = normalize_weights(weights, len(dirs))
    for d in dirs:
        check_checkpoint_dir(d, field="checkpoint_dirs")
    out_dir = Path(out_dir)
    check_out_dir(out_dir, dirs)
    state = average_checkpoints(dirs, weights)
    total = sum(weights)
    record = {"sources": [str(d.resolve()) for d in dirs], "weights": [w / total for w in weights]}
    config_yaml = out_dir / "config.yaml"  # written by the CLI (the merge's own arguments): kept in the result
    save_litgpt_dir(state, load_config(dirs[0]), out_dir, tokenizer_dir=dirs[0],
                    extra_files=[config_yaml] if config_yaml.is_file() else [], extra_objects={"merge.json": record})
    if os.environ.get("RANK", "0") == "0":
        shown = ", ".join(f"{w / total:.4g}" for w in weights)
        print(f"litcpt merge: {len(dirs)} checkpoints -> {out_dir} (weights {shown})")
    return out_dir
