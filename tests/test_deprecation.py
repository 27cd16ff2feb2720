"""One deprecation warning for every renamed litcpt name, visible to CLI users."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from litcpt.deprecation import LitcptDeprecationWarning, warn_renamed


def _old_api():
    warn_renamed("Thing", "old", "new", stacklevel=3)


def test_warning_is_a_deprecation_warning_pointing_at_the_user_code():
    with pytest.warns(DeprecationWarning, match=r"Thing: old is deprecated, use new") as record:
        _old_api()
    assert record[0].category is LitcptDeprecationWarning
    assert record[0].filename == __file__


def test_python_hides_it_by_default_and_show_deprecations_shows_only_litcpt_ones():
    code = ("import warnings\n"
            "from litcpt.deprecation import warn_renamed, show_deprecations\n"
            "def f(): warn_renamed('T', 'a', 'b', stacklevel=3)\n"
            "def g(): warnings.warn('other', DeprecationWarning, stacklevel=2)\n"
            "import sys\n"
            "if sys.argv[1] == 'show': show_deprecations()\n"
            "exec('f(); g()', {'f': f, 'g': g, '__name__': 'user_module'})\n")
    hidden = subprocess.run([sys.executable, "-c", code, "hide"], capture_output=True, text=True)
    shown = subprocess.run([sys.executable, "-c", code, "show"], capture_output=True, text=True)
    assert "T: a is deprecated" not in hidden.stderr
    assert "T: a is deprecated, use b" in shown.stderr and "other" not in shown.stderr, shown.stderr


def test_renamed_arguments_use_it():
    from litcpt.models.reward import resolve_loss_type

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert resolve_loss_type("bradley_terry", "logistic") == "logistic"
    assert [w.category for w in record] == [LitcptDeprecationWarning]


def test_the_cli_turns_them_on(monkeypatch, capsys):
    from litcpt import cli

    monkeypatch.setattr(warnings, "filters", [f for f in warnings.filters if f[2] is not LitcptDeprecationWarning])
    with pytest.raises(SystemExit):
        cli.main(["merge", "--help"])
    capsys.readouterr()
    assert any(f[0] == "default" and f[2] is LitcptDeprecationWarning for f in warnings.filters)
