"""Helpers for tests that run litcpt commands in subprocesses and read their outputs."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PAUSE_IN_SAVE = REPO / "tests" / "runtime" / "pause_in_save.py"


def patience(seconds: float) -> float:
    """The limit of a watchdog for work that takes at most ``seconds`` on an idle machine, scaled by the load: the
    load average per core (at least 1) times ``LITCPT_TEST_PATIENCE`` (default 3). A loaded machine is slow, not
    hung: no test fails because other work shares the cores (the suite runs beside other jobs, load 10+ on 2 cores).
    """
    try:
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        load = 1.0
    return seconds * max(1.0, load) * float(os.environ.get("LITCPT_TEST_PATIENCE", "3"))


def start_paused_at_save(nth: int, marker: Path, *args: str, env: dict[str, str]):
    """``python -m litcpt ARGS`` in a process of its own (forked from this one: :mod:`tests.forked`) whose ``nth``
    ``.ckpt`` save pauses before its rename (writing ``marker``) until the test kills it: a kill "after step k" then
    never comes too late, however loaded the machine (``tests/runtime/pause_in_save.py``). Its stderr is bytes, as a
    ``Popen``'s without ``text``."""
    from tests import forked

    return forked.start([str(PAUSE_IN_SAVE), str(marker), str(nth), *args], env=env, cwd=REPO, text=False)


def wait_for(path: Path, proc: subprocess.Popen, *, or_marker: Path | None = None, poll: float = 0.02) -> None:
    """Wait until ``path`` (or ``or_marker``) exists or ``proc`` ended; no wall-clock limit (the process pauses at a
    save, see :func:`start_paused_at_save`, or ends)."""
    import time

    while not path.exists() and not (or_marker and or_marker.exists()) and proc.poll() is None:
        time.sleep(poll)


def tiny_recipe(tmp_path: Path, **overrides) -> Path:
    """The tiny pretrain recipe, pointed at absolute bundled-data paths and a tmp out_dir, with a smaller model; its
    tokens come from the session's cache (``$LITCPT_CACHE_DIR``: :func:`tests.conftest.session_cache_dir`)."""
    recipe = yaml.safe_load((REPO / "recipes/tiny/pretrain.yaml").read_text())
    recipe["out_dir"] = str(tmp_path / "out")
    recipe["data"]["init_args"]["train_data_path"] = str(REPO / "litcpt/assets/data/pretrain/en")
    # no cache_dir: the session's token cache ($LITCPT_CACHE_DIR, tests/conftest.py), tokenised once per worker
    recipe["model_config"].update(n_layer=2, n_embd=64, n_head=2, n_query_groups=2, intermediate_size=128,
                                  block_size=64)
    recipe["train"].update(global_batch_size=8, micro_batch_size=4, max_tokens=None, max_steps=20, log_interval=1,
                           save_interval=10)
    recipe["eval"].update(interval=10, max_iters=2)
    for key, value in overrides.items():
        node = recipe
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    path = tmp_path / "recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_litcpt(*args: str, timeout: int = 600, check: bool = True, cwd: Path | None = None, fresh_process: bool = False,
               env: dict[str, str] | None = None, **popen) -> subprocess.CompletedProcess:
    """``litcpt ARGS`` as the tests run it, with its output and exit status as a subprocess's would be:

    * in this process (the CLI's own ``main``), by default;
    * with ``--devices 2``: in the two rank processes of :mod:`tests.rank_pool`, started once per test worker as
      ``torchrun`` would start them;
    * in a fresh process (``python -m litcpt``) if ``fresh_process``, ``popen`` options or other device / node counts
      ask for one (Lightning then launches the other ranks itself). A process costs ~5 s of imports.

    ``env``: environment variables set for the command only.
    """
    if fresh_process or popen or _launches_ranks(args) not in (None, 2) or (env and _launches_ranks(args)):
        return _run_process(args, timeout=timeout, check=check, cwd=cwd, env=env, **popen)
    if _launches_ranks(args) == 2:
        from tests.rank_pool import pool

        code, out, err = pool().run(list(args), cwd=cwd or REPO, timeout=patience(timeout))
    else:
        code, out, err = run_in_process(list(args), cwd=cwd or REPO, env=env)
    proc = subprocess.CompletedProcess(["litcpt", *args], code, out, err)
    if check and proc.returncode != 0:
        raise AssertionError(f"litcpt {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def run_litgpt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """LitGPT's own CLI (``litgpt ARGS``) in this process, as :func:`run_litcpt` runs litcpt's, with TorchDynamo off
    (what ``TORCHDYNAMO_DISABLE=1`` does for a fresh process: ``litgpt pretrain`` compiles its model, and a first CPU
    compile takes a minute). Fails with the output when it exits non-zero."""
    import torch._dynamo

    with torch._dynamo.config.patch(disable=True):
        code, out, err = run_in_process(list(args), cwd=cwd or REPO, program="litgpt")
    if code != 0:
        raise AssertionError(f"litgpt {' '.join(args)} failed ({code}):\n{out[-3000:]}{err[-3000:]}")
    return subprocess.CompletedProcess(["litgpt", *args], code, out, err)


def run_script_on_two_ranks(script: Path, *args: str, cwd: Path | None = None,
                            timeout: int = 600) -> subprocess.CompletedProcess:
    """A Lightning script with ``devices=2`` run as ``__main__`` in the two rank processes of :mod:`tests.rank_pool`
    (as ``torchrun --nproc_per_node 2 script.py ARGS`` would run it). Fails with the output when it exits non-zero."""
    from tests.rank_pool import pool

    code, out, err = pool().run(list(args), cwd=cwd or REPO, timeout=patience(timeout), program=str(script))
    if code != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({code}):\n{out[-3000:]}{err[-3000:]}")
    return subprocess.CompletedProcess([str(script), *args], code, out, err)


def run_function_on_two_ranks(target: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``FUNCTION(rank, world_size, master_port, *ARGS)`` of ``target="module:FUNCTION"`` on the two ranks of
    :mod:`tests.rank_pool` (what ``torch.multiprocessing.spawn`` would do, without two interpreters' start-up)."""
    return run_script_on_two_ranks(REPO / "tests" / "rank_function.py", target, *args, timeout=timeout)


def _launches_ranks(args: tuple[str, ...]) -> int | None:
    """The number of processes the command runs on (``None``: one; ``-1``: an unusual request)."""
    devices = args[args.index("--devices") + 1] if "--devices" in args else "1"
    nodes = args[args.index("--num_nodes") + 1] if "--num_nodes" in args else "1"
    if nodes != "1":
        return -1
    if devices in ("1", "auto"):
        return None
    return int(devices) if devices.isdigit() else -1


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a process a test starts: this one's, with the repository importable, one OpenMP thread and
    quiet tokenizers, and ``extra``."""
    return {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
            **extra}


def _run_process(args, *, timeout: int, check: bool, cwd: Path | None, env: dict[str, str] | None = None,
                 **popen) -> subprocess.CompletedProcess:
    env = child_env(**(env or {}))
    proc = subprocess.run([sys.executable, "-m", "litcpt", *args], capture_output=True, text=True,
                          timeout=patience(timeout),
                          env=env, cwd=cwd or REPO, **popen)
    if check and proc.returncode != 0:
        raise AssertionError(f"litcpt {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def run_in_process(argv: list[str], *, cwd: Path = REPO, program: str = "litcpt",
                   env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``litcpt.cli.main.main(argv)`` (``program="litgpt"``: LitGPT's own CLI;
    a path to a ``.py`` file: that script, run as ``__main__``; both read ``sys.argv``) run here, from ``cwd``, with
    file descriptors 1 and 2 captured (what Lightning's log handlers and C code write too) and the process state a CLI
    changes restored afterwards (working directory, ``sys.argv``, warning filters, environment, torch's float32 matmul
    precision); ``env``: variables set for the call only."""
    import contextlib
    import tempfile
    import traceback
    import warnings

    import torch

    if program == "litgpt":
        from litgpt.__main__ import main as litgpt_main

        def main(_argv: list[str]) -> None:
            litgpt_main()
    elif program.endswith(".py"):
        import runpy

        def main(_argv: list[str]) -> None:
            runpy.run_path(program, run_name="__main__")
    else:
        from litcpt.cli.main import main

    code = 0
    precision = torch.get_float32_matmul_precision()
    with contextlib.ExitStack() as stack:
        out_file = stack.enter_context(tempfile.TemporaryFile(mode="w+b"))
        err_file = stack.enter_context(tempfile.TemporaryFile(mode="w+b"))
        stack.enter_context(warnings.catch_warnings())
        stack.enter_context(_restored_process_state(cwd, [program, *argv], env))
        stack.callback(torch.set_float32_matmul_precision, precision)
        with _redirected_fds(out_file, err_file):
            try:
                main(argv)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
                if exit_.code is not None and not isinstance(exit_.code, int):
                    print(exit_.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                code = 1
        out_file.seek(0)
        err_file.seek(0)
        return code, out_file.read().decode(errors="replace"), err_file.read().decode(errors="replace")


@contextlib.contextmanager
def _redirected_fds(out_file, err_file):
    """Point fds 1 and 2 (and ``sys.stdout``/``sys.stderr``, flushed first) at the two files, then back."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    os.dup2(out_file.fileno(), 1)
    os.dup2(err_file.fileno(), 2)
    sys.stdout = io.TextIOWrapper(os.fdopen(os.dup(1), "wb"), write_through=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(2), "wb"), write_through=True)
    handlers = _stream_handlers()  # logging handlers keep the stream they were made with (Lightning's: at import)
    for handler, stream in handlers:
        handler.stream = sys.stdout if stream in (saved_streams[0], sys.__stdout__) else sys.stderr
    ours = (sys.stdout, sys.stderr)
    try:
        yield
    finally:
        for handler, stream in handlers:
            handler.stream = stream
        for handler, stream in _stream_handlers():  # made during the call: back to the streams of the process
            if stream in ours:
                handler.stream = saved_streams[0] if stream is ours[0] else saved_streams[1]
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            stream.close()
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _stream_handlers() -> list[tuple[logging.StreamHandler, object]]:
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    return [(h, h.stream) for lg in loggers for h in getattr(lg, "handlers", [])
            if type(h) is logging.StreamHandler]


@contextlib.contextmanager
def _restored_process_state(cwd: Path, argv: list[str], env: dict[str, str] | None = None):
    """``cwd``, ``sys.argv`` and the environment (plus ``env``; ``tempfile`` reads ``TMPDIR`` again) for the block."""
    import tempfile

    old_cwd, old_argv, old_env, old_tempdir = os.getcwd(), sys.argv, dict(os.environ), tempfile.tempdir
    os.chdir(cwd)
    sys.argv = argv
    os.environ.update({"TOKENIZERS_PARALLELISM": "false", **(env or {})})
    tempfile.tempdir = None
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv
        os.environ.clear()
        os.environ.update(old_env)
        tempfile.tempdir = old_tempdir


def read_metrics(out_dir: Path) -> list[dict[str, str]]:
    """All rows of every logger version under ``out_dir/logs`` (oldest version first)."""
    rows: list[dict[str, str]] = []
    for path in sorted((Path(out_dir) / "logs").glob("version_*/metrics.csv"),
                       key=lambda p: int(p.parent.name.split("_")[1])):
        with open(path, newline="") as fp:
            rows.extend(csv.DictReader(fp))
    return rows


def series(rows: list[dict[str, str]], key: str) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]


def write_pairs(path: Path, n: int) -> Path:
    """The first ``n`` bundled HH-RLHF pairs as a ``{prompt, chosen, rejected}`` JSONL file."""
    import json

    from litcpt.assets import preference_file
    from litcpt.data.preference.pair_loading import load_preference_pairs

    pairs = load_preference_pairs(preference_file())[:n]
    path.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                            for p in pairs))
    return path


def initial_val_and_scored(out_dir: Path, data, checkpoint_dir: Path) -> tuple[list[float], list[float]]:
    """``[val/reward_mean, val/margin, val/loss]`` of the step-0 validation of the reward run in ``out_dir``
    (``eval.initial_validation``; ``data`` the run's connected preference DataModule, all its validation pairs in
    that pass) and the same means from scoring those pairs with ``load_reward_model(checkpoint_dir)``: equal when the
    run started from that checkpoint's model, head included."""
    import torch

    from litcpt.losses.reward import REWARD_LOSSES
    from litcpt.models.reward import load_reward_model

    names = ("val/reward_mean", "val/margin", "val/loss")
    row = next(r for r in read_metrics(out_dir) if int(r["step"]) == 0 and r.get("val/reward_mean"))
    rm = load_reward_model(checkpoint_dir)
    chosen, rejected = [], []
    with torch.no_grad():
        for batch in data.val_dataloader():
            r_c, r_r = rm.pair_scores(batch)
            chosen.append(r_c)
            rejected.append(r_r)
    r_c, r_r = torch.cat(chosen), torch.cat(rejected)
    loss = REWARD_LOSSES["bradley_terry"].pairs(r_c, r_r, None, 0.0)
    return [float(row[n]) for n in names], [float(torch.cat([r_c, r_r]).mean()), float((r_c - r_r).mean()),
                                            float(loss)]
