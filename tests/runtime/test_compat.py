"""litcpt refuses, at import and in one line, litgpt/lightning versions whose private APIs it was not tested with."""

from __future__ import annotations

import subprocess
import sys

import pytest

from litcpt import _compat
from tests.helpers import REPO, patience


def test_installed_versions_are_supported():
    assert _compat.unsupported(_compat.installed_versions()) == []


@pytest.mark.parametrize("versions, bad", [
    ({"litgpt": "0.6.0", "lightning": "2.6.6"}, "litgpt 0.6.0"),
    ({"litgpt": "0.6.0rc1", "lightning": "2.6.6"}, "litgpt 0.6.0rc1"),
    ({"litgpt": "0.5.12", "lightning": "2.6.6"}, "litgpt 0.5.12"),
    ({"litgpt": "0.5.13", "lightning": "2.7.0"}, "lightning 2.7.0"),
    ({"litgpt": "0.5.13", "lightning": "2.5.9"}, "lightning 2.5.9"),
])
def test_untested_versions_are_refused_in_one_line(versions, bad):
    with pytest.raises(ImportError) as info:
        _compat.check_versions(versions)
    message = str(info.value)
    assert bad in message and "\n" not in message
    assert "pip install '" in message and "LITCPT_SKIP_VERSION_CHECK" in message


@pytest.mark.parametrize("versions", [
    {"litgpt": "0.5.13", "lightning": "2.6.0"},
    {"litgpt": "0.5.99.post1", "lightning": "2.6.6+local"},
    {"litgpt": "0.5.13", "lightning": "2.6.0rc1"},
])
def test_tested_range_is_accepted(versions):
    _compat.check_versions(versions)


def test_missing_package_is_named():
    with pytest.raises(ImportError, match="litgpt>=0.5.13,<0.6, which is not installed"):
        _compat.check_versions({"litgpt": None, "lightning": "2.6.6"})


def test_escape_hatch(monkeypatch):
    monkeypatch.setenv("LITCPT_SKIP_VERSION_CHECK", "1")
    _compat.check_versions({"litgpt": "9.9", "lightning": "9.9"})


def test_import_litcpt_fails_with_the_message(tmp_path):
    """A fake litgpt 0.6.0 distribution first on the path: `import litcpt` stops with the one-line ImportError."""
    dist = tmp_path / "litgpt-0.6.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: litgpt\nVersion: 0.6.0\n")
    code = "import litcpt"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=patience(120),
                          env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: litcpt is tested with litgpt>=0.5.13,<0.6 but found litgpt 0.6.0")


def test_pyproject_bounds_match_the_check():
    text = (REPO / "pyproject.toml").read_text()
    for dist, (low, high, _) in _compat.SUPPORTED.items():
        assert f'"{dist}>={low},<{high}"' in text
