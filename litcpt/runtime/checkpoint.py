"""Read and write checkpoints in LitGPT's layout, atomically.

A LitGPT checkpoint directory holds ``lit_model.pth`` (a state dict of ``litgpt.GPT``, possibly wrapped as
``{"model": state_dict, ...}`` as ``litgpt pretrain`` writes it), ``model_config.yaml`` and the tokenizer files
(``tokenizer.json`` or ``tokenizer.model`` plus ``tokenizer_config.json``). Everything here works on plain state
dicts and paths; gathering a sharded model into one state dict lives in :mod:`litcpt.callbacks.litgpt_checkpoint`.

Files from others are untrusted: every file litcpt reads with ``torch.load`` goes through :func:`load_torch_file`,
which unpickles only tensors and plain data (``weights_only=True``). A file that holds anything else (an object
whose unpickling would run code) is refused in one line naming the file and the type, unless the user trusted it
explicitly by naming it (or a directory above it) in the environment variable ``LITCPT_TRUST_CHECKPOINTS``
(:data:`TRUST_ENV`). The trust is not an argument of a command on purpose: a recipe or a run's ``config.yaml``
(files that travel with checkpoints) cannot switch it on.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from litgpt import Config
from litgpt.utils import copy_config_files, save_config

from litcpt.runtime.atomic import NoSpaceError, fsync_dir, is_no_space, write_atomic

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "generation_config.json",
    "config.json",
)
_STRIP_PREFIXES = ("_orig_mod.", "_forward_module.", "module.")
TRUST_ENV = "LITCPT_TRUST_CHECKPOINTS"
"""Files (or directories above them) whose pickled objects may be loaded, separated by ``os.pathsep``."""


class UntrustedFileError(ValueError):
    """A file holds more than tensors and plain data and was not trusted (:data:`TRUST_ENV`)."""


def is_trusted(path: Path | str) -> bool:
    """Whether ``path`` is, or lies under, a path named in :data:`TRUST_ENV`."""
    entries = [Path(e).resolve() for e in os.environ.get(TRUST_ENV, "").split(os.pathsep) if e.strip()]
    target = Path(path).resolve()
    return any(target == e or e in target.parents for e in entries)


def _unsafe_types(path: Path, err: BaseException) -> str:
    """The types in ``path`` that ``weights_only`` refuses (read without unpickling), for the one-line refusal."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        found = re.findall(r"GLOBAL ([\w.]+)", str(err))
    return ", ".join(sorted(set(found))) or "an object that is not a tensor or plain data"


def load_torch_file(path: Path | str, *, field: str, mmap: bool = True) -> Any:
    """``torch.load`` of ``path`` on CPU with ``weights_only=True``: tensors and plain data only, no code run.

    A file that needs more (a pickled object) raises :class:`UntrustedFileError`, one line naming ``field``, the
    file, the type it tried to load and how to trust it; a trusted file (:func:`is_trusted`) is loaded in full.
    Other errors (a truncated or corrupt file) propagate as ``torch.load`` raises them.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except pickle.UnpicklingError as err:
        if not is_trusted(path):
            raise UntrustedFileError(
                f"{field}: {str(path)!r} holds {_unsafe_types(path, err)}, not only tensors and plain data; loading "
                f"it could run code, so it is refused (if you made this file yourself, trust it: "
                f"{TRUST_ENV}={path})"
            ) from None
    return torch.load(path, map_location="cpu", mmap=mmap, weights_only=False)


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


# What the ``.metadata`` of a torch.distributed.checkpoint (a sharded Lightning checkpoint's directory) holds. torch
# reads it with a plain ``pickle.load``: :func:`check_sharded_metadata` reads it first allowing only these.
_DCP_MODULES = ("torch.distributed.checkpoint.metadata",)
_DCP_GLOBALS = {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch.distributed.checkpoint.planner", "LoadItemType"),
    ("torch.distributed.checkpoint.planner", "WriteItemType"),
    ("torch.serialization", "_get_layout"),
    ("torch", "Size"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"),
    ("collections", "OrderedDict"),
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module in _DCP_MODULES or (module, name) in _DCP_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.memory_format)):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"GLOBAL {module}.{name}")


def check_sharded_metadata(directory: Path, *, field: str) -> None:
    """Refuse (:class:`UntrustedFileError`) a sharded checkpoint whose ``.metadata`` holds more than
    torch.distributed.checkpoint's own metadata types: torch unpickles it without restriction when it loads the
    shards. A trusted directory (:func:`is_trusted`) is not checked."""
    meta = Path(directory) / ".metadata"
    if not meta.is_file() or is_trusted(meta):
        return
    with open(meta, "rb") as fp:
        try:
            _MetadataUnpickler(fp).load()
        except pickle.UnpicklingError as err:
            found = str(err)[len("GLOBAL "):] if str(err).startswith("GLOBAL ") else "an unknown object"
            raise UntrustedFileError(
                f"{field}: {str(meta)!r} holds {found}, not only the metadata of a sharded checkpoint; loading it "
                f"could run code, so it is refused (if you made this checkpoint yourself, trust it: "
                f"{TRUST_ENV}={directory})"
            ) from None
        except Exception as err:
            raise ValueError(f"{field}: {str(meta)!r} cannot be read ({type(err).__name__}: {err})") from None


def load_state_dict(path: Path | str, *, field: str = "checkpoint_dir") -> dict[str, Any]:
    """Load ``lit_model.pth`` (mmap, on CPU, tensors and plain data only: :func:`load_torch_file`) and return a
    clean ``GPT`` state dict."""
    path = Path(path)
    try:
        raw = load_torch_file(path, field=field)
    except UntrustedFileError:
        raise
    except Exception as err:
        raise ValueError(f"{path}: cannot be read as a PyTorch state dict ({type(err).__name__}: {err})") from None
    return clean_state_dict(raw)


def load_weights(
    model: torch.nn.Module, checkpoint_dir: Path | str, *, field: str = "initial_checkpoint_dir", strict: bool = True
) -> None:
    """Load ``checkpoint_dir/lit_model.pth`` into ``model`` with an error naming the mismatching keys/shapes."""
    path = Path(checkpoint_dir) / "lit_model.pth"
    state_dict = load_state_dict(path, field=field)
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
    except Exception as err:
        if not is_no_space(err):
            raise
        written = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()) if tmp.exists() else 0
        raise NoSpaceError(out_dir, written) from None
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
    """Move ``src`` to ``dst``; an existing ``dst`` is moved aside first (``.<name>.old-<hex>``) and removed only
    after the swap. A kill between the two renames leaves no ``dst`` but its intact ``.old-`` copy:
    :func:`restore_replaced_dirs` moves it back on the next start."""
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_MOVED_ASIDE = re.compile(r"^\.(.+)\.old-[0-9a-f]{8}$")


def restore_replaced_dirs(directory: Path | str) -> list[Path]:
    """Put back each checkpoint dir of ``directory`` that a kill inside :func:`_replace_dir` left moved aside (its
    ``.<name>.old-<hex>`` copy is whole; the new ``.tmp-`` one may not be): the newest copy becomes ``<name>`` again.
    Returns the restored dirs. Call before removing stale ``.old-`` / ``.tmp-`` dirs."""
    directory = Path(directory)
    aside: dict[str, list[Path]] = {}
    for child in directory.iterdir() if directory.is_dir() else ():
        match = _MOVED_ASIDE.match(child.name)
        if match and child.is_dir() and not child.is_symlink():
            aside.setdefault(match.group(1), []).append(child)
    restored = []
    for name, copies in aside.items():
        target = directory / name
        if target.exists() or target.is_symlink():
            continue  # the swap finished: the copies are stale
        newest = max(copies, key=lambda path: path.stat().st_mtime_ns)
        os.replace(newest, target)
        restored.append(target)
    if restored:
        fsync_dir(directory)
    return restored


def _fsync_files(directory: Path) -> None:
    """fsync every file in ``directory`` and the directory itself (before it is renamed into place)."""
    for child in directory.iterdir():
        if child.is_file():
            with open(child, "rb") as fp:
                os.fsync(fp.fileno())
    fsync_dir(directory)


def load_lightning_checkpoint(path: str | Path, *, field: str = "checkpoint", mmap: bool = True) -> dict[str, Any]:
    """A Lightning ``.ckpt`` as a dict on CPU, memory-mapped (only what is read is loaded); for a sharded checkpoint
    directory, its ``meta.pt`` (and its ``.metadata`` checked: :func:`check_sharded_metadata`). Read with
    :func:`load_torch_file` (tensors and plain data only, unless trusted): litcpt's own checkpoints hold nothing
    else. Anything that is not a readable Lightning checkpoint is a one-line ``ValueError`` naming ``field`` and the
    file."""
    path = Path(path)
    target = path / "meta.pt" if path.is_dir() else path
    if path.is_dir():
        check_sharded_metadata(path, field=field)
    try:
        ckpt = load_torch_file(target, field=field, mmap=mmap and target.name != "meta.pt")
    except UntrustedFileError:
        raise
    except Exception as err:
        raise ValueError(
            f"{field}: {str(path)!r} cannot be read as a Lightning checkpoint "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    if not isinstance(ckpt, dict) or "global_step" not in ckpt:
        raise ValueError(f"{field}: {str(path)!r} is not a Lightning checkpoint (no global_step)")
    return ckpt
