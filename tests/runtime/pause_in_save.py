"""Run ``litcpt`` with its N-th ``.ckpt`` save paused after the temporary file is written, just before the rename
into place, so that a test can kill the process in the middle of a save.

Usage: ``python tests/runtime/pause_in_save.py MARKER N <litcpt arguments>``; ``MARKER`` is written when the pause
begins.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

marker, nth, args = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
real_replace = os.replace
saves = 0


def paused_replace(src, dst, *a, **kw):
    global saves
    if str(dst).endswith(".ckpt"):
        saves += 1
        if saves == nth:
            marker.write_text(f"{src} -> {dst}\n")
            time.sleep(600)
    return real_replace(src, dst, *a, **kw)


os.replace = paused_replace
from litcpt.cli.main import main  # noqa: E402

main(args)
