"""``litcpt reward`` from a reward checkpoint continues that checkpoint's head (kind, token, weights); head arguments
that contradict it are one-line errors, before any data or model work."""

from __future__ import annotations

import json

import pytest

from litcpt.runtime.tokenizers import load_checked_tokenizer
from litcpt.training.reward import resolve_head
from tests.conftest import make_checkpoint, tiny_config
from tests.helpers import initial_val_and_scored, run_litcpt, write_pairs


def reward_run(tmp_path, checkpoint, name, **options):
    """Two optimizer steps of ``litcpt reward`` (the command's function) with a step-0 validation pass."""
    from litcpt.commands.reward import setup
    from litcpt.data import Preference
    from litcpt.training.args import EvalArgs, TrainArgs

    data = Preference(train_data_path=write_pairs(tmp_path / "train.jsonl", 8),
                      val_data_path=write_pairs(tmp_path / "val.jsonl", 4), max_length=64)
    out = setup(checkpoint, out_dir=tmp_path / name, data=data,
                train=TrainArgs(global_batch_size=4, micro_batch_size=4, max_steps=2, save_interval=None),
                eval=EvalArgs(interval=2, max_iters=1, initial_validation=True), accelerator="cpu",
                optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 3e-3}}, **options)
    return out, data


@pytest.mark.slow
@pytest.mark.parametrize("head", ["linear", "logit"])
def test_reward_run_continues_from_a_reward_final(tmp_path, head):
    """A second run from the first's ``final/`` starts where it ended: step-0 validation == a scoring pass of
    ``final/``; the head kind and token are kept."""
    base = make_checkpoint(tmp_path / "base", tiny_config(block_size=128))
    first, _ = reward_run(tmp_path, base, "first", head=head, head_token_id=5 if head == "logit" else None)
    second, data = reward_run(tmp_path, first, "second")
    at_start, scored = initial_val_and_scored(tmp_path / "second", data, first)
    assert at_start == pytest.approx(scored, abs=1e-5, rel=0)
    meta = json.loads((second / "reward_model.json").read_text())
    assert meta["head"] == head and meta["token_id"] == (5 if head == "logit" else None)
    assert meta["base_checkpoint"] == str(first)


def test_head_arguments_that_contradict_a_reward_checkpoint_are_errors(tmp_path, tokenizer):
    """``head``, ``head_token``, ``head_token_id`` must agree with the reward checkpoint's ``reward_model.json``;
    the CLI says so in one line, before training."""
    import torch

    ckpt = make_checkpoint(tmp_path / "rm", tiny_config(block_size=128))
    torch.save({"weight": torch.full((1, 32), 0.5), "bias": torch.tensor([0.25])}, ckpt / "reward_head.pth")
    (ckpt / "reward_model.json").write_text(json.dumps({"head": "logit", "token_id": 5, "loss_type": "bradley_terry",
                                                       "base_checkpoint": None}))
    tok = load_checked_tokenizer(ckpt, tiny_config(), field="checkpoint_dir")
    head, token_id, state = resolve_head(ckpt, None, None, None, tok)
    assert (head, token_id) == ("logit", 5) and float(state["bias"]) == 0.25
    assert resolve_head(ckpt, "logit", None, 5, tok)[:2] == ("logit", 5)
    with pytest.raises(ValueError, match="head: linear conflicts with the reward checkpoint .* whose head is logit"):
        resolve_head(ckpt, "linear", None, None, tok)
    with pytest.raises(ValueError, match="token id 6 conflicts .* reads token id 5"):
        resolve_head(ckpt, None, None, 6, tok)
    assert resolve_head(make_checkpoint(tmp_path / "lm"), None, None, None, tok) == ("linear", None, None)
    proc = run_litcpt("reward", "--checkpoint_dir", str(ckpt), "--head", "linear", "--out_dir", str(tmp_path / "o"),
                      check=False)
    assert proc.returncode != 0 and "head: linear conflicts" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    (ckpt / "reward_model.json").unlink()
    with pytest.raises(FileNotFoundError, match="has reward_head.pth but no reward_model.json"):
        resolve_head(ckpt, None, None, None, tok)
