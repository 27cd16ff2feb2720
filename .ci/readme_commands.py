"""Print one of the README's two set-up commands, exactly as written, for .ci/run to execute.

The README's "## Quick start" section holds exactly two fenced ``bash`` blocks of one line each: the main job
(install, then ``litcpt demo``) and the tests (install with the test extra, then pytest). CI runs these very lines,
so the README cannot drift from what CI proves. Standard library only: it runs before any venv exists.

    python3 .ci/readme_commands.py main    # the main-job command
    python3 .ci/readme_commands.py tests   # the test command
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Quick start"


def quick_start_commands(text: str) -> dict[str, str]:
    """``{"main": ..., "tests": ...}`` from the Quick start section; ``ValueError`` if it is not as described."""
    start = text.find(SECTION)
    if start < 0:
        raise ValueError(f"README.md has no {SECTION!r} section")
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end >= 0 else len(text)]
    blocks = [b.strip() for b in re.findall(r"^```bash\n(.*?)^```", section, flags=re.S | re.M)]
    if len(blocks) != 2 or any("\n" in b for b in blocks):
        raise ValueError(f"README.md {SECTION!r}: expected exactly two one-line ```bash blocks, found {blocks!r}")
    main = [b for b in blocks if b.endswith("litcpt demo")]
    tests = [b for b in blocks if "pytest" in b]
    if len(main) != 1 or len(tests) != 1 or main == tests:
        raise ValueError(f"README.md {SECTION!r}: expected one block ending in 'litcpt demo' and one running pytest, "
                         f"found {blocks!r}")
    return {"main": main[0], "tests": tests[0]}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("main", "tests"):
        print("usage: python3 .ci/readme_commands.py main|tests", file=sys.stderr)
        return 2
    try:
        print(quick_start_commands(README.read_text(encoding="utf-8"))[argv[0]])
    except ValueError as err:
        print(f"readme_commands: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
