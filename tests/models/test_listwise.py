"""Listwise reward models: the losses against closed forms, the metrics, the data module, one training step, and
`litcpt reward` from a recipe on one-chosen/three-rejected rows."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from litcpt import assets
from litcpt.losses import preference as losses
from litcpt.losses.listwise import ListwiseMetrics, listwise_bradley_terry, listwise_outcomes, plackett_luce, to_matrix
from tests.conftest import make_checkpoint, tiny_config
from tests.helpers import read_metrics, run_litcpt, series


def test_to_matrix_layout_and_gradient():
    flat = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], requires_grad=True)
    matrix, mask = to_matrix(flat, [2, 3])
    assert matrix.tolist() == [[1.0, 2.0, 0.0], [3.0, 4.0, 5.0]]
    assert mask.tolist() == [[True, True, False], [True, True, True]]
    matrix.sum().backward()
    assert flat.grad.tolist() == [1.0] * 5
    with pytest.raises(ValueError, match="at least 2 rows"):
        to_matrix(torch.zeros(3), [1, 2])


def test_listwise_bradley_terry_closed_forms():
    # one rejected: the pairwise loss
    r_c, r_r = torch.tensor([0.3, -1.0]), torch.tensor([0.1, 0.5])
    matrix, mask = to_matrix(torch.stack([r_c, r_r], 1).flatten(), [2, 2])
    assert listwise_bradley_terry(matrix, mask).item() == pytest.approx(losses.bradley_terry(r_c, r_r).item())
    # prompt 0: chosen 2 vs (1, 0, 3); prompt 1: chosen 0 vs (1): mean over each prompt's rejected, then prompts
    matrix, mask = to_matrix(torch.tensor([2.0, 1.0, 0.0, 3.0, 0.0, 1.0]), [4, 2])
    nll = lambda d: math.log1p(math.exp(-d))
    want = ((nll(1.0) + nll(2.0) + nll(-1.0)) / 3 + nll(-1.0)) / 2
    assert listwise_bradley_terry(matrix, mask).item() == pytest.approx(want, rel=1e-6)


def test_plackett_luce_closed_forms():
    # two items: Bradley–Terry
    matrix, mask = to_matrix(torch.tensor([0.7, -0.2, 1.0, 2.0]), [2, 2])
    bt = losses.bradley_terry(torch.tensor([0.7, 1.0]), torch.tensor([-0.2, 2.0])).item()
    assert plackett_luce(matrix, mask).item() == pytest.approx(bt, rel=1e-6)
    # three items ranked (a, b, c), and a padded row of two
    a, b, c = 1.0, 0.5, -1.0
    matrix, mask = to_matrix(torch.tensor([a, b, c, 0.0, 1.0]), [3, 2])
    lse = lambda *v: math.log(sum(math.exp(x) for x in v))
    row0 = (lse(a, b, c) - a) + (lse(b, c) - b)
    row1 = lse(0.0, 1.0) - 0.0
    assert plackett_luce(matrix, mask).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    flat = torch.tensor([a, b, c, 0.0, 1.0], requires_grad=True)
    plackett_luce(*to_matrix(flat, [3, 2])).backward()
    assert torch.isfinite(flat.grad).all()


def test_outcomes_and_metrics():
    matrix, mask = to_matrix(torch.tensor([2.0, 1.0, 2.0, 0.0, 3.0, 1.0, 2.0]), [4, 3])
    beats_all, wins, margins = listwise_outcomes(matrix, mask)
    assert beats_all.tolist() == [0.0, 1.0]                    # prompt 0 ties one rejected: not a win over all
    assert wins.tolist() == [1.0, 0.5, 1.0, 1.0, 1.0]
    assert margins.tolist() == [1.0, 0.0, 2.0, 2.0, 1.0]
    metrics = ListwiseMetrics()
    metrics.update(matrix, mask)
    values = metrics.compute()
    assert values["accuracy"].item() == 0.5 and values["pair_accuracy"].item() == pytest.approx(4.5 / 5)


def listwise_rows(n=12):
    from litcpt.data.preference.pair_loading import load_preference_pairs

    pairs = load_preference_pairs(assets.preference_file())[: n + 2]
    return [{"prompt": p.prompt, "chosen": p.chosen,
             "rejected": [p.rejected, pairs[i + 1].rejected, pairs[i + 2].rejected]} for i, p in enumerate(pairs[:n])]


def test_data_module_and_one_training_step(tmp_path):
    from litgpt import Tokenizer

    from litcpt.data import Listwise
    from litcpt.models.base import init_weights
    from litcpt.models.reward import RewardModel

    path = tmp_path / "listwise.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in listwise_rows(6)))
    data = Listwise(train_data_path=path, val_data_path=path, max_length=64, ranked=True)
    data.connect(Tokenizer(assets.tokenizer_dir()), batch_size=2)
    data.setup()
    batch = next(iter(data.val_dataloader()))
    assert batch["sizes"] == [4, 4] and batch["input_ids"].shape[0] == 8 and batch["is_duplicate"].tolist() == [0, 0]
    for loss in ("bradley_terry", "plackett_luce", "logistic"):
        torch.manual_seed(0)
        rm = RewardModel(tiny_config(), loss_type=loss, share_prompt=True)
        init_weights(rm.model)                                # random backbone weights (GPT-NeoX init)
        rm.train()
        rm.log = lambda *a, **k: None
        assert rm.can_share_prompt()
        out = rm.training_step(batch, 0)                      # shared-prompt forward, with gradients
        out.backward()
        assert torch.isfinite(out) and rm.head.weight.grad.abs().sum() > 0
        shared_grads = [p.grad.clone() for p in rm.parameters()]
        rm.zero_grad()
        rm.share_prompt = False
        plain = rm.training_step(batch, 0)
        plain.backward()
        assert plain.item() == pytest.approx(out.item(), abs=1e-5)
        for got, want in zip(shared_grads, (p.grad for p in rm.parameters())):
            assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
        scores, mask = rm.listwise_scores(batch)
        if loss == "bradley_terry":
            diffs = scores[:, :1] - scores[:, 1:]
            assert out.item() == pytest.approx(-F.logsigmoid(diffs).mean().item(), rel=1e-5)   # 3 rejected each
        rm.eval()
        with torch.inference_mode():
            shared, _ = rm.listwise_scores(batch, share_prompt=True)
        assert shared.flatten().tolist() == pytest.approx(scores.detach().flatten().tolist(), abs=1e-5)
        assert len({round(v, 5) for v in shared.flatten().tolist()}) > 4


@pytest.mark.slow
def test_litcpt_reward_from_a_recipe_on_listwise_rows(tmp_path):
    ckpt = make_checkpoint(tmp_path / "base", tiny_config(block_size=128))
    path = tmp_path / "listwise.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in listwise_rows(12)))
    recipe = {
        "checkpoint_dir": str(ckpt), "out_dir": str(tmp_path / "rm"), "precision": "32-true",
        "loss_type": "bradley_terry",
        "data": {"class_path": "litcpt.data.Listwise",
                 "init_args": {"train_data_path": str(path), "val_data_path": str(path), "max_length": 128}},
        "train": {"global_batch_size": 4, "micro_batch_size": 4, "max_steps": 30, "log_interval": 1,
                  "save_interval": None},
        "eval": {"interval": 30, "max_iters": 3, "initial_validation": True},
        "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.003}},
        "devices": 1, "accelerator": "cpu",
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    run_litcpt("reward", "--config", str(tmp_path / "recipe.yaml"))
    rows = read_metrics(tmp_path / "rm")
    acc, pair_acc = series(rows, "val/accuracy"), series(rows, "val/pair_accuracy")
    assert len(acc) == 2 and pair_acc[-1][1] > pair_acc[0][1] and acc[-1][1] >= 0.75, (acc, pair_acc)
    from litcpt.models.reward import load_reward_model

    assert load_reward_model(tmp_path / "rm" / "final").head.weight.shape[0] == 1
