"""Shared fixtures: a tiny litgpt config and a randomly initialised tiny checkpoint dir with the bundled tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))


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
