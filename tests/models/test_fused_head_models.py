"""The fused LM head inside the models: LM loss, DPO log-probs and DPO losses equal the plain head's, also with tied
embeddings, fully masked rows, z-loss, ``torch.compile`` and FSDP2 on two gloo ranks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from litgpt import GPT
from litgpt.utils import chunked_cross_entropy

from litcpt.models.logprobs import fused_lm_loss, model_token_logps
from tests.conftest import tiny_config

TOL = {torch.float64: 1e-6, torch.float32: 1e-5}
VOCAB = 4099  # not a multiple of any chunk used here


def _gpt(dtype=torch.float32, tied=False, seed=0):
    torch.manual_seed(seed)
    model = GPT(tiny_config(vocab_size=VOCAB, padded_vocab_size=VOCAB)).to(dtype)
    if tied:
        model.transformer.wte.weight = model.lm_head.weight
    return model


def _grads(model, loss):
    params = list(model.parameters())
    return torch.autograd.grad(loss, params)


def _max_rel(actual, expected):
    return max(float((a - e).abs().max() / e.abs().max().clamp_min(1e-30)) for a, e in zip(actual, expected))


def _lm_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (3, 17), generator=g)
    targets = ids[:, 1:].clone()
    targets[1] = -100          # a fully masked row
    targets[0, :3] = -100
    return ids[:, :-1], targets


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("tied", [False, True])
def test_fused_lm_loss_and_grads_equal_the_plain_head(dtype, tied):
    model = _gpt(dtype, tied)
    inputs, targets = _lm_batch()
    total, ce, z = fused_lm_loss(model, inputs, targets, z_weight=0.3, chunk=7)
    fused = _grads(model, total)
    logits = model(inputs)
    keep = targets != -100
    ref_ce = chunked_cross_entropy(logits, targets)
    ref_z = logits.logsumexp(-1)[keep].square().mean()  # stability.z_loss, in the logits' own precision
    plain = _grads(model, ref_ce + 0.3 * ref_z)
    assert _max_rel([total, ce, z], [ref_ce + 0.3 * ref_z, ref_ce, ref_z]) <= TOL[dtype]
    assert _max_rel(fused, plain) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_token_logps_equal_the_plain_head_on_response_tokens(dtype):
    model = _gpt(dtype, tied=True)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, VOCAB, (4, 12), generator=g)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[0, 5:], mask[1, 2:9], mask[3, 11] = True, True, True  # row 2: nothing to score
    weights = torch.randn(4, 11, dtype=torch.float32, generator=g)
    fused, fused_sq = model_token_logps(model, ids, mask, fused_head=True, sum_sq=True)
    plain, plain_sq = model_token_logps(model, ids, mask, fused_head=False, sum_sq=True)
    scored = mask[:, 1:]
    assert float(fused[~scored].abs().sum()) == 0.0
    assert _max_rel([fused[scored], fused_sq[scored]], [plain[scored], plain_sq[scored]]) <= TOL[dtype]
    grads = _grads(model, (fused * weights * scored).sum())
    assert _max_rel(grads, _grads(model, (plain * weights * scored).sum())) <= TOL[dtype]


def test_bf16_autocast_matches_the_plain_head_to_bf16_rounding():
    model = _gpt(torch.float32)
    inputs, targets = _lm_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, ce, _ = fused_lm_loss(model, inputs, targets)
        fused = _grads(model, total)
        ref = chunked_cross_entropy(model(inputs), targets)
        plain = _grads(model, ref)
    assert abs(float(ce - ref)) < 1e-3
    assert _max_rel(fused, plain) < 5e-2


@pytest.mark.slow
def test_compiled_model_trains_with_the_fused_head():
    model = _gpt(torch.float32)
    inputs, targets = _lm_batch()
    eager, _, _ = fused_lm_loss(model, inputs, targets)
    expected = _grads(model, eager)
    model.compile()
    for _ in range(2):  # a second call reuses the compiled graphs around the (eager) head
        compiled, _, _ = fused_lm_loss(model, inputs, targets)
        assert _max_rel([compiled], [eager]) <= 1e-5
        assert _max_rel(_grads(model, compiled), expected) <= 1e-5


@pytest.mark.parametrize("loss_type", ["sigmoid", ["sigmoid", "sft"]])
def test_dpo_module_losses_and_grads_equal_with_and_without_the_fused_head(tiny_checkpoint, loss_type):
    from litcpt.models.dpo import DPOModel
    from litcpt.runtime.checkpoint import load_config

    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 4096, (4, 10), generator=g)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, 4:] = True
    mask[1, 8:] = False
    batch = {"input_ids": ids, "response_mask": mask, "index": torch.arange(2)}
    results = []
    extra = {"use_weighting": True, "ld_alpha": 0.5} if isinstance(loss_type, list) else {}
    for fused in (True, False):
        module = DPOModel(load_config(tiny_checkpoint), checkpoint_dir=tiny_checkpoint, loss_type=loss_type,
                          fused_head=fused, **extra)
        values = module.pair_losses(batch)
        results.append((values["loss"].detach(), _grads(module.model, values["loss"].sum())))
    assert _max_rel([results[0][0]], [results[1][0]]) <= 1e-5
    assert _max_rel(results[0][1], results[1][1]) <= 1e-5


# --------------------------------------------------------------------------------------- FSDP2 on two gloo ranks
def _fsdp2_worker(rank, world_size, port, out_dir):
    from torch.distributed.device_mesh import init_device_mesh

    from litcpt.runtime.strategies import apply_fsdp2

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        mesh = init_device_mesh("cpu", (world_size,), mesh_dim_names=("data_parallel",))
        inputs, targets = _lm_batch(seed=rank)  # each rank its own micro-batch (with a fully masked row)
        grads = {}
        for fused in (True, False):
            model = _gpt(torch.float32, tied=True)
            apply_fsdp2(model, mesh)
            if fused:
                loss = fused_lm_loss(model, inputs, targets, z_weight=0.1, chunk=5)[0]
            else:
                logits = model(inputs)
                keep = targets != -100
                loss = chunked_cross_entropy(logits, targets) + 0.1 * logits.logsumexp(-1)[keep].square().mean()
            loss.backward()
            grads[fused] = {n: p.grad.full_tensor().tolist() for n, p in model.named_parameters()}
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(grads))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp2_two_ranks_fused_grads_equal_the_plain_head(tmp_path):
    from tests.helpers import run_function_on_two_ranks

    run_function_on_two_ranks(f"{__name__}:_fsdp2_worker", str(tmp_path))
    for rank in (0, 1):
        grads = json.loads((tmp_path / f"rank{rank}.json").read_text())
        names = sorted(grads["true"])
        assert "lm_head.weight" in names
        fused = [torch.tensor(grads["true"][n]) for n in names]
        plain = [torch.tensor(grads["false"][n]) for n in names]
        assert _max_rel(fused, plain) <= 1e-5
