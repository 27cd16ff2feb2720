"""Run ``litcpt.cli.main.main`` and record where this process replaced files (``os.replace`` targets, i.e. every atomic
write litcpt and its checkpoints make): one line per write in ``$LITCPT_TRACE_DIR/writes-<pid>.txt``.

Used by tests/runtime/test_launchers.py as the program that srun / torchrun start, to check that files are written once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    trace = Path(os.environ["LITCPT_TRACE_DIR"]) / f"writes-{os.getpid()}.txt"
    trace.parent.mkdir(parents=True, exist_ok=True)
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        with open(trace, "a", encoding="utf-8") as fp:
            fp.write(f"{os.path.abspath(dst)}\n")
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace
    from litcpt.cli.main import main as cli_main

    cli_main(sys.argv[1:])


if __name__ == "__main__":
    main()
