"""Shared fixtures (a tiny litgpt config, a randomly initialised tiny checkpoint dir, the bundled tokenizer) and how the
suite shares the machine's cores.

Under pytest-xdist (the suite runs with ``-n 2``, see ``pyproject.toml``) each worker computes with one thread, and a
test marked ``distributed`` (it starts several processes, e.g. 2 gloo ranks) runs alone: it waits for the other
workers' current tests to end, and they wait for it (:func:`pytest_runtest_protocol`), so its ranks never share the
cores with another test.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
torch.set_num_threads(1 if WORKER else min(2, torch.get_num_threads()))


@contextlib.contextmanager
def _core_share(lock_dir: Path, alone: bool):
    """A readers-writer lock over the xdist workers: ordinary tests share (``LOCK_SH``), a ``distributed`` test is
    alone (``LOCK_EX``). The turnstile keeps a waiting ``distributed`` test from being starved by new shared ones."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "turnstile.lock", "w") as turnstile, open(lock_dir / "cores.lock", "w") as cores:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(cores, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(cores, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if WORKER is None:
        yield
        return
    lock_dir = Path(tempfile.gettempdir()) / f"litcpt-cores-{os.environ.get('PYTEST_XDIST_TESTRUNUID', 'run')}"
    with _core_share(lock_dir, alone=item.get_closest_marker("distributed") is not None):
        yield


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
