"""DPO: response log-probs (shift, prompt/padding masking), loss and implicit rewards by hand, training through the
harness, frozen reference, precomputed reference, bad inputs, LitGPT export, the tiny recipe."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from litgpt import GPT, Config, Tokenizer

from litcpt import assets
from litcpt.data.preference.batching import collate_preference
from litcpt.data.preference.pair_rows import PreferencePair
from litcpt.data.preference.pair_tokens import TokenizedPair, tokenize_pairs
from litcpt.models.dpo import DPOModel
from litcpt.models.dpo_checks import check_reference_compatible, check_scorable
from litcpt.models.dpo_reference import ReferenceLogps
from litcpt.models.logprobs import (
    masked_logps,
    pair_logps,
    response_logps,
    scored_token_counts,
    sequence_logps,
    token_logps,
)
from litcpt.runtime.checkpoint import load_weights
from litcpt.training.args import EvalArgs, TrainArgs
from tests.conftest import make_checkpoint, tiny_config
from tests.helpers import REPO, read_metrics, run_litcpt, series

PAIRS = [
    PreferencePair("Question: what is two plus two?", " Four.", " I would rather talk about the weather today."),
    PreferencePair("Hi", " Hello! How can I help you?", " Go away."),
    PreferencePair("Name a colour of the sky on a clear day.", " Blue.", " Blue, probably, but who knows really."),
]
ROWS = [{"prompt": f"Question {i}: what is {i} plus {i}?", "chosen": f" It is {2 * i}.",
         "rejected": f" No idea, maybe {3 * i + 1}."} for i in range(8)]


def tiny_dpo_recipe(tmp_path, out: str = "out", *, name: str = "dpo", steps: int = 2, lr: float | None = None,
                    **train) -> Path:
    """``recipes/tiny/<name>.yaml`` on :data:`ROWS` (train and validation) from a random tiny policy: ``steps``
    optimizer steps of four pairs, one validation batch at the last, into ``tmp_path / out``; ``lr``: the
    optimizer's; ``train``: more ``train`` keys. Written to ``tmp_path / "<name>.yaml"``, whose path it returns."""
    recipe = yaml.safe_load((REPO / f"recipes/tiny/{name}.yaml").read_text())
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS))
    recipe.update(checkpoint_dir=str(make_checkpoint(tmp_path / "policy")), out_dir=str(tmp_path / out))
    recipe["data"]["init_args"].update(train_data_path=str(data), val_data_path=str(data))
    recipe["train"].update(max_steps=steps, global_batch_size=4, log_interval=1, **train)
    recipe["eval"].update(interval=steps, max_iters=1)
    if lr is not None:
        recipe["optimizer"]["init_args"]["lr"] = lr
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _gpt(checkpoint_dir):
    model = GPT(Config.from_file(checkpoint_dir / "model_config.yaml"))
    load_weights(model, checkpoint_dir)
    return model.eval()


def _batch(pairs=PAIRS, pad_id=7, max_length=None, truncation="left"):
    tokenizer = Tokenizer(assets.tokenizer_dir())
    items, _ = tokenize_pairs(pairs, tokenizer, max_length=max_length, truncation=truncation)
    return items, collate_preference(items, pad_id=pad_id)


def hand_logps(model, ids, prompt_length, average=False):
    """log π(response | prompt) of one *unpadded* sequence with a per-token loop (float64 log-softmax)."""
    with torch.no_grad():
        logits = model(torch.as_tensor(ids).view(1, -1))[0].double()
    terms = [F.log_softmax(logits[t - 1], -1)[int(ids[t])].item() for t in range(max(prompt_length, 1), len(ids))]
    return sum(terms) / len(terms) if average else sum(terms)


def hand_pair_logps(model, items, average=False):
    chosen = [hand_logps(model, it.chosen_ids, it.chosen_prompt_length, average) for it in items]
    rejected = [hand_logps(model, it.rejected_ids, it.rejected_prompt_length, average) for it in items]
    return torch.tensor(chosen, dtype=torch.float64), torch.tensor(rejected, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------- log-probs
def test_token_logps_is_log_softmax_gather_in_any_precision():
    logits = torch.randn(3, 5, 11) * 4
    targets = torch.randint(0, 11, (3, 5))
    expected = logits.double().log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(token_logps(logits, targets).double(), expected, atol=1e-5, rtol=1e-5)
    low = token_logps(logits.bfloat16(), targets)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low.double(), logits.bfloat16().double().log_softmax(-1).gather(
        -1, targets.unsqueeze(-1)).squeeze(-1), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="logits and targets"):
        token_logps(logits, targets[:, :2])


def test_masked_logps_sum_average_and_empty_rows():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    mask = torch.tensor([[False, True, True], [True, False, False], [False, False, False]])
    assert masked_logps(per_token, mask).tolist() == [5.0, 4.0, 0.0]
    assert masked_logps(per_token, mask, average=True).tolist() == [2.5, 4.0, 0.0]


def test_shift_logits_at_t_score_token_t_plus_1():
    """A model whose logits at position t put all mass on a chosen token shows which token position t predicts."""

    class Echo(torch.nn.Module):  # logits[t] = one-hot(input[t] + 1): "the next token is this token + 1"
        def forward(self, idx):
            return F.one_hot(idx + 1, 16).float() * 50.0

    ids = torch.tensor([[1, 2, 3, 4, 9, 0]])            # prompt 1 2 | response 3 4 9 | padding 0
    mask = torch.tensor([[False, False, True, True, True, False]])
    logps = sequence_logps(Echo(), ids, mask)
    # 3 follows 2 (predicted), 4 follows 3 (predicted), 9 follows 4 (not predicted: mass on 5)
    log_z = math.log(math.exp(50.0) + 15)
    expected = 2 * (50.0 - log_z) + (0.0 - log_z)
    assert logps.item() == pytest.approx(expected, abs=1e-4)
    assert scored_token_counts(mask).tolist() == [3]


def test_sequence_logps_masks_prompt_and_padding_like_a_hand_loop(tiny_checkpoint):
    model = _gpt(tiny_checkpoint)
    items, batch = _batch()
    hand_c, hand_r = hand_pair_logps(model, items)
    hand = torch.cat([hand_c, hand_r]).float()
    with torch.no_grad():
        plain = sequence_logps(model, batch["input_ids"], batch["response_mask"])
        fast = response_logps(model, batch["input_ids"], batch["response_mask"])
        shared = torch.cat(pair_logps(model, batch, share_prompt=True))
        unshared = torch.cat(pair_logps(model, batch, share_prompt=False))
    for got in (plain, fast, shared, unshared):
        torch.testing.assert_close(got, hand, atol=2e-4, rtol=1e-5)
    # average = sum / number of scored tokens
    hand_avg = torch.cat(hand_pair_logps(model, items, average=True)).float()
    with torch.no_grad():
        torch.testing.assert_close(sequence_logps(model, batch["input_ids"], batch["response_mask"], average=True),
                                   hand_avg, atol=1e-5, rtol=1e-5)
    # the value of the padding token never matters
    _, other_pad = _batch(pad_id=123)
    with torch.no_grad():
        torch.testing.assert_close(sequence_logps(model, other_pad["input_ids"], other_pad["response_mask"]), plain)


def test_prompt_sharing_with_truncated_unequal_prompts_matches_plain_path(tiny_checkpoint):
    """keep_end truncation cuts chosen and rejected prompts differently: only the truly shared prefix is reused."""
    model = _gpt(tiny_checkpoint)
    long_prompt = PreferencePair("word " * 20 + "then a question?", " Short answer.", " A much longer answer " * 3)
    items, batch = _batch([long_prompt, *PAIRS], max_length=30, truncation="keep_end")
    assert items[0].chosen_prompt_length != items[0].rejected_prompt_length
    with torch.no_grad():
        plain = torch.cat(pair_logps(model, batch))
        shared = torch.cat(pair_logps(model, batch, share_prompt=True))
    torch.testing.assert_close(shared, plain, atol=2e-4, rtol=1e-5)
    torch.testing.assert_close(plain, torch.cat(hand_pair_logps(model, items)).float(), atol=2e-4, rtol=1e-5)


# ----------------------------------------------------------------------------------------- loss by hand
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_dpo_loss_and_implicit_rewards_match_hand_computation(tmp_path, loss_type):
    policy_dir = make_checkpoint(tmp_path / "policy", seed=0)
    ref_dir = make_checkpoint(tmp_path / "ref", seed=1)
    beta = 0.3
    module = DPOModel(tiny_config(), checkpoint_dir=policy_dir, ref_checkpoint_dir=ref_dir, beta=beta,
                      loss_type=loss_type)
    items, batch = _batch()
    pc, pr = hand_pair_logps(_gpt(policy_dir), items)
    rc, rr = hand_pair_logps(_gpt(ref_dir), items)
    h = (pc - rc) - (pr - rr)
    expected = {"sigmoid": -F.logsigmoid(beta * h), "ipo": (h - 1 / (2 * beta)) ** 2,
                "hinge": torch.relu(1 - beta * h)}[loss_type]
    values = module.pair_losses(batch)
    torch.testing.assert_close(values["loss"].double(), expected, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(values["rewards/chosen"].double(), beta * (pc - rc), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(values["rewards/rejected"].double(), beta * (pr - rr), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(values["rewards/margins"].double(), beta * h, atol=1e-4, rtol=1e-4)
    assert values["rewards/accuracies"].tolist() == (beta * (pc - rc) > beta * (pr - rr)).float().tolist()
    torch.testing.assert_close(values["logps/chosen"].double(), pc, atol=2e-4, rtol=1e-5)
    loss = module.training_step(batch, 0)
    torch.testing.assert_close(loss.double(), expected.mean(), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("loss_type", ["ipo", "sigmoid"])
def test_average_logps_logs_trls_rewards_of_the_summed_log_ratio(tmp_path, loss_type):
    """With ``average_logps: true`` the loss reads the length-averaged log-ratio (for ``ipo``: TRL >= 0.29's
    length-normalised IPO, ``trl/trainer/dpo_trainer.py`` ``_compute_loss``), but ``rewards/*`` are what TRL logs:
    ``β × (Σ log π − Σ log π_ref)``, the *summed* log-ratio, not β times its per-token mean."""
    policy_dir = make_checkpoint(tmp_path / "policy", seed=0)
    ref_dir = make_checkpoint(tmp_path / "ref", seed=1)
    beta = 0.3
    module = DPOModel(tiny_config(), checkpoint_dir=policy_dir, ref_checkpoint_dir=ref_dir, beta=beta,
                      loss_type=loss_type, average_logps=True)
    items, batch = _batch()
    policy, ref = _gpt(policy_dir), _gpt(ref_dir)
    (pc, pr), (rc, rr) = hand_pair_logps(policy, items), hand_pair_logps(ref, items)
    (apc, apr), (arc, arr) = hand_pair_logps(policy, items, average=True), hand_pair_logps(ref, items, average=True)
    h = (apc - arc) - (apr - arr)  # the length-averaged margin the loss reads
    assert not torch.allclose(pc - rc, apc - arc)  # responses longer than one token: sum and mean differ
    expected = {"sigmoid": -F.logsigmoid(beta * h), "ipo": (h - 1 / (2 * beta)) ** 2}[loss_type]
    values = module.pair_losses(batch)
    torch.testing.assert_close(values["loss"].double(), expected, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(values["rewards/chosen"].double(), beta * (pc - rc), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(values["rewards/rejected"].double(), beta * (pr - rr), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(values["rewards/margins"].double(), beta * ((pc - rc) - (pr - rr)), atol=1e-4,
                               rtol=1e-4)
    torch.testing.assert_close(values["logps/chosen"].double(), apc, atol=1e-5, rtol=1e-5)  # the mean, as the loss


def test_reference_is_frozen_in_eval_mode_and_outside_the_optimizer(tiny_checkpoint):
    module = DPOModel(tiny_config(), checkpoint_dir=tiny_checkpoint)
    module.train()
    assert module.model.training and not module.ref_model.training
    assert not any(p.requires_grad for p in module.ref_model.parameters())
    optimizer = module.configure_optimizers()
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.model.parameters()}
    _, batch = _batch()
    module.training_step(batch, 0).backward()
    assert all(p.grad is None for p in module.ref_model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.model.parameters())


def test_policy_and_reference_each_run_one_forward_per_batch(tiny_checkpoint):
    module = DPOModel(tiny_config(), checkpoint_dir=tiny_checkpoint)
    calls = {"policy": [], "ref": []}
    module.model.register_forward_hook(lambda m, i, o: calls["policy"].append(i[0].shape[0]))
    module.ref_model.register_forward_hook(lambda m, i, o: calls["ref"].append(i[0].shape[0]))
    _, batch = _batch()
    module.training_step(batch, 0)
    assert calls == {"policy": [6], "ref": [6]}


def test_precomputed_reference_gives_the_same_loss_as_the_reference_model(tmp_path):
    policy_dir = make_checkpoint(tmp_path / "policy", seed=0)
    ref_dir = make_checkpoint(tmp_path / "ref", seed=1)
    items, batch = _batch()
    rc, rr = hand_pair_logps(_gpt(ref_dir), items)
    table = torch.full((10, 2), float("nan"))
    table[batch["index"], 0], table[batch["index"], 1] = rc.float(), rr.float()
    cached = DPOModel(tiny_config(), checkpoint_dir=policy_dir, ref_checkpoint_dir=ref_dir,
                      reference_logps=ReferenceLogps({"train": table}))
    live = DPOModel(tiny_config(), checkpoint_dir=policy_dir, ref_checkpoint_dir=ref_dir)
    assert cached.ref_model is None
    torch.testing.assert_close(cached.training_step(batch, 0), live.training_step(batch, 0), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="'val' pairs"):
        cached.pair_losses(batch, "val")


def test_saved_hyperparameters_rebuild_the_module_and_its_loss(tmp_path):
    """What load_from_checkpoint does: the saved hyperparameters (the config as a dict, the loss arguments) give the
    same module back."""
    policy_dir = make_checkpoint(tmp_path / "policy", seed=0)
    module = DPOModel(tiny_config(), checkpoint_dir=policy_dir, beta=0.3, loss_type=["sigmoid", "sft"],
                      loss_weights=[1.0, 0.5], label_smoothing=0.1)
    assert isinstance(module.hparams["config"], dict) and module.hparams["loss_type"] == ["sigmoid", "sft"]
    rebuilt = DPOModel(**dict(module.hparams))
    assert rebuilt.loss == module.loss and rebuilt.ref_model is not None
    _, batch = _batch()
    torch.testing.assert_close(rebuilt.pair_losses(batch)["loss"], module.pair_losses(batch)["loss"])


# -------------------------------------------------------------------------------------------- bad inputs
def test_bad_loss_arguments(tiny_checkpoint):
    with pytest.raises(ValueError, match="beta"):
        DPOModel(tiny_config(), checkpoint_dir=tiny_checkpoint, beta=0.0)
    with pytest.raises(ValueError, match="loss_type"):
        DPOModel(tiny_config(), checkpoint_dir=tiny_checkpoint, loss_type="kto")
    with pytest.raises(ValueError, match="label_smoothing"):
        DPOModel(tiny_config(), checkpoint_dir=tiny_checkpoint, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        DPOModel(tiny_config(), checkpoint_dir=None)


def test_reference_with_other_vocab_or_tokenizer_is_rejected_naming_both_dirs(tmp_path):
    from litcpt.commands.dpo import setup

    policy = make_checkpoint(tmp_path / "policy")
    other_vocab = make_checkpoint(tmp_path / "ref-vocab", tiny_config(vocab_size=4000, padded_vocab_size=4032))
    with pytest.raises(ValueError, match="policy.*ref-vocab.*vocab_size"):
        setup(policy, ref_checkpoint_dir=other_vocab, out_dir=tmp_path / "out")
    other_tok = tmp_path / "ref-tok"
    shutil.copytree(policy, other_tok)
    raw = json.loads((other_tok / "tokenizer.json").read_text())
    vocab = raw["model"]["vocab"]
    a, b = sorted(vocab)[100:102]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (other_tok / "tokenizer.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="policy.*ref-tok.*different tokenizers"):
        check_reference_compatible(policy, other_tok)
    check_reference_compatible(policy, policy)


def test_pairs_without_a_scorable_response_token_are_rejected():
    good = TokenizedPair(0, torch.tensor([5, 6, 7]), torch.tensor([5, 8]), 1, 1)
    check_scorable([good])
    bad = TokenizedPair(3, torch.tensor([5, 6, 7]), torch.tensor([9]), 1, 0)   # the whole prompt was truncated away
    with pytest.raises(ValueError, match=r"pair 3 \(rejected\): no response token"):
        check_scorable([good, bad], source="train data")


def test_setup_rejects_bad_arguments_before_training(tmp_path, tiny_checkpoint):
    from litcpt.commands.dpo import setup
    from litcpt.data.preference.datamodule import Preference

    with pytest.raises(FileNotFoundError, match="checkpoint_dir"):
        setup(tmp_path / "missing", out_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="max_tokens"):
        setup(tiny_checkpoint, out_dir=tmp_path / "out", train=TrainArgs(max_tokens=1000))
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS))
    with pytest.raises(ValueError, match="padding_side"):
        setup(tiny_checkpoint, out_dir=tmp_path / "out", data=Preference(train_data_path=data, padding_side="left"),
              train=TrainArgs(global_batch_size=4, micro_batch_size=4, max_steps=1), accelerator="cpu")


# ---------------------------------------------------------------------------------------------- training
def _train(tmp_path, name, policy, *, ref=None, precompute=False, steps=12, lr=3e-3):
    from litcpt.commands.dpo import setup
    from litcpt.data.preference.datamodule import Preference

    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS))
    out = setup(policy, ref_checkpoint_dir=ref, out_dir=tmp_path / name, precompute_ref=precompute,
                data=Preference(train_data_path=data, val_data_path=data),
                train=TrainArgs(global_batch_size=8, micro_batch_size=4, max_steps=steps, save_interval=None),
                eval=EvalArgs(interval=100, max_iters=2), accelerator="cpu", devices=1,
                optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": lr}})
    return out, read_metrics(tmp_path / name)


@pytest.mark.slow
def test_training_separates_the_pairs_keeps_the_reference_and_exports_litgpt(tmp_path):
    policy = make_checkpoint(tmp_path / "policy", seed=0)
    final, rows = _train(tmp_path, "run", policy)
    accuracy = [v for _, v in series(rows, "train/rewards/accuracies")]
    margins = [v for _, v in series(rows, "train/rewards/margins")]
    assert len(accuracy) == 12 and accuracy[0] == 0.0 and abs(margins[0]) < 1e-6   # policy == reference at step 0
    assert accuracy[-1] >= 0.875 and margins[-1] > margins[0] + 0.5, (accuracy, margins)
    losses = [v for _, v in series(rows, "train/loss")]
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5) and losses[-1] < 0.4
    assert series(rows, "val/rewards/accuracies") and series(rows, "val/loss")
    for key in ("train/rewards/chosen", "train/rewards/rejected", "train/logps/chosen", "train/logps/rejected"):
        assert series(rows, key), key

    # the reference inside the Lightning checkpoint is bit-for-bit the starting weights
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    start = torch.load(policy / "lit_model.pth", weights_only=True)
    ref_state = {k[len("ref_model."):]: v for k, v in state["state_dict"].items() if k.startswith("ref_model.")}
    assert ref_state.keys() == start.keys()
    assert all(torch.equal(ref_state[k], start[k]) for k in start)

    # the exported policy is a plain LitGPT checkpoint that generates, and it moved away from the start
    exported = torch.load(final / "lit_model.pth", weights_only=True)
    assert exported.keys() == start.keys() and any(not torch.equal(exported[k], start[k]) for k in start)
    model = GPT(Config.from_file(final / "model_config.yaml"))
    model.load_state_dict(exported, strict=True)
    from litgpt.generate.base import generate

    tokenizer = Tokenizer(final)
    model.set_kv_cache(batch_size=1)
    out = generate(model.eval(), tokenizer.encode("Question 3: what is 3 plus 3?"), max_returned_tokens=24,
                   temperature=0.0)
    assert out.ndim == 1 and len(out) > 10
    meta = json.loads((final / "dpo.json").read_text())
    assert meta["beta"] == 0.1 and meta["loss_type"] == "sigmoid"
    assert meta["reference_checkpoint_dir"] == str(policy.resolve())


@pytest.mark.slow
def test_precomputed_reference_run_matches_on_the_fly_run(tmp_path):
    policy = make_checkpoint(tmp_path / "policy", seed=0)
    ref = make_checkpoint(tmp_path / "ref", seed=1)
    _, live = _train(tmp_path, "live", policy, ref=ref, steps=4)
    _, cached = _train(tmp_path, "cached", policy, ref=ref, precompute=True, steps=4)
    live_loss = [v for _, v in series(live, "train/loss")]
    cached_loss = [v for _, v in series(cached, "train/loss")]
    assert len(live_loss) == len(cached_loss) == 4
    assert abs(live_loss[0] - math.log(2)) > 1e-3          # a different reference: the first loss is not log 2
    torch.testing.assert_close(torch.tensor(cached_loss), torch.tensor(live_loss), atol=1e-4, rtol=1e-4)

    # the cache holds every train pair, keyed by pair index, equal to a per-sequence hand computation
    cache = ReferenceLogps.load(tmp_path / "cached" / "ref_logps.pt")
    assert cache.tables["train"].shape == (8, 2) and not torch.isnan(cache.tables["train"]).any()
    assert cache.meta["reference"] == str(ref.resolve())
    tokenizer = Tokenizer(policy)
    from litcpt.data.preference.pair_rows import PreferencePair as Pair

    items, _ = tokenize_pairs([Pair(r["prompt"], r["chosen"], r["rejected"]) for r in ROWS], tokenizer)
    hc, hr = hand_pair_logps(_gpt(ref), items)
    torch.testing.assert_close(cache.tables["train"][:, 0].double(), hc, atol=2e-4, rtol=1e-5)
    torch.testing.assert_close(cache.tables["train"][:, 1].double(), hr, atol=2e-4, rtol=1e-5)


@pytest.mark.slow
def test_tiny_recipe_runs_through_the_cli(tmp_path):
    path = tiny_dpo_recipe(tmp_path, micro_batch_size=2)
    run_litcpt("dpo", "--config", str(path), "--precompute_ref", "true", timeout=300)
    final = tmp_path / "out" / "final"
    assert (final / "dpo.json").is_file() and (final / "config.yaml").is_file()
    assert (tmp_path / "out" / "ref_logps.pt").is_file()
    assert series(read_metrics(tmp_path / "out"), "train/rewards/accuracies")


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("strategy,precompute", [("fsdp2", False), ("ddp", True)])
def test_two_ranks_match_one_rank(tmp_path, strategy, precompute):
    """2 gloo ranks (FSDP2 shards the reference like the policy; DDP with a precomputed, gathered reference) give
    the metrics of one process on the same 8 pairs."""
    policy = make_checkpoint(tmp_path / "policy", seed=0)
    ref = make_checkpoint(tmp_path / "ref", seed=1)
    _, single = _train(tmp_path, "single", policy, ref=ref, steps=3)
    data = tmp_path / "pairs.jsonl"
    run_litcpt("dpo", "--checkpoint_dir", str(policy), "--ref_checkpoint_dir", str(ref),
               "--out_dir", str(tmp_path / "multi"), "--data", "litcpt.data.Preference",
               "--data.train_data_path", str(data), "--data.val_data_path", str(data),
               "--train.global_batch_size", "8", "--train.micro_batch_size", "2", "--train.max_steps", "3",
               "--train.save_interval", "null", "--eval.interval", "100", "--eval.max_iters", "2",
               "--optimizer", '{"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.003}}',
               "--precompute_ref", str(precompute).lower(), "--devices", "2", "--strategy", strategy,
               "--accelerator", "cpu", timeout=600)
    multi = read_metrics(tmp_path / "multi")
    for key in ("train/loss", "train/rewards/margins", "val/loss", "val/rewards/accuracies"):
        a, b = [v for _, v in series(single, key)], [v for _, v in series(multi, key)]
        assert len(a) == len(b) > 0, key
        torch.testing.assert_close(torch.tensor(b), torch.tensor(a), atol=1e-4, rtol=1e-4, msg=key)
    exported = torch.load(tmp_path / "multi" / "final" / "lit_model.pth", weights_only=True)
    GPT(tiny_config()).load_state_dict(exported, strict=True)
