"""Pre-emption and kills: a run that gets SIGTERM (or the requeue signal) at a random micro-batch saves at the next
step end, says so in one line and exits 128 + signal; resumed with ``--resume auto`` it ends with bitwise the weights
and the ``metrics.csv`` rows of an uninterrupted run. A run killed with SIGKILL at a random micro-batch loses no
row either (issue 23)."""

from __future__ import annotations

import os
import random
import signal

import pytest
import torch

from litcpt.report.runs import read_rows
from litcpt.runtime.preemption import Preempted, PreemptionSignals
from tests import forked
from tests.helpers import REPO, child_env, run_litcpt, tiny_recipe

STEPS, ACCUMULATE = 12, 2  # tiny_recipe: global batch 8, micro-batch 4
RUN = {"train.max_steps": STEPS, "train.save_interval": 5, "eval.interval": 6}
DETERMINISTIC = ("step", "epoch", "lr", "train/loss", "train/tokens", "val/loss", "val/loss/en", "val/tokens")


def _signal_at(batch: int, signum: int, rank: int = 0, once=None) -> list[dict]:
    init_args = {"batch": batch, "signum": int(signum), "rank": rank}
    return [{"class_path": "tests.runtime.preempt_helpers.SignalAt",
             "init_args": init_args if once is None else {**init_args, "once": str(once)}}]


def _rows(out_dir) -> list[dict[str, float | None]]:
    """The run's rows over its logger versions (a resumed version replaces the rows from its first step on), with
    the columns that do not depend on time."""
    rows, _ = read_rows(out_dir)
    return [{k: float(r[k]) if r.get(k) not in (None, "") else None for k in DETERMINISTIC} for r in rows]


def _assert_same_run(straight, resumed, what: str) -> None:
    a = torch.load(straight / "final" / "lit_model.pth", weights_only=True)
    b = torch.load(resumed / "final" / "lit_model.pth", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), (what, key)
    rows_a, rows_b = _rows(straight), _rows(resumed)
    assert [r["step"] for r in rows_a] == list(range(STEPS)), rows_a
    assert rows_b == rows_a, what


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run, one process."""
    tmp = tmp_path_factory.mktemp("straight")
    run_litcpt("pretrain", "--config", str(tiny_recipe(tmp, **RUN)))
    return tmp / "out"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_at_a_random_micro_batch_saves_exits_non_zero_and_resumes_exactly(tmp_path, straight, signum):
    batch = random.Random().randint(1, (STEPS - 1) * ACCUMULATE)  # any micro-batch before the last step
    what = f"{signal.Signals(signum).name} at micro-batch {batch}"
    before, before_usr1 = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)
    recipe = tiny_recipe(tmp_path, **RUN, callbacks=_signal_at(batch, signum))
    stopped = run_litcpt("pretrain", "--config", str(recipe), check=False)
    out = tmp_path / "out"
    assert stopped.returncode == 128 + signum, (what, stopped.stderr[-2000:])
    step = -(-batch // ACCUMULATE)  # the step the micro-batch belongs to: it is finished, then saved
    notices = [line for line in stopped.stderr.splitlines() if "pre-empted" in line]
    assert notices == [f"litcpt: pre-empted by {signal.Signals(signum).name}: saved step {step} of {STEPS} to "
                       f"{out / 'checkpoints' / 'last.ckpt'}; run the same command with --resume auto to continue"], \
        (what, stopped.stderr[-2000:])
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == step
    assert not (out / "final").exists()
    assert signal.getsignal(signal.SIGTERM) == before and signal.getsignal(signal.SIGUSR1) == before_usr1

    resumed = run_litcpt("pretrain", "--config", str(recipe), "--resume", "auto")
    assert f"litcpt: {STEPS} optimizer steps (resumed at step {step})," in resumed.stdout, resumed.stdout[-2000:]
    _assert_same_run(straight, out, what)


@pytest.mark.slow
@pytest.mark.distributed
def test_sigterm_on_one_of_two_ranks_stops_both_at_the_same_step_and_resumes_exactly(tmp_path):
    rng = random.Random()
    batch, rank = rng.randint(1, (STEPS - 1) * ACCUMULATE // 2), rng.randint(0, 1)  # 2 ranks: 1 micro-batch a step
    what = f"SIGTERM on rank {rank} at micro-batch {batch}"
    straight = tiny_recipe(tmp_path / "a", **RUN)
    run_litcpt("pretrain", "--config", str(straight), "--devices", "2", "--strategy", "ddp")
    recipe = tiny_recipe(tmp_path / "b", **RUN, callbacks=_signal_at(batch, signal.SIGTERM, rank))
    stopped = run_litcpt("pretrain", "--config", str(recipe), "--devices", "2", "--strategy", "ddp", check=False)
    assert stopped.returncode == 128 + signal.SIGTERM, (what, stopped.stderr[-2000:])
    assert torch.load(tmp_path / "b" / "out" / "checkpoints" / "last.ckpt",
                      weights_only=True)["global_step"] == batch, what
    run_litcpt("pretrain", "--config", str(recipe), "--devices", "2", "--strategy", "ddp", "--resume", "auto")
    _assert_same_run(tmp_path / "a" / "out", tmp_path / "b" / "out", what)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [None, 11, 3])  # random; first after the step-5 checkpoint; before any checkpoint
def test_kill_9_at_a_micro_batch_loses_no_metrics_row(tmp_path, straight, batch):
    """Issue 23: the row of the last checkpointed step was written only when the next step started (before this fix,
    micro-batch 11 left rows 0-3 and a step-5 checkpoint: row 4 was never written)."""
    batch = batch or random.Random().randint(1, STEPS * ACCUMULATE)
    what = f"SIGKILL at micro-batch {batch}"
    # Killed before the step-5 checkpoint (micro-batch <= 10), `--resume auto` finds nothing and starts afresh: the
    # marker keeps that in-process run (and with it the test's worker) from being killed too.
    recipe = tiny_recipe(tmp_path, **RUN, callbacks=_signal_at(batch, signal.SIGKILL, once=tmp_path / "killed"))
    env = child_env()
    killed = forked.start(["-m", "litcpt", "pretrain", "--config", str(recipe)], env=env, cwd=REPO)
    _, err = killed.communicate(timeout=600)
    assert killed.returncode == -signal.SIGKILL, (what, err[-2000:])
    run_litcpt("pretrain", "--config", str(recipe), "--resume", "auto")
    _assert_same_run(straight, tmp_path / "out", what)


def test_signals_agree_and_handlers_come_back():
    watch = PreemptionSignals()
    before = signal.getsignal(signal.SIGTERM)
    watch.install(None)
    assert watch.agreed() is None
    os.kill(os.getpid(), signal.SIGUSR1)
    assert watch.agreed() == signal.SIGUSR1 and watch.requeue_signal is None  # not under SLURM: no requeue
    watch.restore()
    assert signal.getsignal(signal.SIGTERM) == before
    assert Preempted(signal.SIGTERM, "x").code == 143
