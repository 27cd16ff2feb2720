"""Every command in a fenced ``bash`` block of README.md and docs/*.md works, so a page cannot drift from the code.

Each command line (continuations joined, comments dropped) is handled one of three ways:

* **run**: the commands listed in ``RUN`` run in this process (:func:`tests.helpers.run_litcpt`), one after the
  other in the order of the pages, in a scratch directory that looks like the repository root (``recipes``,
  ``litcpt``, ``tests`` linked in; ``out/`` and the user's own files, ``FILES``, made there). Training commands get
  ``SHRINK`` appended, the agreed override: two optimizer steps and one validation batch; ``rewardbench`` gets
  ``--limit 16``.
* **parse**: every other ``litcpt`` command (also one started by ``torchrun``/``srun``) is read by that command's own
  parser (jsonargparse, built once per command, as ``litcpt`` builds it) and its classes made (``class_path``
  blocks, callbacks): every key, value and recipe file it names must exist and type-check. Paths are not opened: a
  GPU recipe or a checkpoint from the hub is checked without downloading anything.
* **skip**: what is not a litcpt command, for the reason given in ``SKIPPED`` (installs that CI runs, LitGPT's own
  CLI, benchmarks, the suite itself). A command no rule covers fails the test: a new one gets a rule.

Commands that must wait for others (``out/tiny/pretrain/final`` before ``dpo``) come later in the pages, so the runs'
order is the pages' order (README.md first).
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO, run_litcpt

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHRINK = ("--train.max_steps", "2", "--eval.max_iters", "1")
"""The agreed override of a training command run from the docs: two optimizer steps, one validation batch."""
TRAINING = {"pretrain", "reward", "dpo"}

RUN = {
    # the README's first training run: out/tiny/pretrain/final, the backbone every tiny reward/DPO recipe starts from
    "litcpt pretrain --config recipes/tiny/pretrain.yaml --train.max_tokens 2e5",
    # the DPO chain of docs/dpo.md: a policy, then its RewardBench accuracy
    "litcpt dpo --config recipes/tiny/dpo.yaml",
    "litcpt rewardbench --checkpoint_dir out/tiny/dpo/final --data litcpt/assets/data/preference/"
    "hh-rlhf-harmless-base.jsonl.gz --limit 200 --plot true",
    # reward models (docs/reward-models.md): train, then score the user's pairs
    "litcpt reward --config recipes/tiny/reward.yaml",
    "litcpt score --checkpoint_dir out/tiny/reward/final --data pairs.jsonl",
}
"""The commands run for real (shrunk): the ones whose output a later command reads, and one of each other kind.
docs/distributed.md's 7B ``--dry_run true`` runs in tests/training/test_dry_run.py (in a process of its own, to
measure its memory); ``--help`` and ``--print_config`` print and exit while parsing; ``plot-schedule`` is parsed
(its drawing: tests/schedules/test_plot_schedule.py)."""

FILES = {
    "pairs.jsonl": "litcpt/assets/data/preference/hh-rlhf-harmless-base.jsonl.gz",
}
"""The user's own files the docs name, made in the scratch directory from bundled data (first 16 rows)."""

SKIPPED = {
    "python3 -m venv": "the README's installs: CI runs these two lines verbatim in fresh venvs (.ci/run)",
    "pip install trl": "an install into the user's environment (checked in a throwaway venv: docs/dpo.md)",
    "python -m pytest": "the test suite itself (docs/testing.md)",
    "OMP_NUM_THREADS=1 python -m pytest": "the test suite itself (docs/testing.md)",
    "python benchmarks/": "a benchmark: minutes of timing, run by hand (docs/benchmarks.md)",
    "PYTHONPATH=. python benchmarks/": "a benchmark: minutes of timing, run by hand (docs/benchmarks.md)",
    "for i in": "timing loops of the cold start, measured by hand (docs/benchmarks.md)",
    "LITCPT_NO_CLI_CACHE=1": "a timing of the real parser, measured by hand (docs/benchmarks.md)",
    "litgpt ": "LitGPT's own CLI (downloads from the hub, or reads litcpt's output: tests/training/test_interop.py)",
    "ls ": "shows what the command above it wrote",
    "python -m openrlhf": "another project's trainer, not installed here; what it loads "
    "(AutoModelForSequenceClassification) is tested in tests/hf/test_hf_consumers.py",
    "vllm serve": "another project's server, not installed here; the exported directory's transformers "
    "loading is tested in tests/hf",
    "rewardbench --model": "the official RewardBench CLI, not installed here; its transformers pipeline "
    "path is tested in tests/hf/test_hf_consumers.py",
    "python scripts/run_rm.py": "the official RewardBench script (another repository); its transformers "
    "pipeline path is tested in tests/hf/test_hf_consumers.py",
}
"""Lines that are not litcpt commands, by how they start, and why this test leaves them alone."""


@dataclass(frozen=True)
class DocCommand:
    page: str
    line: int
    text: str  # continuations joined, comment dropped, spaces collapsed

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)

    def litcpt_args(self) -> list[str] | None:
        """The arguments after ``litcpt`` (or ``python -m litcpt``, or a launcher's ``$(which litcpt)``)."""
        words = self.argv
        for i, word in enumerate(words):
            if word in ("litcpt", "$(which"):
                rest = words[i + 1:]
                return rest[1:] if word == "$(which" else rest
            if words[i:i + 3] == ["python", "-m", "litcpt"]:
                return words[i + 3:]
        return None

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def doc_commands(pages=PAGES, root: Path = REPO) -> list[DocCommand]:
    """The command lines of the fenced ``bash`` blocks of ``pages`` (named relative to ``root``), in order."""
    found = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for block in re.finditer(r"^```(?:bash|sh|shell)\n(.*?)^```", text, flags=re.S | re.M):
            first = text[:block.start(1)].count("\n") + 1
            pending, start = "", None
            for offset, line in enumerate(block.group(1).splitlines()):
                if start is None:
                    start = first + offset
                pending += line.rstrip()
                if pending.endswith("\\"):
                    pending = pending[:-1] + " "
                    continue
                words = shlex.split(pending, comments=True)
                if words:
                    found.append(DocCommand(str(page.relative_to(root)), start, " ".join(_quoted(words))))
                pending, start = "", None
    return found


def _quoted(words: list[str]) -> list[str]:
    return [shlex.quote(w) if w != "$(which" and w != "litcpt)" else w for w in words]


def _skip_reason(command: DocCommand) -> str | None:
    return next((why for start, why in SKIPPED.items() if command.text.startswith(start)), None)


def _workspace(tmp: Path) -> Path:
    import gzip

    for name in ("recipes", "litcpt", "tests"):
        (tmp / name).symlink_to(REPO / name)
    (tmp / "docs" / "img").mkdir(parents=True)  # commands that draw into docs/img write here, not into the repo
    for name, source in FILES.items():
        with gzip.open(REPO / source, "rt", encoding="utf-8") as rows:
            (tmp / name).write_text("".join(next(rows) for _ in range(16)), encoding="utf-8")
    return tmp


def test_every_command_has_a_rule_and_the_lists_name_only_doc_commands():
    commands = doc_commands()
    texts = {c.text for c in commands}
    assert len(commands) > 50, "the extractor found too few commands"
    assert not RUN - texts, f"RUN names commands no page has any more: {sorted(RUN - texts)}"
    assert all(any(t.startswith(start) for t in texts) for start in SKIPPED), "a SKIPPED rule matches no command"
    orphans = [str(c) for c in commands if _skip_reason(c) is None and c.litcpt_args() is None]
    assert not orphans, "doc commands with no rule (run, parse or skip):\n" + "\n".join(orphans)


def test_the_extractor_joins_continuations_and_drops_comments(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\n# a comment\nlitcpt pretrain --config a.yaml \\\n  --out_dir 'o p'   # trailing\n```\n"
                    "```python\nlitcpt dpo\n```\n", encoding="utf-8")
    [command] = doc_commands([page], root=tmp_path)
    assert command.text == "litcpt pretrain --config a.yaml --out_dir 'o p'" and command.line == 3
    assert command.litcpt_args() == ["pretrain", "--config", "a.yaml", "--out_dir", "o p"]


class _Parsers:
    """Each command's parser, built once (as ``litcpt`` builds it), reading arguments as ``litcpt`` reads them."""

    def __init__(self):
        self.parsers = {}

    def check(self, args: list[str]) -> None:
        import sys

        from litcpt.cli.main import _positional_to_flags
        from litcpt.cli.parser import COMMANDS, build_parser, load_command

        command, rest = args[0].replace("_", "-"), args[1:]
        assert command in COMMANDS, f"unknown command {args[0]!r}"
        function = load_command(COMMANDS[command])
        positional = getattr(sys.modules[function.__module__], "cli_positional", None)
        if positional:
            rest = _positional_to_flags(rest, positional)
        if command not in self.parsers:  # as `litcpt` builds it for a run: no help texts
            self.parsers[command] = build_parser(command, function, help_texts=False)
        parser = self.parsers[command]
        try:
            parser.instantiate_classes(parser.parse_args(rest))
        except SystemExit as done:  # --print_config prints the resolved recipe and exits 0
            if done.code not in (0, None):
                raise


def _shrunk(args: list[str]) -> list[str]:
    extra = SHRINK if args[0] in TRAINING and "--dry_run" not in args else ()
    return [*args, *extra, *(("--limit", "16") if args[0] == "rewardbench" else ())]


def _check_each(commands, check) -> None:
    """``check(command)`` for each command; fails with every failing command and its page and line."""
    failures, timings = [], []
    for command in commands:
        started = time.perf_counter()
        try:
            check(command)
        except BaseException as err:  # a parser error is a SystemExit: report each failure with its line
            failures.append(f"{command}\n    {type(err).__name__}: {str(err).strip()[-800:]}")
        timings.append((time.perf_counter() - started, command.text[:90]))
    print("\n".join(f"{seconds:6.1f} s  {text}" for seconds, text in sorted(timings, reverse=True)[:10]))
    assert not failures, "doc commands that fail:\n" + "\n".join(failures)


def _litcpt_commands(*, run: bool) -> list[DocCommand]:
    """The litcpt commands of the pages that ``RUN`` lists (each once: a later page repeating one reads the same
    output) or, ``run=False``, the others."""
    chosen, seen = [], set()
    for command in doc_commands():
        if command.litcpt_args() is None or _skip_reason(command) or (command.text in RUN) != run:
            continue
        if command.text not in seen:
            chosen.append(command)
        seen.add(command.text)
    return chosen


@pytest.mark.slow
def test_doc_commands_run(tmp_path):
    """The commands of ``RUN``, shrunk by ``SHRINK``, one after the other in the pages' order."""
    workspace = _workspace(tmp_path)
    _check_each(_litcpt_commands(run=True), lambda c: run_litcpt(*_shrunk(c.litcpt_args()), cwd=workspace))


@pytest.mark.slow
def test_doc_commands_parse(tmp_path, monkeypatch):
    """Every other litcpt command of the docs, read by its command's parser (``--help``: answered by ``litcpt``)."""
    workspace = _workspace(tmp_path)
    monkeypatch.chdir(workspace)
    parsers = _Parsers()

    def check(command: DocCommand) -> None:
        args = command.litcpt_args()
        if "--help" in args or "-h" in args:
            run_litcpt(*args, cwd=workspace)
        else:
            parsers.check(args)

    _check_each(_litcpt_commands(run=False), check)
