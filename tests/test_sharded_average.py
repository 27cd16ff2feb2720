"""ShardedAverage (the FSDP2 stand-in for AveragedModel) on plain tensors: the same EMA/SWA as AveragedModel,
``full``/``load_full`` round trip, ``swap`` exchanges and restores."""

from __future__ import annotations

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn, get_swa_avg_fn

from litcpt.averaging_sharded import ShardedAverage


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
