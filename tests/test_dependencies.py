"""Every upper bound on a dependency in pyproject.toml is litgpt's own or has its reason here: litcpt caps nothing
else, so it installs beside TRL and newer ``datasets`` releases (docs/dpo.md, "Installing beside TRL")."""

from __future__ import annotations

import importlib.metadata

import pytest
from packaging.requirements import Requirement

from tests.helpers import REPO

OWN_UPPER_BOUNDS = {
    "lightning": "litcpt uses private Lightning APIs (litcpt/_private.py); litcpt/_compat.py refuses other versions",
    "litgpt": "litcpt uses private LitGPT APIs (litcpt/_private.py); litcpt/_compat.py refuses other versions",
}


def _upper(requirement: Requirement) -> set[str]:
    return {str(s) for s in requirement.specifier if s.operator in ("<", "<=", "==", "~=", "===")}


def test_every_upper_bound_is_litgpts_or_has_a_reason():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    litgpt = {}
    for line in importlib.metadata.requires("litgpt") or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):  # what `pip install litgpt` gets
            litgpt[requirement.name.lower()] = _upper(requirement)
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name, upper = requirement.name.lower(), _upper(requirement)
        if not upper or name in OWN_UPPER_BOUNDS:
            continue
        assert upper <= litgpt.get(name, set()), (
            f"pyproject.toml caps {name} ({', '.join(sorted(upper))}), which litgpt does not: widen it to what the "
            f"tests pass on, or give the reason in OWN_UPPER_BOUNDS")
