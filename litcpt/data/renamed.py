"""Old argument names of the data modules, accepted for one release with a ``DeprecationWarning``.

Preference and Listwise data modules use TextFiles' (and litgpt's) vocabulary: ``train_data_path``,
``val_data_path``, ``val_split_fraction``; their former ``train_path``, ``test_path`` and ``test_split_fraction`` stay
dataclass fields (so recipes and ``--data.train_path`` still parse) that :func:`take_renamed` moves to the new names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from litcpt.deprecation import warn_renamed

__all__ = ["RENAMED", "take_renamed"]

RENAMED = {"train_path": "train_data_path", "test_path": "val_data_path", "test_split_fraction": "val_split_fraction"}
"""Old name -> new name."""


def take_renamed(obj: Any, renamed: dict[str, str] = RENAMED) -> None:
    """Move each old-name field of the dataclass ``obj`` that was set (not ``None``) to its new name, with a
    ``DeprecationWarning``; a one-line ``ValueError`` when both names are set."""
    defaults = {f.name: f.default for f in dataclasses.fields(obj)}
    cls = type(obj).__name__
    for old, new in renamed.items():
        value = getattr(obj, old)
        if value is None:
            continue
        if getattr(obj, new) != defaults[new]:
            raise ValueError(f"{cls}: {old} is the deprecated name of {new}; give only {new}")
        warn_renamed(cls, old, new, stacklevel=5)
        setattr(obj, new, value)
        setattr(obj, old, None)
