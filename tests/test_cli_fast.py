"""`litcpt <command> --help` and unknown keys are answered from the parser cache without importing torch,
Lightning or LitGPT; the cache never serves stale answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from helpers import REPO

PROBE = """
import sys, time
t0 = time.perf_counter()
from litcpt.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
heavy = sorted(m for m in ("torch", "lightning", "litgpt") if m in sys.modules)
print(f"PROBE code={code} heavy={heavy} seconds={time.perf_counter() - t0:.3f}", file=sys.stderr)
"""


def _probe(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "LITCPT_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "100"}
    env.pop("LITCPT_NO_CLI_CACHE", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=600)
    return proc, time.perf_counter() - start


def test_help_and_unknown_keys_come_from_the_cache_without_heavy_imports(tmp_path):
    first, _ = _probe(tmp_path, "pretrain", "--help")  # builds the parser (imports everything) and fills the cache
    assert "PROBE code=0" in first.stderr and "--train.max_tokens" in first.stdout
    second, seconds = _probe(tmp_path, "pretrain", "--help")
    assert "PROBE code=0 heavy=[]" in second.stderr, second.stderr[-2000:]
    assert second.stdout == first.stdout
    print(f"cached `litcpt pretrain --help`: {seconds:.2f} s wall (first: parser built)")

    bad, _ = _probe(tmp_path, "pretrain", "--train.max_tokns", "5")
    assert "PROBE code=2 heavy=[]" in bad.stderr
    line = [ln for ln in bad.stderr.splitlines() if "error" in ln][0]
    assert "unknown key '--train.max_tokns' (did you mean '--train.max_tokens'?)" in line

    value, _ = _probe(tmp_path, "pretrain", "--train.max_steps", "abc")
    assert "PROBE code=2 heavy=[]" in value.stderr and "train.max_steps: expected int or null, got 'abc'" in value.stderr

    # keys below options that take nested keys are left to the real parser (it knows the classes)
    from litcpt.cli_cache import bad_value, unknown_key

    (entry_file,) = (tmp_path / "cache" / "cli").glob("pretrain-*.json")
    entry = json.loads(entry_file.read_text())
    deep = ["--lr_schedule", "litcpt.callbacks.WarmupCosineLR", "--lr_schedule.init_args.warmup", "1.5",
            "--data.init_args.fraction", "2", "--model_config.n_layer", "2", "--optimizer.init_args.lr", "x"]
    assert unknown_key(deep, entry) is None and bad_value(deep, entry) is None


def test_fingerprint_changes_with_terminal_width_and_sources(tmp_path, monkeypatch):
    from litcpt import cli_cache

    monkeypatch.setenv("COLUMNS", "80")
    narrow = cli_cache.fingerprint("pretrain")
    monkeypatch.setenv("COLUMNS", "120")
    assert cli_cache.fingerprint("pretrain") != narrow
    assert cli_cache.fingerprint("dpo") != cli_cache.fingerprint("pretrain")
    source = REPO / "litcpt" / "cli_cache.py"
    before = cli_cache.fingerprint("pretrain")
    stat = source.stat()
    try:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        assert cli_cache.fingerprint("pretrain") != before
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_simple_values_are_checked_from_the_cache_and_doubt_is_left_to_the_parser():
    from typing import Literal

    from litcpt.cli_cache import bad_value, simple_kind

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
