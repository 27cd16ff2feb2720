"""The DPO loss family inside DPOModel / `litcpt dpo`: SimPO and MPO recipes end to end, per-component logging,
bco_pair's running mean across steps and resume, WPO / LD-DPO / f-divergence / SFT wiring against the pure
functions, TR-DPO reference syncing, and the errors of impossible combinations."""

from __future__ import annotations

import json

import pytest
import torch

from litcpt.callbacks.sync_reference import SyncReference, mix_into
from litcpt.losses import preference as losses
from litcpt.models.dpo import DPOModel
from litcpt.models.logprobs import token_logps
from litcpt.training.args import EvalArgs, TrainArgs
from tests.conftest import make_checkpoint
from tests.helpers import read_metrics, run_litcpt, series
from tests.models.test_dpo import PAIRS, ROWS, _batch, tiny_dpo_recipe

STEPS = 3


def _recipe_run(tmp_path, name):
    path = tiny_dpo_recipe(tmp_path, name, name=name, steps=STEPS, lr=3e-3, micro_batch_size=4, save_interval=STEPS)
    run_litcpt("dpo", "--config", str(path), timeout=300)
    return tmp_path / name, read_metrics(tmp_path / name)


@pytest.mark.slow
def test_simpo_recipe_trains_without_a_reference_model(tmp_path):
    out, rows = _recipe_run(tmp_path, "simpo")
    loss = [v for _, v in series(rows, "train/loss")]
    assert len(loss) == STEPS and loss[-1] < loss[0], loss
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    assert not any(k.startswith("ref_model.") for k in state)      # no reference model was ever built
    meta = json.loads((out / "final" / "dpo.json").read_text())
    assert meta["reference_free"] and meta["reference_checkpoint_dir"] is None and meta["average_logps"]


@pytest.mark.slow
def test_mpo_recipe_logs_each_component_and_keeps_the_bco_mean(tmp_path):
    out, rows = _recipe_run(tmp_path, "mpo")
    parts = {t: [v for _, v in series(rows, f"train/loss/{t}")] for t in ("sigmoid", "bco_pair", "sft")}
    total = [v for _, v in series(rows, "train/loss")]
    assert all(len(p) == STEPS for p in parts.values()) and len(total) == STEPS
    for i in range(STEPS):
        want = 0.8 * parts["sigmoid"][i] + 0.2 * parts["bco_pair"][i] + parts["sft"][i]
        assert total[i] == pytest.approx(want, rel=1e-5)
    assert total[-1] < total[0] and parts["sft"][-1] < parts["sft"][0]
    assert series(rows, "val/loss/sft")
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    assert int(state["bco_running_count"]) == STEPS and float(state["bco_running_mean"]) != 0.0


@pytest.mark.slow
def test_rpo_recipe_is_dpo_plus_sft(tmp_path):
    _, rows = _recipe_run(tmp_path, "rpo")
    parts = {t: [v for _, v in series(rows, f"train/loss/{t}")] for t in ("sigmoid", "sft")}
    total = [v for _, v in series(rows, "train/loss")]
    assert all(len(p) == STEPS for p in parts.values()) and len(total) == STEPS
    for i in range(STEPS):
        assert total[i] == pytest.approx(parts["sigmoid"][i] + parts["sft"][i], rel=1e-5)
    assert not series(rows, "train/loss/bco_pair")
    assert total[-1] < total[0] and parts["sft"][-1] < parts["sft"][0]


def _train(tmp_path, name, policy, *, steps, resume=False, save_interval=None, **kwargs):
    from litcpt.commands.dpo import setup
    from litcpt.data.preference.datamodule import Preference

    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS))
    setup(policy, out_dir=tmp_path / name, data=Preference(train_data_path=data, val_data_path=data),
          train=TrainArgs(global_batch_size=4, micro_batch_size=2, max_steps=steps, save_interval=save_interval),
          eval=EvalArgs(interval=100, max_iters=1), accelerator="cpu", devices=1, resume=resume,
          optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 3e-3}}, **kwargs)
    ckpt = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    return ckpt["state_dict"], read_metrics(tmp_path / name)


def _step_reward_means(rows):
    """Per optimizer step, the mean implicit reward over its chosen and rejected responses (what bco_pair folds
    into its running mean once per micro-batch; equal-sized micro-batches here)."""
    chosen = [v for _, v in series(rows, "train/rewards/chosen")]
    rejected = [v for _, v in series(rows, "train/rewards/rejected")]
    return [(c + r) / 2 for c, r in zip(chosen, rejected)]


@pytest.mark.slow
def test_bco_running_mean_across_steps_and_resume(tmp_path):
    from litcpt.callbacks import ConstantLR

    policy = make_checkpoint(tmp_path / "policy", seed=0)
    kwargs = {"loss_type": "bco_pair", "beta": 0.5, "lr_schedule": ConstantLR()}
    first, rows_first = _train(tmp_path, "run", policy, steps=2, save_interval=2, **kwargs)
    means = _step_reward_means(rows_first)
    assert int(first["bco_running_count"]) == 4                     # one update per micro-batch (2 per step), as TRL
    assert float(first["bco_running_mean"]) == pytest.approx(sum(means) / 2, rel=1e-5)
    resumed, rows = _train(tmp_path, "run", policy, steps=4, save_interval=2, resume=True, **kwargs)
    later = _step_reward_means(rows)[-2:]
    assert int(resumed["bco_running_count"]) == 8                   # continued from the checkpoint's 4
    want = (4 * float(first["bco_running_mean"]) + 2 * sum(later)) / 8
    assert float(resumed["bco_running_mean"]) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("options", [
    {"loss_type": ["sigmoid", "sft"], "use_weighting": True},
    {"loss_type": "sigmoid", "ld_alpha": 0.3},
    {"loss_type": "sigmoid_norm", "f_divergence_type": "js_divergence"},
    {"loss_type": ["robust", "sft"], "loss_weights": [0.5, 2.0], "label_smoothing": 0.1,
     "f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.4},
])
def test_module_variants_match_the_pure_functions_on_hand_token_logps(tmp_path, tiny_checkpoint, options):
    ref_dir = make_checkpoint(tmp_path / "ref", seed=1)
    module = DPOModel(tiny_checkpoint_config(tiny_checkpoint), checkpoint_dir=tiny_checkpoint,
                      ref_checkpoint_dir=ref_dir, beta=0.5, **options)
    _, batch = _batch(PAIRS)
    values = module.pair_losses(batch, "train")
    ids, mask = batch["input_ids"], batch["response_mask"][:, 1:]
    with torch.no_grad():
        logits = module.model(ids[:, :-1])
        pol = token_logps(logits, ids[:, 1:])
        ref = token_logps(module.ref_model(ids[:, :-1]), ids[:, 1:])
        log_sum_sq = torch.logsumexp(2 * logits.log_softmax(-1), -1)
    alpha = options.get("ld_alpha")
    seq = (lambda t: losses.ld_logps(t, mask, alpha)) if alpha is not None else (lambda t: (t * mask).sum(-1))
    p, r, b = seq(pol), seq(ref), len(PAIRS)
    lengths = batch["response_mask"].sum(-1).float()
    w = losses.wpo_weights(pol, log_sum_sq, mask)
    kwargs = {k: v for k, v in options.items() if k not in ("use_weighting", "ld_alpha")}
    want, _, _ = losses.dpo(p[:b], p[b:], r[:b], r[b:], beta=0.5, chosen_lengths=lengths[:b],
                            rejected_lengths=lengths[b:], sft_nll=losses.sft_nll(pol[:b], mask[:b]),
                            pair_weights=(w[:b] * w[b:]) if options.get("use_weighting") else None, **kwargs)
    torch.testing.assert_close(values["loss"].detach(), want, rtol=1e-5, atol=1e-6)
    if isinstance(options["loss_type"], list):
        assert {f"loss/{t}" for t in options["loss_type"]} <= set(values)


def tiny_checkpoint_config(path):
    from litcpt.runtime.checkpoint import load_config

    return load_config(path)


def test_simpo_module_builds_no_reference(tiny_checkpoint):
    module = DPOModel(tiny_checkpoint_config(tiny_checkpoint), checkpoint_dir=tiny_checkpoint, beta=2.0,
                      loss_type="simpo", simpo_gamma=0.5)
    assert module.ref_model is None and module.loss.average_logps and module.loss.reference_free
    _, batch = _batch(PAIRS)
    values = module.pair_losses(batch, "train")
    pc, pr = values["logps/chosen"], values["logps/rejected"]
    want = losses.dpo(pc, pr, None, None, beta=2.0, loss_type="simpo", simpo_gamma=0.5)[0]
    torch.testing.assert_close(values["loss"].detach(), want)
    torch.testing.assert_close(values["rewards/chosen"], 2.0 * pc)


def test_sync_reference_mixes_parameters():
    torch.manual_seed(0)
    policy, ref = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = {k: v.clone() for k, v in ref.state_dict().items()}
    mix_into(ref, policy, 0.6)
    for name, value in ref.state_dict().items():
        torch.testing.assert_close(value, 0.6 * policy.state_dict()[name] + 0.4 * before[name])
    mix_into(ref, policy, 1.0)
    assert all(torch.equal(ref.state_dict()[k], policy.state_dict()[k]) for k in before)
    with pytest.raises(ValueError, match="ref_model_mixup_alpha"):
        SyncReference(alpha=0.0)
    with pytest.raises(ValueError, match="ref_model_sync_steps"):
        SyncReference(sync_steps=0)


@pytest.mark.slow
def test_tr_dpo_syncs_the_reference_every_k_steps(tmp_path):
    policy = make_checkpoint(tmp_path / "policy", seed=0)
    state, rows = _train(tmp_path, "trdpo", policy, steps=3, save_interval=3, sync_ref_model=True,
                         ref_model_mixup_alpha=0.5, ref_model_sync_steps=2)
    start = torch.load(policy / "lit_model.pth", weights_only=True)
    ref = {k[len("ref_model."):]: v for k, v in state.items() if k.startswith("ref_model.")}
    assert ref.keys() == start.keys()
    moved = [k for k in start if not torch.equal(ref[k], start[k])]
    assert moved                                   # one sync (after step 2) moved the reference
    # after the sync at step 2, the reference is halfway between the start and the step-2 policy: never equal to
    # the final policy (step 3)
    policy_state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    assert any(not torch.equal(ref[k], policy_state[k]) for k in moved)


def test_impossible_combinations_fail_before_training(tmp_path, tiny_checkpoint):
    from litcpt.commands.dpo import setup

    cases = [
        (dict(loss_type="simpo", precompute_ref=True), "reference-free"),
        (dict(loss_type="simpo", ref_checkpoint_dir=tiny_checkpoint), "reference-free"),
        (dict(sync_ref_model=True, precompute_ref=True), "cannot be precomputed"),
        (dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0]), "one weight per loss_type"),
        (dict(loss_type=["simpo", "sigmoid"]), "combines only with 'sft'"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            setup(tiny_checkpoint, out_dir=tmp_path / "x", accelerator="cpu", **kwargs)
    config = tiny_checkpoint_config(tiny_checkpoint)
    with pytest.raises(ValueError, match="ld_alpha"):
        DPOModel(config, checkpoint_dir=tiny_checkpoint, ld_alpha=0.5, average_logps=True)
    with pytest.raises(ValueError, match="sigmoid_norm"):
        DPOModel(config, checkpoint_dir=tiny_checkpoint, loss_type="sigmoid_norm", average_logps=True)
    with pytest.raises(ValueError, match="only for loss_type"):
        DPOModel(config, checkpoint_dir=tiny_checkpoint, loss_type="apo_zero", f_divergence_type="forward_kl")


def test_precomputed_reference_applies_ld_dpo_like_the_live_reference(tmp_path, tiny_checkpoint):
    from litcpt.models.dpo_reference import ReferenceLogpsModule
    from litcpt.runtime.checkpoint import load_config

    items, batch = _batch(PAIRS)
    batch["index"] = torch.tensor([item.index for item in items])
    live = DPOModel(load_config(tiny_checkpoint), checkpoint_dir=tiny_checkpoint, ld_alpha=0.25)
    rc, rr = live.ref_logps(batch, "train")
    module = ReferenceLogpsModule(load_config(tiny_checkpoint), checkpoint_dir=tiny_checkpoint, ld_alpha=0.25)
    module.on_predict_epoch_start()
    module.predict_step(batch, 0)
    _, chosen, rejected = module._rows[0][0]
    torch.testing.assert_close(chosen, rc.float())
    torch.testing.assert_close(rejected, rr.float())
    full = DPOModel(load_config(tiny_checkpoint), checkpoint_dir=tiny_checkpoint).ref_logps(batch, "train")[0]
    assert not torch.allclose(full, rc)                             # LD-DPO changed the unequal-length pairs


@pytest.mark.slow
def test_precomputed_reference_with_dropped_pairs(tmp_path):
    """truncation='drop' leaves gaps in the pair indices; the reference table spans them (regression)."""
    from litcpt.commands.dpo import setup
    from litcpt.data.preference.datamodule import Preference

    rows = ROWS + [{"prompt": "word " * 80, "chosen": " yes.", "rejected": " no."}] + ROWS[:4]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    setup(make_checkpoint(tmp_path / "policy"), out_dir=tmp_path / "run", precompute_ref=True,
          data=Preference(train_data_path=data, val_data_path=data, max_length=48, truncation="drop"),
          train=TrainArgs(global_batch_size=4, micro_batch_size=4, max_steps=1, save_interval=None),
          eval=EvalArgs(interval=100, max_iters=1), accelerator="cpu", devices=1)
    from litcpt.models.dpo_reference import ReferenceLogps

    table = ReferenceLogps.load(tmp_path / "run" / "ref_logps.pt").tables["train"]
    assert table.shape[0] == len(rows) and torch.isnan(table[len(ROWS)]).all()
    assert not torch.isnan(table[:len(ROWS)]).any() and not torch.isnan(table[len(ROWS) + 1:]).any()
