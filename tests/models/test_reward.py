"""Reward model: heads, last-token scoring, one forward for both responses, export/load, training, `litcpt score`."""

from __future__ import annotations

import json

import pytest
import torch
from litgpt import GPT, Config

from litcpt.models.reward import RewardModel, gather_last, load_reward_model
from litcpt.runtime.checkpoint import load_weights
from tests.conftest import make_checkpoint, tiny_config
from tests.helpers import run_litcpt


def test_gather_last_picks_each_rows_index():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float).view(2, 4, 3)
    out = gather_last(hidden, torch.tensor([1, 3]))
    assert torch.equal(out, torch.stack([hidden[0, 1], hidden[1, 3]]))


def test_logit_head_is_the_lm_logit_of_its_token(tiny_checkpoint):
    config = Config.from_file(tiny_checkpoint / "model_config.yaml")
    lm = GPT(config)
    load_weights(lm, tiny_checkpoint)
    rm = RewardModel(config, checkpoint_dir=tiny_checkpoint, head="logit", token_id=7)
    ids = torch.randint(1, 4096, (3, 10))
    last = torch.tensor([9, 4, 6])
    with torch.no_grad():
        expected = lm(ids)[torch.arange(3), last, 7]
        got = rm(ids, last)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_right_padding_does_not_change_scores(tiny_checkpoint):
    rm = RewardModel(Config.from_file(tiny_checkpoint / "model_config.yaml"), checkpoint_dir=tiny_checkpoint)
    ids = torch.randint(1, 4096, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(rm(ids, torch.tensor([5])), rm(padded, torch.tensor([5])))


def test_chosen_and_rejected_share_one_forward(tiny_checkpoint):
    rm = RewardModel(Config.from_file(tiny_checkpoint / "model_config.yaml"), checkpoint_dir=tiny_checkpoint)
    calls = []
    rm.model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    batch = {"input_ids": torch.randint(1, 4096, (4, 8)), "last_index": torch.tensor([7, 7, 5, 6])}
    r_c, r_r = rm.pair_scores(batch)
    assert len(calls) == 1 and calls[0][0] == 4
    assert r_c.shape == r_r.shape == (2,)


def test_bad_head_arguments(tiny_checkpoint):
    config = Config.from_file(tiny_checkpoint / "model_config.yaml")
    with pytest.raises(ValueError, match="head"):
        RewardModel(config, head="mlp")
    with pytest.raises(ValueError, match="head_token_id"):
        RewardModel(config, head="logit", token_id=10**6)


def test_loss_type_is_checked(tiny_checkpoint):
    config = Config.from_file(tiny_checkpoint / "model_config.yaml")
    rm = RewardModel(config, loss_type="logistic")
    assert rm.loss_type == "logistic" and rm.metadata()["loss_type"] == "logistic"
    with pytest.raises(ValueError, match="loss_type: expected"):
        RewardModel(config, loss_type="hinge")


def test_load_reward_model_rejects_plain_lm_checkpoint(tiny_checkpoint):
    with pytest.raises(FileNotFoundError, match="not a reward-model checkpoint"):
        load_reward_model(tiny_checkpoint)


@pytest.mark.slow
@pytest.mark.parametrize("head", ["linear", "logit"])
def test_reward_training_learns_pairs_and_exports(tmp_path, head):
    """A few CPU steps on 16 pairs raise pairwise accuracy; the export loads as a GPT and as a reward model."""
    from litcpt.commands.reward import setup
    from litcpt.data import Preference
    from litcpt.data.preference.pair_loading import load_preference_pairs
    from litcpt.training.args import EvalArgs, TrainArgs

    ckpt = make_checkpoint(tmp_path / "base", tiny_config(block_size=128))
    pairs = load_preference_pairs(__import__("litcpt.assets", fromlist=["x"]).preference_file())[:16]
    data_file = tmp_path / "pairs.jsonl"
    data_file.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                                 for p in pairs))
    data = Preference(train_data_path=data_file, val_data_path=data_file, max_length=128)
    out = setup(ckpt, out_dir=tmp_path / "rm", data=data, head=head,
                train=TrainArgs(global_batch_size=8, micro_batch_size=4, max_steps=40, save_interval=None),
                eval=EvalArgs(interval=40, max_iters=4, initial_validation=True),
                optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 3e-3}}, accelerator="cpu")
    from tests.helpers import read_metrics, series

    acc = series(read_metrics(tmp_path / "rm"), "val/accuracy")
    assert acc[0][1] <= 0.75 and acc[-1][1] >= 0.9, acc

    meta = json.loads((out / "reward_model.json").read_text())
    assert meta["head"] == head
    gpt = GPT(Config.from_file(out / "model_config.yaml"))
    gpt.load_state_dict(torch.load(out / "lit_model.pth", weights_only=True), strict=True)

    rm = load_reward_model(out)
    proc = run_litcpt("score", "--checkpoint_dir", str(out), "--data", str(data_file),
                      "--out_file", str(tmp_path / "scores.jsonl"))
    summary = json.loads((tmp_path / "scores.summary.json").read_text())  # the terminal gets a table
    assert f"accuracy (all pairs)       16  {summary['accuracy']:8.4f}" in proc.stdout
    assert summary["pairs"] == 16 and summary["accuracy"] >= 0.9
    rows = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and {"score_chosen", "score_rejected"} <= rows[0].keys()
    assert rm.head_kind == head


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2", "fsdp"])
def test_reward_trains_on_two_ranks(tmp_path, strategy):
    """`litcpt reward` on 2 gloo ranks: the head is trained in sync and exported once, loadable for scoring."""
    ckpt = make_checkpoint(tmp_path / "base", tiny_config(block_size=128))
    from litcpt.assets import preference_file
    from litcpt.data.preference.pair_loading import load_preference_pairs

    pairs = load_preference_pairs(preference_file())[:16]
    data_file = tmp_path / "pairs.jsonl"
    data_file.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                                 for p in pairs))
    run_litcpt("reward", "--checkpoint_dir", str(ckpt), "--out_dir", str(tmp_path / "rm"),
               "--data", "litcpt.data.Preference", "--data.train_data_path", str(data_file),
               "--data.val_data_path", str(data_file), "--data.max_length", "128",
               "--train.global_batch_size", "8", "--train.micro_batch_size", "2", "--train.max_steps", "6",
               "--train.save_interval", "null", "--eval.interval", "6", "--eval.max_iters", "4",
               "--optimizer", '{"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.003}}',
               "--devices", "2", "--strategy", strategy, "--accelerator", "cpu", timeout=900)
    out = tmp_path / "rm" / "final"
    rm = load_reward_model(out)
    head = torch.load(out / "reward_head.pth", weights_only=True)
    assert head["weight"].shape == (1, rm.config.n_embd)
    from tests.helpers import read_metrics, series

    assert series(read_metrics(tmp_path / "rm"), "val/accuracy")


def test_reward_and_dpo_metrics_are_one_weighted_mean_collection():
    from litcpt.models.pair_metrics import DPOMetrics, RewardPairMetrics

    rm = RewardPairMetrics()
    rm.update(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))  # a win and a tie (half)
    out = rm.compute()
    assert out["accuracy"].item() == pytest.approx(0.75) and out["margin"].item() == pytest.approx(0.5)
    assert out["reward_mean"].item() == pytest.approx(0.25)
    assert out["reward_std"].item() == pytest.approx(0.1875 ** 0.5)
    dm = DPOMetrics(("loss/sigmoid",))
    # the 2nd pair is a duplicate
    dm.update({name: torch.tensor([1.0, 9.0]) for name in dm.names}, weight=torch.tensor([1.0, 0.0]))
    dm.update({name: torch.tensor([float(i)]) for i, name in enumerate(dm.names)})  # names differ from here on
    values = dm.compute()
    assert dm.count == 2 and list(values) == list(dm.names)
    assert [values[name].item() for name in dm.names] == pytest.approx([(1 + i) / 2 for i in range(len(dm.names))])
    dm.reset()
    assert dm.count == 0
