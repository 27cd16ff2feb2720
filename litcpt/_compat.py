"""Refuse, at import, versions of the libraries whose private APIs litcpt relies on but has not been tested with.

litcpt reaches below the public API of litgpt and Lightning (every such use is a wrapper in :mod:`litcpt._private`,
tested in ``tests/test_private_api.py``), so a new release of either can break it:

- **litgpt**: the KV-cache protocol (``litgpt.model.KVCache``) and the attention call signature of litgpt 0.5;
- **lightning**: private hooks and attributes of ``ThroughputMonitor``, ``WeightAveraging``, ``FSDPStrategy``, the
  logger connector and the fit loop.

The ranges below are the ones the test suite runs on (they mirror ``pyproject.toml``). Set
``LITCPT_SKIP_VERSION_CHECK=1`` to import anyway, at your own risk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import metadata

# distribution -> (lowest tested version, first untested version, what litcpt uses of it)
SUPPORTED: dict[str, tuple[str, str, str]] = {
    "litgpt": ("0.5.13", "0.6", "litgpt.model.KVCache and the block.attn call signature"),
    "lightning": ("2.6", "2.7", "FSDP's private activation-checkpointing helpers"),
}


def _release(version: str) -> tuple[int, ...]:
    """``"0.6.0rc1"`` -> ``(0, 6, 0)``: pre-releases of a version count as that version."""
    from packaging.version import Version

    return Version(version).release


def unsupported(versions: Mapping[str, str | None]) -> list[str]:
    """One-line messages for each installed version outside its tested range (``None`` = not installed)."""
    problems = []
    for dist, (low, high, uses) in SUPPORTED.items():
        found = versions.get(dist)
        if found is None:
            problems.append(f"litcpt needs {dist}>={low},<{high}, which is not installed: "
                            f"pip install '{dist}>={low},<{high}'")
            continue
        if not (_release(low) <= _release(found) < _release(high)):
            problems.append(f"litcpt is tested with {dist}>={low},<{high} but found {dist} {found} (litcpt uses "
                            f"{uses}): pip install '{dist}>={low},<{high}', or set LITCPT_SKIP_VERSION_CHECK=1 "
                            "to import anyway")
    return problems


def installed_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in SUPPORTED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def check_versions(versions: Mapping[str, str | None] | None = None) -> None:
    """Raise ``ImportError`` with a one-line message if a dependency is outside its tested range."""
    if os.environ.get("LITCPT_SKIP_VERSION_CHECK", "").strip() not in ("", "0"):
        return
    problems = unsupported(installed_versions() if versions is None else versions)
    if problems:
        raise ImportError("; ".join(problems))
