"""Shared fixtures (a tiny litgpt config, a randomly initialised tiny checkpoint dir, the bundled tokenizer) and how the
suite shares the machine's cores.

Under pytest-xdist (the suite runs with ``-n 2 --dist worksteal``, see ``pyproject.toml``) each worker computes with
one thread, and the tests marked ``distributed`` (each starts several processes, e.g. 2 gloo ranks) run one at a
time, on one worker (:func:`pytest_collection_modifyitems`, and a lock in case they are ever spread): two of them at
once would put four processes on two cores. One of them beside an ordinary test is not oversubscribed: measured here,
a 2-rank test keeps 0.6 of the machine's cores busy on average (its second rank imports and builds while the first
waits for it), so the other core runs the other worker's tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER:  # one thread per worker, set before torch loads: OpenMP and MKL then never start a thread pool, so
    # tests/forked.py can fork the worker (a child forked from a process with a pool hangs in its first parallel op)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1 if WORKER else min(2, torch.get_num_threads()))


@contextlib.contextmanager
def _one_at_a_time(lock_path: Path):
    """An exclusive file lock shared by the xdist workers (released when the test ends, or its worker dies)."""
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def pytest_collection_modifyitems(config, items):
    """The ``distributed`` tests first, then the other ``slow`` ones, then the rest (stable order otherwise). Under
    ``--dist worksteal`` each worker starts with a contiguous half of the list and an idle worker steals from the end
    of another's: the first worker runs every distributed test in turn, with its 2-rank pool
    (:mod:`tests.rank_pool`) started once, and the long tests start early, so the run does not end on one of them."""
    def rank(item) -> int:
        if item.get_closest_marker("distributed") is not None:
            return 0
        return 1 if item.get_closest_marker("slow") is not None else 2

    items.sort(key=rank)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if WORKER is None or item.get_closest_marker("distributed") is None:
        yield
        return
    lock = Path(tempfile.gettempdir()) / f"litcpt-distributed-{os.environ.get('PYTEST_XDIST_TESTRUNUID', 'run')}.lock"
    with _one_at_a_time(lock):
        yield


@pytest.fixture(scope="session", autouse=True)
def session_cache_dir(tmp_path_factory) -> Path:
    """``$LITCPT_CACHE_DIR`` for the whole session (each xdist worker its own): the token cache that runs without a
    ``cache_dir`` of their own share (the bundled corpora are tokenised once per worker, not once per run), and the
    per-user CLI answers; nothing is written under ``~/.cache``. Tests of the caches themselves use their own dirs."""
    path = tmp_path_factory.getbasetemp() / "litcpt-cache"
    os.environ["LITCPT_CACHE_DIR"] = str(path)
    return path


def tiny_config(**overrides):
    from litgpt import Config

    args = dict(name="litcpt-test", block_size=64, vocab_size=4096, padded_vocab_size=4096, n_layer=2, n_head=2,
                n_embd=32, n_query_groups=2, rotary_percentage=1.0, parallel_residual=False, bias=False,
                norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=64)
    args.update(overrides)
    return Config(**args)


@pytest.fixture
def config():
    return tiny_config()


def make_checkpoint(path: Path, config=None, seed: int = 0) -> Path:
    """A LitGPT checkpoint dir (random GPT-NeoX init) with the bundled tokenizer."""
    from litgpt import GPT

    from litcpt import assets
    from litcpt.models.base import init_weights
    from litcpt.runtime.checkpoint import save_litgpt_dir

    torch.manual_seed(seed)
    config = config or tiny_config()
    model = GPT(config)
    init_weights(model)
    return save_litgpt_dir(model.state_dict(), config, path, tokenizer_dir=assets.tokenizer_dir())


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    return make_checkpoint(tmp_path / "tiny-ckpt")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tokenizer():
    """The bundled tokenizer (litgpt's ``Tokenizer``), loaded once per test session."""
    from litgpt import Tokenizer

    from litcpt.assets import tokenizer_dir

    return Tokenizer(tokenizer_dir())

