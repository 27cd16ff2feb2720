"""Fixtures shared by the tests of ``litcpt.runtime``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO

PREVIOUS_MAIN = Path(__file__).resolve().parents[1] / "fixtures" / "previous_main"
"""Runs and checkpoints made by the code of an earlier main (``tests/fixtures/make_previous_checkpoints.py``)."""


@pytest.fixture
def old(tmp_path: Path, monkeypatch) -> Path:
    """A copy of :data:`PREVIOUS_MAIN` (never written in place), with the repository root as working directory and
    no file trusted (``LITCPT_TRUST_CHECKPOINTS`` unset); tokens come from the session's cache."""
    copy = tmp_path / "previous_main"
    shutil.copytree(PREVIOUS_MAIN, copy)
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("LITCPT_TRUST_CHECKPOINTS", raising=False)
    return copy
