"""Interop with LitGPT itself: a `litgpt pretrain` checkpoint (trained with litcpt's TextFiles DataModule) starts
a `litcpt pretrain` stage."""

from __future__ import annotations

import pytest
import torch
import yaml

from tests.helpers import REPO, read_metrics, run_litcpt, run_litgpt, series, tiny_recipe

pytestmark = pytest.mark.slow


def test_litgpt_pretrain_checkpoint_continues_in_litcpt(tmp_path):
    recipe = yaml.safe_load(tiny_recipe(tmp_path / "r").read_text())
    litgpt_cfg = {
        "model_name": "litcpt-test", "model_config": recipe["model_config"], "out_dir": str(tmp_path / "litgpt"),
        "precision": "32-true", "devices": 1, "logger_name": "csv",
        "tokenizer_dir": str(REPO / "litcpt/assets/tokenizer"),
        "data": {"class_path": "litcpt.data.TextFiles",
                 "init_args": {"train_data_path": str(REPO / "litcpt/assets/data/pretrain/en"),
                               "cache_dir": str(tmp_path / "cache")}},
        "train": {"global_batch_size": 8, "micro_batch_size": 4, "max_tokens": 8 * 64 * 6, "log_interval": 1,
                  "save_interval": None, "lr_warmup_steps": 1},
        "eval": {"interval": 1000, "max_iters": 1, "final_validation": False},
    }
    cfg = tmp_path / "litgpt.yaml"
    cfg.write_text(yaml.safe_dump(litgpt_cfg))
    run_litgpt("pretrain", "--config", str(cfg))
    final = tmp_path / "litgpt" / "final"
    raw = torch.load(final / "lit_model.pth", weights_only=True)
    assert "model" in raw  # litgpt pretrain wraps its state: the loader must unwrap it

    run_litcpt("pretrain", "--config", str(tiny_recipe(tmp_path / "c")), "--initial_checkpoint_dir", str(final),
               "--train.max_steps", "4")
    rows = read_metrics(tmp_path / "c" / "out")
    first_loss = series(rows, "train/loss")[0][1]
    assert first_loss < 8.2, "starts from the litgpt weights, not from scratch (ln 4096 = 8.3)"
    saved = torch.load(tmp_path / "c" / "out" / "final" / "lit_model.pth", weights_only=True)
    assert set(saved) == set(raw["model"])
