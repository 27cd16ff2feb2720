"""Pre-emption of the other commands that train (``reward``, ``dpo`` with a live or a precomputed reference,
``anneal``): ``SIGTERM`` at a random micro-batch saves ``last.ckpt`` at the end of that step, prints the one-line
notice and exits 143; ``--resume auto`` then ends with bitwise the final weights (every ``.pth`` of ``final/``: the
reward head too) and the ``metrics.csv`` rows of an uninterrupted run. ``pretrain``, ``SIGUSR1`` and 2 ranks:
``test_preemption.py``. And the SLURM requeue: ``SIGUSR1`` under SLURM's environment, with a fake ``scontrol``.

The signal comes from :class:`tests.runtime.preempt_helpers.SignalAt`, added to the callbacks of the Trainer that the
shared harness builds (only ``pretrain`` takes callbacks from its recipe), for the interrupted run only.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import stat
from pathlib import Path

import pytest
import torch

from litcpt.report.runs import read_rows
from tests.conftest import make_checkpoint, tiny_config
from tests.helpers import run_litcpt, tiny_recipe
from tests.runtime.preempt_helpers import SignalAt

STEPS, ACCUMULATE = 6, 2  # reward / dpo below: global batch 4 pairs, micro-batch 2
# Lightning's ThroughputMonitor counts the batches, samples, tokens and seconds of its own process: a resumed process
# starts them again (pretrain's test leaves them out too). Every other column must be equal.
THROUGHPUT = re.compile(r"^(train|validate)/(time|batches|samples|lengths)$|_per_sec$|^(train|validate)/device/")
RESUME = ("--resume", "auto")


@contextlib.contextmanager
def _signal_at(batch: int, signum: int = signal.SIGTERM):
    """The next runs of the shared harness get ``SignalAt(batch, signum)`` (even when they resume: an anneal does)."""
    from litcpt.training import harness

    build = harness.build_trainer

    def with_signal(spec, *, max_steps):
        spec.callbacks = [*spec.callbacks, SignalAt(batch, int(signum), resumed_too=True)]
        return build(spec, max_steps=max_steps)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "build_trainer", with_signal)
        yield


def _rows(out_dir: Path) -> list[dict[str, float | None]]:
    """The run's rows over its logger versions (a resumed version replaces the rows from its first step on), without
    the throughput columns; a column that a version lacks (no validation before the signal) is empty there."""
    rows, _ = read_rows(out_dir)
    columns = sorted({k for r in rows for k in r if k != "_version" and not THROUGHPUT.search(k)})
    return [{k: float(r[k]) if r.get(k) not in (None, "") else None for k in columns} for r in rows]


def _assert_same_run(straight: Path, resumed: Path, steps: list[int], what: str) -> None:
    weights = sorted(p.name for p in (straight / "final").glob("*.pth"))
    assert "lit_model.pth" in weights and weights == sorted(p.name for p in (resumed / "final").glob("*.pth"))
    for name in weights:
        a = torch.load(straight / "final" / name, weights_only=True)
        b = torch.load(resumed / "final" / name, weights_only=True)
        assert a.keys() == b.keys(), (what, name)
        for key in a:
            assert torch.equal(a[key], b[key]), (what, name, key)
    rows_a, rows_b = _rows(straight), _rows(resumed)
    assert [r["step"] for r in rows_a] == steps, rows_a
    assert {"lr", "train/loss"} <= rows_a[0].keys() and any(r.get("val/loss") is not None for r in rows_a), rows_a
    assert rows_b == rows_a, what


def _preempt_and_resume(args: list[str], straight: Path, out: Path, *, first_step: int, steps: int) -> None:
    """Run ``args`` with ``SIGTERM`` at a random micro-batch before its last step, check the exit, the notice and
    ``last.ckpt``, resume it with ``--resume auto`` and compare it with the uninterrupted run in ``straight``."""
    batch = random.Random().randint(1, (steps - 1) * ACCUMULATE)
    what = f"litcpt {args[0]}: SIGTERM at micro-batch {batch}"
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)
    with _signal_at(batch):
        stopped = run_litcpt(*args, check=False)
    assert stopped.returncode == 128 + signal.SIGTERM, (what, stopped.stderr[-3000:])
    step = first_step + -(-batch // ACCUMULATE)  # the step the micro-batch belongs to: it is finished, then saved
    last = out / "checkpoints" / "last.ckpt"
    notices = [line for line in stopped.stderr.splitlines() if "pre-empted" in line]
    assert notices == [f"litcpt: pre-empted by SIGTERM: saved step {step} of {first_step + steps} to {last}; run the "
                       "same command with --resume auto to continue"], (what, stopped.stderr[-3000:])
    assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == step, what
    assert not (out / "final").exists(), what
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)) == before

    run_litcpt(*args, *RESUME)
    _assert_same_run(straight, out, list(range(first_step, first_step + steps)), what)


# ------------------------------------------------------------------------------------------------ reward, dpo
@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny random-init policy and 24 bundled HH-RLHF pairs (6 steps of 4 pairs: one epoch)."""
    from litcpt.assets import preference_file
    from litcpt.data.preference.pair_loading import load_preference_pairs

    root = tmp_path_factory.mktemp("pairs")
    data = root / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                            for p in load_preference_pairs(preference_file())[:24]))
    return make_checkpoint(root / "policy", tiny_config()), data


def _pair_args(command: str, pairs: tuple[Path, Path], out: Path) -> list[str]:
    """``litcpt reward`` / ``dpo`` for STEPS steps of ACCUMULATE micro-batches, a save and a validation on the way."""
    policy, data = pairs
    return [command, "--checkpoint_dir", str(policy), "--out_dir", str(out), "--data", "litcpt.data.Preference",
            "--data.train_data_path", str(data), "--data.val_data_path", str(data), "--data.max_length", "64",
            "--train.global_batch_size", "4", "--train.micro_batch_size", "2", "--train.max_steps", str(STEPS),
            "--train.save_interval", "2", "--train.log_interval", "1", "--eval.interval", "3", "--eval.max_iters", "2",
            "--optimizer", '{"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.003}}', "--accelerator", "cpu",
            "--devices", "1"]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["reward", "dpo", "dpo-precompute_ref"])
def test_sigterm_stops_reward_and_dpo_at_a_step_and_resume_is_exact(tmp_path, pairs, command):
    name, *precompute = command.split("-")
    extra = ["--precompute_ref", "true"] if precompute else []
    run_litcpt(*_pair_args(name, pairs, tmp_path / "straight"), *extra)
    out = tmp_path / "stopped"
    _preempt_and_resume([*_pair_args(name, pairs, out), *extra], tmp_path / "straight", out, first_step=0,
                        steps=STEPS)
    if precompute:
        assert (out / "ref_logps.pt").is_file()


# ------------------------------------------------------------------------------------------------ anneal
ANNEAL_FROM, ANNEAL_STEPS = 5, 6


@pytest.fixture(scope="module")
def infinite_run(tmp_path_factory) -> Path:
    """A tiny 10-step pretrain run with an infinite schedule (constant LR from step 4) and a step-5 checkpoint."""
    root = tmp_path_factory.mktemp("infinite")
    schedule = {"class_path": "litcpt.callbacks.InfiniteLR", "init_args": {"warmup": 0.1, "cooldown": 0.3}}
    run_litcpt("pretrain", "--config", str(tiny_recipe(root, **{"train.max_steps": 10, "train.save_interval": 5,
                                                                 "eval.interval": 4})),
               "--lr_schedule", json.dumps(schedule))
    return root / "out"


@pytest.mark.slow
def test_sigterm_stops_an_anneal_at_a_step_and_resume_is_exact(tmp_path, infinite_run):
    def anneal(out: Path) -> list[str]:
        return ["anneal", "--checkpoint", str(infinite_run / "checkpoints" / f"step-{ANNEAL_FROM:08d}.ckpt"),
                "--anneal_steps", str(ANNEAL_STEPS), "--out_dir", str(out)]

    run_litcpt(*anneal(tmp_path / "straight"))
    out = tmp_path / "stopped"
    _preempt_and_resume(anneal(out), tmp_path / "straight", out, first_step=ANNEAL_FROM, steps=ANNEAL_STEPS)
    record = json.loads((out / "anneal.json").read_text())
    assert record["resumed_from"] == str(out / "checkpoints" / "last.ckpt")


# ------------------------------------------------------------------------------------------------ SLURM requeue
def _fake_scontrol(tmp_path: Path) -> tuple[Path, Path]:
    """A ``scontrol`` that appends its arguments to a file; returns (its directory, the file)."""
    calls, bin_dir = tmp_path / "scontrol-calls.txt", tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "scontrol"
    fake.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return bin_dir, calls


SLURM = {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1", "SLURM_PROCID": "0",
         "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_JOB_NAME": "litcpt-test", "SLURM_JOB_ID": "4242",
         "SLURM_NODELIST": "127.0.0.1"}


@pytest.mark.slow
def test_requeue_signal_under_slurm_saves_requeues_the_job_and_exits_138(tmp_path):
    """One process of a SLURM job (Lightning's ``SLURMEnvironment``, auto-requeue on): ``SIGUSR1`` saves at the end of
    the step, calls ``scontrol requeue <job id>`` once, says so in the notice and exits 128 + SIGUSR1; Lightning's own
    handler (an ``hpc_ckpt_*.ckpt`` saved in the middle of the step, its own requeue) never runs."""
    bin_dir, calls = _fake_scontrol(tmp_path)
    steps = 4
    batch = random.Random().randint(1, (steps - 1) * ACCUMULATE)
    what = f"SIGUSR1 at micro-batch {batch}"
    callbacks = [{"class_path": "tests.runtime.preempt_helpers.SignalAt",
                  "init_args": {"batch": batch, "signum": int(signal.SIGUSR1)}}]
    recipe = tiny_recipe(tmp_path, **{"train.max_steps": steps, "callbacks": callbacks})
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)
    stopped = run_litcpt("pretrain", "--config", str(recipe), check=False,
                         env={**SLURM, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert stopped.returncode == 128 + signal.SIGUSR1, (what, stopped.stderr[-3000:])
    assert (calls.read_text().splitlines() if calls.exists() else []) == ["requeue 4242"], what
    out, step = tmp_path / "out", -(-batch // ACCUMULATE)
    last = out / "checkpoints" / "last.ckpt"
    notices = [line for line in stopped.stderr.splitlines() if "pre-empted" in line]
    assert notices == [f"litcpt: pre-empted by SIGUSR1: saved step {step} of {steps} to {last}; requeued SLURM job "
                       "4242; run the same command with --resume auto to continue"], (what, stopped.stderr[-3000:])
    assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == step, what
    assert not list(out.rglob("hpc_ckpt_*")) and not (out / "final").exists(), what
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)) == before


@pytest.mark.parametrize("env, expected", [
    ({"SLURM_JOB_ID": "4242"}, "requeued SLURM job 4242"),
    ({"SLURM_JOB_ID": "4243", "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "3"}, "requeued SLURM job 77_3"),
    ({"SLURM_JOB_ID": "4242; rm -rf /"}, "not requeued (SLURM job id '4242; rm -rf /')"),
])
def test_requeue_slurm_job_calls_scontrol_with_the_job_id(tmp_path, monkeypatch, env, expected):
    from litcpt.runtime.preemption import requeue_slurm_job

    bin_dir, calls = _fake_scontrol(tmp_path)
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert requeue_slurm_job() == expected
    job = expected.rsplit(" ", 1)[-1]
    assert (calls.read_text().splitlines() if calls.exists() else []) == ([f"requeue {job}"] if "not" not in expected
                                                                           else [])


def test_a_failed_or_missing_scontrol_is_said_in_the_notice(tmp_path, monkeypatch):
    from litcpt.runtime.preemption import requeue_slurm_job

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol
    assert requeue_slurm_job() == "not requeued (no scontrol to requeue SLURM job 4242)"
    failing = tmp_path / "scontrol"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(failing.stat().st_mode | stat.S_IXUSR)
    assert requeue_slurm_job() == "requeue of SLURM job 4242 failed (3)"
