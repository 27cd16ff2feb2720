"""End to end: `litcpt pretrain` trains the tiny model from a recipe, writes LitGPT checkpoints, resumes exactly."""

from __future__ import annotations

import signal

import pytest
import torch
from litgpt import GPT, Config, Tokenizer

from tests.helpers import (
    child_env,
    read_metrics,
    run_litcpt,
    run_litgpt,
    series,
    start_paused_at_save,
    tiny_recipe,
    wait_for,
)

pytestmark = pytest.mark.slow


def load_gpt(checkpoint_dir):
    config = Config.from_file(checkpoint_dir / "model_config.yaml")
    model = GPT(config)
    model.load_state_dict(torch.load(checkpoint_dir / "lit_model.pth", weights_only=True))
    return model.eval()


def test_tiny_recipe_trains_and_writes_litgpt_checkpoint(tmp_path):
    recipe = tiny_recipe(tmp_path)
    run_litcpt("pretrain", "--config", str(recipe), "--train.max_steps", "50", "--train.save_interval", "25",
               "--eval.interval", "25")
    out = tmp_path / "out"
    for name in ("final", "step-00000025", "step-00000050"):
        for f in ("lit_model.pth", "model_config.yaml", "tokenizer.json", "tokenizer_config.json"):
            assert (out / name / f).is_file(), (name, f)
    assert (out / "checkpoints" / "last.ckpt").exists()
    assert (out / "config.yaml").is_file()

    rows = read_metrics(out)
    losses = [v for _, v in series(rows, "train/loss")]
    assert len(losses) >= 45
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 1.0, (first, last)  # ~8.3 (ln 4096) down to < 7 on real text
    assert series(rows, "val/loss/en") and series(rows, "lr")

    # A litcpt checkpoint loads into litgpt.GPT and generates text through litgpt's API.
    from litgpt.generate.base import generate

    model = load_gpt(out / "final")
    tokenizer = Tokenizer(out / "final")
    prompt = tokenizer.encode("ROMEO:")
    model.set_kv_cache(batch_size=1)
    tokens = generate(model, prompt, max_returned_tokens=len(prompt) + 10, temperature=0.0)
    assert tokens.shape[0] == len(prompt) + 10
    assert isinstance(tokenizer.decode(tokens), str)


def test_litgpt_generate_cli_loads_final(tmp_path):
    recipe = tiny_recipe(tmp_path)
    run_litcpt("pretrain", "--config", str(recipe), "--train.max_steps", "4")
    proc = run_litgpt("generate", str(tmp_path / "out" / "final"), "--prompt", "To be", "--max_new_tokens", "5")
    assert "To be" in proc.stdout


def test_killed_run_resumes_exactly(tmp_path):
    """A run killed after a checkpoint and resumed ends with bitwise the weights of an uninterrupted run."""
    straight = tiny_recipe(tmp_path / "a", **{"train.max_steps": 40})
    run_litcpt("pretrain", "--config", str(straight))

    killed = tiny_recipe(tmp_path / "b", **{"train.max_steps": 40})

    env = child_env()
    # killed once last.ckpt exists (step 10), at the latest paused in the step-20 saves (the 3rd .ckpt save)
    proc = start_paused_at_save(3, tmp_path / "paused", "pretrain", "--config", str(killed), env=env)
    ckpt = tmp_path / "b" / "out" / "checkpoints" / "last.ckpt"  # first written at step 10
    wait_for(ckpt, proc, or_marker=tmp_path / "paused")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists()
    assert not (tmp_path / "b" / "out" / "final").exists(), "killed too late to test resume"

    run_litcpt("pretrain", "--config", str(killed), "--resume", "true")
    a = torch.load(tmp_path / "a" / "out" / "final" / "lit_model.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "out" / "final" / "lit_model.pth", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the resumed run logged into a new version: nothing the killed run wrote was overwritten
    assert len(list((tmp_path / "b" / "out" / "logs").glob("version_*"))) == 2


def test_continue_from_litcpt_checkpoint_is_a_new_stage(tmp_path):
    first = tiny_recipe(tmp_path / "s1", **{"train.max_steps": 10})
    run_litcpt("pretrain", "--config", str(first))
    second = tiny_recipe(tmp_path / "s2", **{"train.max_steps": 10})
    run_litcpt("pretrain", "--config", str(second), "--initial_checkpoint_dir", str(tmp_path / "s1/out/final"))
    lrs = [v for _, v in series(read_metrics(tmp_path / "s2" / "out"), "lr")]
    assert lrs[0] < 0.5 * max(lrs), "the continued stage re-warms from ~0"


def test_compiled_model_writes_plain_litgpt_keys(tmp_path):
    """`train.compile: true` compiles in place: the checkpoint keys stay those of a plain litgpt GPT."""
    run_litcpt("pretrain", "--config", str(tiny_recipe(tmp_path)), "--train.max_steps", "3", "--train.compile", "true")
    final = tmp_path / "out" / "final"
    model = GPT(Config.from_file(final / "model_config.yaml"))
    model.load_state_dict(torch.load(final / "lit_model.pth", weights_only=True), strict=True)


def test_activation_checkpointing_gives_the_same_training(tmp_path):
    """Recomputing Blocks in backward changes memory, not the math: same losses, same final weights."""
    plain = tiny_recipe(tmp_path / "plain", **{"train.max_steps": 4})
    ckpt = tiny_recipe(tmp_path / "ac", **{"train.max_steps": 4, "train.activation_checkpointing": True})
    run_litcpt("pretrain", "--config", str(plain))
    run_litcpt("pretrain", "--config", str(ckpt))
    a = torch.load(tmp_path / "plain" / "out" / "final" / "lit_model.pth", weights_only=True)
    b = torch.load(tmp_path / "ac" / "out" / "final" / "lit_model.pth", weights_only=True)
    assert a.keys() == b.keys()  # no checkpoint-wrapper prefixes leak into the LitGPT checkpoint
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_model_name_builds_a_litgpt_config(tmp_path):
    """`model_name: pythia-14m` (a litgpt config name) instead of an explicit model_config."""
    recipe = tiny_recipe(tmp_path)
    run_litcpt("pretrain", "--config", str(recipe), "--model_config", "null", "--model_name", "pythia-14m",
               "--train.max_seq_length", "32", "--train.max_steps", "2", "--eval.max_iters", "1")
    config = Config.from_file(tmp_path / "out" / "final" / "model_config.yaml")
    assert config.name == "pythia-14m" and config.n_layer == 6 and config.n_embd == 128
