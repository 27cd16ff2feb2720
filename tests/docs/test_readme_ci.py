"""The README's Quick-start commands are what CI runs: .ci/run reads them out of README.md, never a copy."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO


def _readme_commands():
    spec = importlib.util.spec_from_file_location("readme_commands", REPO / ".ci" / "readme_commands.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_has_the_two_commands_ci_runs():
    commands = _readme_commands().quick_start_commands((REPO / "README.md").read_text(encoding="utf-8"))
    for name in ("main", "tests"):
        cmd = commands[name]
        # a fresh venv, CPU torch pinned first (a bare torch pulls a CUDA build), then the package
        assert cmd.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && ")
        assert "--upgrade pip" not in cmd and "-U pip" not in cmd  # works with the venv's own pip
    assert commands["main"].endswith("pip install -e . && litcpt demo")
    assert commands["tests"].endswith('pip install -e ".[test]" && python -m pytest -q tests')


def test_ci_runs_the_readme_commands_and_no_copy_of_them():
    run = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 .ci/readme_commands.py main" in run and "python3 .ci/readme_commands.py tests" in run
    assert 'bash -eo pipefail -c "$main_cmd --quick true"' in run
    assert 'bash -eo pipefail -c "$tests_cmd"' in run
    # no parallel install of the package or of torch that could make CI pass while the README fails
    assert not re.search(r"pip install[^\n]*torch", run)
    assert not re.search(r'pip install[^\n]*-e "?\.(\[test\])?"?\s*$', run, flags=re.M)
    assert "--upgrade pip" not in run


def test_extractor_refuses_a_readme_it_cannot_read_unambiguously():
    module = _readme_commands()
    with pytest.raises(ValueError, match="no '## Quick start'"):
        module.quick_start_commands("# title\n")
    three = "## Quick start\n\n```bash\nx && litcpt demo\n```\n\n```bash\ny && pytest\n```\n\n```bash\nz\n```\n"
    with pytest.raises(ValueError, match="exactly two"):
        module.quick_start_commands(three)
    swapped = "## Quick start\n\n```bash\nx && litcpt demo --part all\n```\n\n```bash\ny && pytest\n```\n"
    with pytest.raises(ValueError, match="ending in 'litcpt demo'"):
        module.quick_start_commands(swapped)
    later = "## Quick start\n\n```bash\na && litcpt demo\n```\n```bash\nb && pytest\n```\n## Next\n```bash\nc\n```\n"
    assert module.quick_start_commands(later) == {"main": "a && litcpt demo", "tests": "b && pytest"}


def test_ci_quick_flag_is_a_demo_option():
    proc = subprocess.run([sys.executable, "-m", "litcpt", "demo", "--quick", "true", "--print_config"],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "quick: true" in proc.stdout
