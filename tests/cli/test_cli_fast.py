"""`litcpt <command> --help`, `--print_config` alone, unknown keys and plainly wrong simple values are answered
without importing torch, Lightning or LitGPT: from the answers shipped in litcpt/assets/cli (even on a fresh install,
with no per-user cache), else from the per-user cache; neither ever serves stale answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO

# Runs main() once per argument list (JSON in argv[1]) and reports each exit code, then which heavy modules were
# imported. PROBE_NO_SHIPPED=1 hides the shipped answers (as when the sources changed since they were made).
PROBE = """
import json, os, sys, time
from pathlib import Path
t0 = time.perf_counter()
from litcpt.cli import help_cache as cli_cache
from litcpt.cli.main import main
if "PROBE_NO_SHIPPED" in os.environ:
    cli_cache.SHIPPED_DIR = Path("/nonexistent")
codes = []
for args in json.loads(sys.argv[1]):
    try:
        main(args)
    except SystemExit as exit_:
        codes.append(exit_.code)
    sys.stdout.write("\\0")
heavy = sorted(m for m in ("torch", "lightning", "litgpt") if m in sys.modules)
print(f"PROBE codes={codes} heavy={heavy} seconds={time.perf_counter() - t0:.3f}", file=sys.stderr)
"""


def _probe(tmp_path, *arg_lists, shipped=True, columns="100"):
    env = {**os.environ, "PYTHONPATH": str(REPO), "LITCPT_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": columns}
    env.pop("LITCPT_NO_CLI_CACHE", None)
    if not shipped:
        env["PROBE_NO_SHIPPED"] = "1"
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(arg_lists)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    return proc, proc.stdout.split("\0")[:-1]


def _shipped(command):
    return json.loads((REPO / "litcpt/assets/cli" / f"{command}.json").read_text(encoding="utf-8"))


def test_shipped_answers_are_made_from_these_sources():
    from litcpt.cli import help_cache as cli_cache
    from litcpt.cli.parser import COMMANDS

    stale = cli_cache.stale_keys()
    assert not stale, f"litcpt/assets/cli is stale for {stale}: run `{cli_cache.REGENERATE}` and commit the files"
    assert sorted(p.stem for p in cli_cache.SHIPPED_DIR.glob("*.json")) == sorted(COMMANDS)


def test_first_call_on_a_fresh_install_answers_from_the_shipped_answers(tmp_path):
    from litcpt.cli.parser import COMMANDS

    helps = [[command, "--help"] for command in COMMANDS]
    proc, outs = _probe(tmp_path, *helps, ["pretrain", "--print_config"], ["pretrain", "--train.max_tokns", "5"],
                        ["pretrain", "--train.max_steps", "abc"], ["report", "out/a", "-h"], columns="60")
    assert f"PROBE codes={[0] * (len(COMMANDS) + 1) + [2, 2, 0]} heavy=[]" in proc.stderr, proc.stderr[-2000:]
    for command, out in zip(COMMANDS, outs):
        assert out == _shipped(command)["help"] and f"usage: litcpt {command}" in out
    assert outs[len(COMMANDS)] == _shipped("pretrain")["print_config"] and "max_tokens: 1000000" in outs[-4]
    assert "error: unknown key '--train.max_tokns' (did you mean '--train.max_tokens'?)" in proc.stderr
    assert "error: train.max_steps: expected int or null, got 'abc'" in proc.stderr
    assert outs[-1] == _shipped("report")["help"]
    assert not (tmp_path / "cache").exists()  # nothing was built, so nothing was cached per user

    env = {**os.environ, "PYTHONPATH": str(REPO), "LITCPT_CACHE_DIR": str(tmp_path / "fresh")}
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "litcpt", "pretrain", "--help"], capture_output=True, text=True,
                         env=env, timeout=600)
    seconds = time.perf_counter() - start
    assert run.returncode == 0 and run.stdout == _shipped("pretrain")["help"]
    print(f"cold `python -m litcpt pretrain --help` (fresh LITCPT_CACHE_DIR): {seconds:.2f} s wall")


def test_help_and_unknown_keys_come_from_the_user_cache_when_the_shipped_answers_are_stale(tmp_path):
    first, (help_first,) = _probe(tmp_path, ["pretrain", "--help"], shipped=False)  # builds the parser, caches it
    assert "PROBE codes=[0] heavy=['lightning', 'litgpt', 'torch']" in first.stderr, first.stderr[-2000:]
    assert "--train.max_tokens" in help_first
    second, outs = _probe(tmp_path, ["pretrain", "--help"], ["pretrain", "--train.max_tokns", "5"],
                          ["pretrain", "--train.max_steps", "abc"], ["pretrain", "--print_config"], shipped=False)
    assert "PROBE codes=[0, 2, 2, 0] heavy=[]" in second.stderr, second.stderr[-2000:]
    assert outs[0] == help_first == _shipped("pretrain")["help"]  # the same text as shipped: fixed width
    assert outs[3] == _shipped("pretrain")["print_config"]
    line = [ln for ln in second.stderr.splitlines() if "unknown key" in ln][0]
    assert "unknown key '--train.max_tokns' (did you mean '--train.max_tokens'?)" in line
    assert "train.max_steps: expected int or null, got 'abc'" in second.stderr

    # keys below options that take nested keys are left to the real parser (it knows the classes)
    from litcpt.cli.help_cache import bad_value, unknown_key

    (entry_file,) = (tmp_path / "cache" / "cli").glob("pretrain-*.json")
    entry = json.loads(entry_file.read_text())
    deep = ["--lr_schedule", "litcpt.callbacks.WarmupCosineLR", "--lr_schedule.init_args.warmup", "1.5",
            "--data.init_args.fraction", "2", "--model_config.n_layer", "2", "--optimizer.init_args.lr", "x"]
    assert unknown_key(deep, entry) is None and bad_value(deep, entry) is None


def test_keys_follow_the_source_content_not_mtimes(tmp_path):
    from litcpt.cli import help_cache as cli_cache

    package = tmp_path / "litcpt"
    (package / "commands").mkdir(parents=True)
    (package / "cli.py").write_text("x = 1\n")
    (package / "commands" / "a.py").write_text("def a(n: int = 1): ...\n")
    (package / "notes.txt").write_text("not a source")
    before = cli_cache.source_digest(package)
    os.utime(package / "cli.py", ns=(1, 1))
    (package / "notes.txt").write_text("changed")
    assert cli_cache.source_digest(package) == before
    (package / "cli.py").write_text("x = 1\r\n")  # a Windows checkout of the same file
    assert cli_cache.source_digest(package) == before
    (package / "commands" / "a.py").write_text("def a(n: int = 2): ...\n")
    assert cli_cache.source_digest(package) != before
    (package / "commands" / "a.py").write_text("def a(n: int = 1): ...\n")
    (package / "commands" / "b.py").write_text("")
    assert cli_cache.source_digest(package) != before
    assert cli_cache.fingerprint("dpo") != cli_cache.fingerprint("pretrain")


def test_help_is_the_same_in_every_terminal(monkeypatch):
    from litcpt.cli.parser import HELP_WIDTH, build_parser

    def command(lengthy_option_name: int = 1, other: str = "x"):
        pass

    command.__doc__ = "A command with a long description: " + "word " * 60

    texts = []
    for columns in ("40", "100", "250"):
        monkeypatch.setenv("COLUMNS", columns)
        texts.append(build_parser("x", command).format_help())
    assert texts[0] == texts[1] == texts[2]
    assert max(len(line) for line in texts[0].splitlines()) <= HELP_WIDTH < len("word " * 60)


def test_stale_shipped_answers_are_not_served(tmp_path, monkeypatch):
    from litcpt.cli import help_cache as cli_cache

    shipped = dict(_shipped("pretrain"))
    monkeypatch.setattr(cli_cache, "SHIPPED_DIR", tmp_path)
    monkeypatch.setenv("LITCPT_CACHE_DIR", str(tmp_path / "user"))
    (tmp_path / "pretrain.json").write_text(json.dumps(shipped))
    assert cli_cache.load("pretrain")["help"] == shipped["help"]
    (tmp_path / "pretrain.json").write_text(json.dumps({**shipped, "versions": {"torch": "0.1"}}))
    entry = cli_cache.load("pretrain")  # other torch: AdamW's defaults may differ, the rest is still right
    assert entry["help"] == shipped["help"] and entry["print_config"] is None
    (tmp_path / "pretrain.json").write_text(json.dumps({**shipped, "key": "0" * 24}))
    assert cli_cache.load("pretrain") is None
    (tmp_path / "pretrain.json").write_text(json.dumps(shipped))
    monkeypatch.setenv("LITCPT_NO_CLI_CACHE", "1")
    assert cli_cache.load("pretrain") is None


@pytest.mark.slow
def test_shipped_answers_are_what_a_fresh_parser_says(tmp_path):
    """Regenerating from another directory and terminal width gives the shipped files (deterministic: no paths, no
    terminal width, no machine-dependent defaults)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "60"}
    proc = subprocess.run([sys.executable, "-m", "litcpt.cli.help_cache", "--check", "pretrain", "report"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for command in ("pretrain", "report"):
        text = json.dumps(_shipped(command))
        assert str(REPO) not in text and str(tmp_path) not in text and os.path.expanduser("~") not in text


def test_simple_values_are_checked_from_the_cache_and_doubt_is_left_to_the_parser():
    from typing import Literal

    from litcpt.cli.help_cache import bad_value, simple_kind

    assert simple_kind(int | None) == {"types": ["int", "null"], "choices": []}
    assert simple_kind(Literal["auto", "ddp"]) == {"types": [], "choices": ["auto", "ddp"]}
    assert simple_kind(int | str) is None  # anything goes for a str member: nothing to check here
    entry = {"kinds": {"--train.max_steps": simple_kind(int | None), "--train.compile": simple_kind(bool),
                       "--strategy": simple_kind(Literal["auto", "ddp"]),
                       "--train.max_tokens": simple_kind(int | float | None)}}
    assert bad_value(["--train.max_steps", "abc"], entry) == "train.max_steps: expected int or null, got 'abc'"
    assert bad_value(["--strategy=fsdp3"], entry) == "strategy: expected 'auto' or 'ddp', got 'fsdp3'"
    assert bad_value(["--train.compile", "maybe"], entry) == "train.compile: expected bool, got 'maybe'"
    ok = ["--train.max_steps", "null", "--train.max_tokens", "2e6", "--train.compile", "yes", "--strategy", "ddp",
          "--train.max_steps=0x10", "--train.max_steps", "--strategy", "auto"]
    assert bad_value(ok, entry) is None
