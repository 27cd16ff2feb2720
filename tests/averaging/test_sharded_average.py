"""ShardedAverage (the FSDP2 stand-in for AveragedModel) on plain tensors: the same EMA/SWA as AveragedModel,
``full``/``load_full`` round trip, ``swap`` exchanges and restores."""

from __future__ import annotations

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn, get_swa_avg_fn

from litcpt.averaging.sharded import ShardedAverage


@pytest.mark.parametrize("avg_fn", [get_ema_avg_fn(0.9), get_swa_avg_fn()], ids=["ema", "swa"])
def test_matches_averaged_model(avg_fn):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    ref, ours = AveragedModel(model, avg_fn=avg_fn, use_buffers=False), ShardedAverage(model, avg_fn)
    for _ in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ref.update_parameters(model)
        ours.update_parameters(model)
    full = ours.full()
    assert ours.n_averaged == int(ref.n_averaged) == 4
    for name, value in ref.module.named_parameters():
        torch.testing.assert_close(full[name], value.detach(), rtol=1e-6, atol=1e-7)

    other = ShardedAverage(model, avg_fn)
    other.load_full(full, 4)
    assert all(torch.equal(a, b) for a, b in zip(other.shards, ours.shards)) and other.n_averaged == 4
    with pytest.raises(ValueError, match="lacks 1 parameters"):
        other.load_full({k: v for k, v in full.items() if k != "1.bias"}, 4)

    raw = [p.detach().clone() for p in model.parameters()]
    ours.swap(model)
    assert all(torch.equal(p, full[n]) for n, p in model.named_parameters())
    ours.swap(model)
    assert all(torch.equal(p, r) for p, r in zip(model.parameters(), raw))


# ------------------------------------------------------------------------------------------------ FSDP1, 2 ranks
def _fsdp1_worker(rank, port, out_file):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.save({flag: _fsdp1_check(flag) for flag in (True, False)}, f"{out_file}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


def _fsdp1_check(use_orig_params):
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    from litcpt.averaging.sharded import FlatShardedAverage

    torch.manual_seed(0)  # the same model and updates on both ranks
    plain = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2))
    ref = AveragedModel(plain, avg_fn=get_ema_avg_fn(0.9), use_buffers=False)
    inner = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2))
    inner.load_state_dict(plain.state_dict())
    inner[1] = FSDP(inner[1], device_id=torch.device("cpu"), use_orig_params=use_orig_params)
    root = FSDP(inner, device_id=torch.device("cpu"), use_orig_params=use_orig_params)
    ours = FlatShardedAverage(inner, get_ema_avg_fn(0.9), root)
    local = sum(s.numel() for s in ours.shards)
    for _ in range(3):
        new = {k: torch.randn_like(v) for k, v in plain.state_dict().items()}
        plain.load_state_dict(new)
        with FSDP.summon_full_params(root, writeback=True):
            for name, p in inner.named_parameters():
                p.data.copy_(new[name.replace("_fsdp_wrapped_module.", "")])
        ref.update_parameters(plain)
        ours.update_parameters(inner)
    full = ours.full()
    expected = dict(ref.module.named_parameters())
    assert full.keys() == expected.keys(), (sorted(full), sorted(expected))
    for name, value in expected.items():
        torch.testing.assert_close(full[name], value.detach(), rtol=1e-6, atol=1e-7)

    raw = [s.clone() for s in FlatShardedAverage(inner, get_ema_avg_fn(0.9), root).shards]
    other = FlatShardedAverage(inner, get_ema_avg_fn(0.9), root)
    other.load_full(full, 3)
    assert all(torch.equal(a, b) for a, b in zip(other.shards, ours.shards)) and other.n_averaged == 3
    assert all(torch.equal(a, _p.detach()) for a, (_, _p) in zip(raw, ours.params))  # the model kept its weights
    try:
        other.load_full({k: v for k, v in full.items() if k != "0.bias"}, 3)
        missing = ""
    except ValueError as err:
        missing = str(err)
    return {"local": local, "total": sum(p.numel() for p in plain.parameters()), "missing": missing}


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp1_flat_shards_match_averaged_model(tmp_path):
    """FlatShardedAverage on 2 gloo ranks, with and without use_orig_params: each rank holds part of the parameters
    (FSDP1 flat shards), the gathered average is AveragedModel's, and load_full gives back the same shards without
    touching the model."""
    import os

    import torch.multiprocessing as mp

    mp.spawn(_fsdp1_worker, args=(29600 + os.getpid() % 500, str(tmp_path / "out")), nprocs=2, join=True)
    for rank in (0, 1):
        for use_orig_params, r in torch.load(tmp_path / f"out.{rank}", weights_only=True).items():
            assert 0 < r["local"] < r["total"], use_orig_params  # sharded: no rank holds a full copy
            assert "lacks 1 parameters" in r["missing"], use_orig_params
