"""Old names that still work for one release, and the one warning that says so.

:class:`LitcptDeprecationWarning` is a ``DeprecationWarning`` (so ``pytest.warns(DeprecationWarning)`` and
``-W error::DeprecationWarning`` see it), but Python hides ``DeprecationWarning`` outside ``__main__`` by default:
the ``litcpt`` CLI turns this category (and only it) back on, so a recipe with an old key always hears about it.
"""

from __future__ import annotations

import warnings

__all__ = ["LitcptDeprecationWarning", "show_deprecations", "warn_renamed"]


class LitcptDeprecationWarning(DeprecationWarning):
    """A litcpt argument, key or module that was renamed; the old name works until the next release."""


def warn_renamed(owner: str, old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``owner``'s ``old`` is now called ``new`` (``stacklevel`` counts from the caller of this function's
    caller, as for :func:`warnings.warn`)."""
    warnings.warn(f"{owner}: {old} is deprecated, use {new} ({old} was renamed to {new}; the old name works until "
                  "the next release)",
                  LitcptDeprecationWarning, stacklevel=stacklevel)


def show_deprecations() -> None:
    """Show every :class:`LitcptDeprecationWarning` once per place (what the CLI calls at start-up)."""
    warnings.simplefilter("default", LitcptDeprecationWarning)
