"""Models built on the meta device and materialised shard by shard (``defer_init``; fsdp and fsdp2).

Fast: the fresh init is seeded per parameter (independent of ranks and order); a deferred module materialised in one
process equals today's eagerly built one when loading a checkpoint (LM, reward with a logit head, DPO with its
reference). Slow (2 gloo ranks through the CLI): weights after the first steps are the same for 1 rank and 2 ranks
under fsdp and fsdp2, and the same as today's eager single-process path when starting from a checkpoint.
"""

from __future__ import annotations

import types

import pytest
import torch
import yaml
from litgpt import Config

from litcpt.runtime.materialize import CheckpointWeights, FreshInit, materialize_sharded, meta_gpt, param_seed
from tests.conftest import make_checkpoint, tiny_config
from tests.helpers import run_litcpt, tiny_recipe


def _materialize(module) -> None:
    """What configure_model does for a non-sharding strategy (the module has no Trainer here)."""
    module._materialize(types.SimpleNamespace(root_device=torch.device("cpu")))


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_fresh_init_is_per_parameter_and_gpt_neox():
    config = tiny_config(n_layer=3, n_embd=48)
    a, b = FreshInit(meta_gpt(config), 7), FreshInit(meta_gpt(config), 7)
    names = list(a.owner)
    assert all(torch.equal(a.full(n), b.full(n)) for n in reversed(names))  # order does not matter
    assert not torch.equal(a.full("transformer.h.0.attn.qkv.weight"), a.full("transformer.h.1.attn.qkv.weight"))
    assert not torch.equal(a.full("lm_head.weight"), FreshInit(meta_gpt(config), 8).full("lm_head.weight"))
    assert param_seed(7, "x") != param_seed(7, "y")
    std = a.full("transformer.h.0.mlp.fc_1.weight").std().item()
    assert abs(std - (2 / 5 / 48) ** 0.5) < 0.01
    proj = a.full("transformer.h.2.attn.proj.weight").std().item()
    assert abs(proj - 1 / 48 ** 0.5 / 3) < 0.01
    assert torch.equal(a.full("transformer.ln_f.weight"), torch.ones(48))


def test_materialize_equals_eager_load(tmp_path):
    from litcpt.models.base import build_gpt

    config = tiny_config()
    ckpt = make_checkpoint(tmp_path / "ckpt", config)
    model = meta_gpt(config)
    model.max_seq_length = 16  # as LanguageModel does: the RoPE cache follows
    source = CheckpointWeights(ckpt, model)
    materialize_sharded(model, source, "cpu")
    eager = build_gpt(config, checkpoint_dir=ckpt)
    eager.max_seq_length = 16
    _assert_same_state(model.state_dict(), eager.state_dict())
    torch.testing.assert_close(model.cos, eager.cos)
    x = torch.randint(0, config.vocab_size, (2, 16))
    torch.testing.assert_close(model(x), eager(x))
    with pytest.raises(ValueError, match="does not match the model config"):
        CheckpointWeights(ckpt, meta_gpt(tiny_config(n_embd=64)))


def test_deferred_modules_equal_eager_ones(tmp_path):
    from litcpt.models.dpo import DPOModel
    from litcpt.models.lm import LanguageModel
    from litcpt.models.reward import RewardModel

    config = tiny_config()
    policy = make_checkpoint(tmp_path / "policy", config, seed=1)
    ref = make_checkpoint(tmp_path / "ref", config, seed=2)
    lm = LanguageModel(config, checkpoint_dir=policy, seq_length=32, defer_init=True)
    assert lm.model.lm_head.weight.is_meta
    _materialize(lm)
    _assert_same_state(lm.state_dict(), LanguageModel(config, checkpoint_dir=policy, seq_length=32).state_dict())

    kwargs = dict(checkpoint_dir=policy, head="logit", token_id=5)
    rm = RewardModel(config, defer_init=True, **kwargs)
    assert rm._lm_head_state is None  # no full LM-head copy kept on every rank
    _materialize(rm)
    eager = RewardModel(config, **kwargs)
    _assert_same_state(rm.state_dict(), eager.state_dict())
    state = {k: v.clone() for k, v in rm.state_dict().items()}
    (w1, _), (w2, _) = rm.litgpt_export(state), eager.litgpt_export(state)
    _assert_same_state(w1, w2)

    dpo = DPOModel(config, checkpoint_dir=policy, ref_checkpoint_dir=ref, defer_init=True)
    assert dpo.ref_model.lm_head.weight.is_meta and set(dpo.weight_sources) == {"model", "ref_model"}
    _materialize(dpo)
    _assert_same_state(dpo.state_dict(), DPOModel(config, checkpoint_dir=policy, ref_checkpoint_dir=ref).state_dict())
    assert not dpo.ref_model.training and not any(p.requires_grad for p in dpo.ref_model.parameters())


# ------------------------------------------------------------------------------------ 2 gloo ranks via the CLI
def _train(tmp_path, name: str, strategy: str, devices: int, **overrides) -> dict[str, torch.Tensor]:
    recipe = tiny_recipe(tmp_path / name, **{"train.max_steps": 2, "train.save_interval": None,
                                             "eval.final_validation": False, **overrides})
    run_litcpt("pretrain", "--config", str(recipe), "--devices", str(devices), "--strategy", strategy,
               "--accelerator", "cpu", timeout=900)
    return torch.load(tmp_path / name / "out/final/lit_model.pth", weights_only=True)


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.slow
@pytest.mark.distributed
def test_fresh_init_same_for_one_and_two_ranks(tmp_path):
    one = _train(tmp_path, "fsdp2-1", "fsdp2", 1)
    _close(_train(tmp_path, "fsdp-2", "fsdp", 2), one)


@pytest.mark.slow
@pytest.mark.distributed
def test_checkpoint_start_same_as_eager_single_process(tmp_path):
    recipe = yaml.safe_load(tiny_recipe(tmp_path / "probe").read_text())
    ckpt = make_checkpoint(tmp_path / "start", Config(**recipe["model_config"]), seed=3)
    today = _train(tmp_path, "auto-1", "auto", 1, initial_checkpoint_dir=str(ckpt))  # eager build, as before
    _close(_train(tmp_path, "fsdp2-2", "fsdp2", 2, initial_checkpoint_dir=str(ckpt),
                  **{"train.activation_checkpointing": True}), today)  # wrapped Blocks: same names, same weights
    _close(_train(tmp_path, "fsdp-2", "fsdp", 2, initial_checkpoint_dir=str(ckpt)), today)


@pytest.mark.slow
@pytest.mark.distributed
def test_dpo_fsdp1_sharded_reference_matches_one_process(tmp_path):
    """FSDP1 (param_init_fn) materialises the policy and the on-the-fly reference shard by shard: same DPO metrics and
    policy weights as one eager process."""
    import json

    from tests.helpers import read_metrics, series

    policy, ref = make_checkpoint(tmp_path / "policy", seed=0), make_checkpoint(tmp_path / "ref", seed=1)
    rows = [{"prompt": f"Question {i}: what is {i} plus {i}?", "chosen": f" It is {2 * i}.",
             "rejected": f" Maybe {i + 7}, or not."} for i in range(8)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))

    def run(name: str, devices: int, strategy: str):
        run_litcpt("dpo", "--checkpoint_dir", str(policy), "--ref_checkpoint_dir", str(ref),
                   "--out_dir", str(tmp_path / name), "--data", "litcpt.data.Preference",
                   "--data.train_data_path", str(data), "--data.val_data_path", str(data),
                   "--train.global_batch_size", "8", "--train.micro_batch_size", "2", "--train.max_steps", "2",
                   "--train.save_interval", "null", "--eval.interval", "100", "--eval.max_iters", "2",
                   "--optimizer", '{"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.003}}',
                   "--devices", str(devices), "--strategy", strategy, "--accelerator", "cpu", timeout=900)
        return read_metrics(tmp_path / name), torch.load(tmp_path / name / "final/lit_model.pth", weights_only=True)

    (single, w1), (multi, w2) = run("single", 1, "auto"), run("multi", 2, "fsdp")
    for key in ("train/loss", "train/rewards/margins"):
        a, b = [v for _, v in series(single, key)], [v for _, v in series(multi, key)]
        assert len(a) == len(b) == 2, key
        torch.testing.assert_close(torch.tensor(b), torch.tensor(a), atol=1e-4, rtol=1e-4, msg=key)
    _close(w2, w1)
