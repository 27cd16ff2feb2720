"""A LitGPT ``config_hub/pretrain/debug.yaml``-style recipe runs through ``litcpt pretrain``: LitGPT's LR keys
(``train.lr_warmup_steps`` / ``lr_warmup_fraction`` / ``min_lr``) shape the default schedule, and the keys litcpt has no
use for (``train.epochs``, ``eval.max_new_tokens``) are accepted unset and refused set, in one line saying what to
write instead."""

from __future__ import annotations

import pytest
import yaml

from litcpt.cli.main import main
from tests.helpers import read_metrics, series

# LitGPT's debug.yaml (config_hub/pretrain/debug.yaml), with a tiny model, a few steps and the bundled data
# (data: null is litcpt's bundled English corpus, as LitGPT's is TinyLlama).
DEBUG_YAML = """
model_name:
model_config:
  name: tiny
  block_size: 32
  vocab_size: 4096
  padded_vocab_size: 4096
  n_layer: 1
  n_head: 2
  n_embd: 32
  n_query_groups: 2
  rotary_percentage: 1.0
  parallel_residual: false
  bias: false
  norm_class_name: RMSNorm
  mlp_class_name: LLaMAMLP
  intermediate_size: 64
out_dir: out/pretrain
resume: false
data:
train:
  save_interval: 1000
  log_interval: 1
  global_batch_size: 4
  micro_batch_size: 4
  lr_warmup_steps: 2
  epochs:
  max_tokens: 3000000000000
  max_steps: 5
  max_seq_length:
  tie_embeddings: false
  max_norm: 1.0
  min_lr: 4.0e-05
eval:
  interval: 1000
  max_new_tokens:
  max_iters: 2
optimizer:
  class_path: torch.optim.AdamW
  init_args:
    lr: 0.0004
    weight_decay: 0.1
    betas: [0.9, 0.95]
devices: auto
tokenizer_dir:
logger_name: csv
seed: 42
"""


def recipe(tmp_path, **changes) -> str:
    config = yaml.safe_load(DEBUG_YAML)
    config["out_dir"] = str(tmp_path / "out")
    for key, value in changes.items():
        group, _, name = key.partition(".")
        config[group][name] = value
    path = tmp_path / "debug.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.slow
def test_litgpt_debug_recipe_trains_with_its_warmup_and_min_lr(tmp_path, monkeypatch):
    from litcpt.schedules.formulas import WarmupCosine
    from litcpt.training.recipe import read_recipe

    monkeypatch.setenv("LITCPT_CACHE_DIR", str(tmp_path / "cache"))
    path = recipe(tmp_path)
    main(["pretrain", "--config", path, "--accelerator", "cpu"])
    lrs = [lr for _, lr in series(read_metrics(tmp_path / "out"), "lr")]
    expected = WarmupCosine(warmup=2, total=5, max_lr=4e-4, min_lr=4e-5)
    assert lrs == pytest.approx([expected(k) for k in range(5)], rel=1e-9)
    assert lrs[2] == pytest.approx(4e-4) and lrs[0] < lrs[1] < lrs[2] > lrs[3] > lrs[4] > 4e-5  # warmup, cosine
    assert (tmp_path / "out" / "final" / "lit_model.pth").is_file()
    from litcpt.training.recipe import lr_callback

    callback = lr_callback(read_recipe(tmp_path / "out" / "config.yaml", data=False), where="config")
    assert callback.config.min_lr == 4e-5  # plot-schedule and anneal read the same schedule from the run's config.yaml


@pytest.mark.parametrize("changes, status, message", [
    ({"train.epochs": 3}, 2, "train.epochs=3: litcpt counts training in optimizer steps or tokens, not epochs: "
                             "remove train.epochs and set train.max_steps or train.max_tokens"),
    ({"eval.max_new_tokens": 50}, 2, "eval.max_new_tokens=50: litcpt validates the loss and generates no text"),
    ({"train.lr_warmup_fraction": 0.1}, 2, "train.lr_warmup_steps and train.lr_warmup_fraction: give one of them"),
])
def test_litgpt_keys_litcpt_cannot_honour_are_one_line_errors(tmp_path, capsys, changes, status, message):
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "--config", recipe(tmp_path, **changes)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == status and len(err.splitlines()) == 1 and message in err, err


def test_litgpt_lr_keys_with_an_explicit_schedule_are_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "--config", recipe(tmp_path), "--lr_schedule", "litcpt.callbacks.ConstantLR"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 1 and len(err.splitlines()) == 1
    assert "train.lr_warmup_steps: sets the default LR schedule, but lr_schedule is given" in err
    assert not (tmp_path / "out" / "checkpoints").exists()
