"""Skip-step is consistent across ranks: 2 gloo CPU ranks (DDP and FSDP2), a loss spike on rank 1 only, and both
ranks skip the same step, with the same loss / gradient-norm windows, the same logged count and identical weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, run_script_on_two_ranks

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

SPIKE_STEP, MAX_STEPS = 8, 12


def _run(strategy: str, out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    run_script_on_two_ranks(REPO / "tests/callbacks/skip_spikes_ranks.py", strategy, str(out))
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.fixture(scope="session")  # once per test worker, whatever the order of the tests
def runs(tmp_path_factory) -> dict[str, list[dict]]:
    root = tmp_path_factory.mktemp("skip_ranks")
    return {s: _run(s, root / s) for s in ("ddp", "fsdp2")}


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_both_ranks_skip_the_spike_of_one(runs, strategy):
    r0, r1 = runs[strategy]
    k = SPIKE_STEP
    for r in (r0, r1):
        assert r["skipped_at"] == [k] and r["skipped_steps"] == 1, r["skipped_at"]
        assert r["logged"][k - 1] == 0.0 and r["logged"][k:] == [1.0] * (MAX_STEPS - k)  # train/skipped_steps
        assert all(torch.equal(a, b) for a, b in zip(r["local"][k - 1], r["local"][k]))  # no update of any shard
        assert r["opt_steps"][k] == r["opt_steps"][k - 1] == k  # nor of AdamW's state
        assert not all(torch.equal(a, b) for a, b in zip(r["local"][k], r["local"][k + 1]))
    # the decision inputs are global: the rank-mean loss and the full gradient norm (FSDP2: summed over shards)
    assert r0["losses"] == r1["losses"] and r0["grad_norms"] == r1["grad_norms"]
    assert r0["losses"][-(MAX_STEPS - k)] > 100 * r0["losses"][-(MAX_STEPS - k) - 1]  # the spike, seen by rank 0 too
    for a, b in zip(r0["full"], r1["full"]):  # every step, full weights identical on both ranks
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_fsdp2_grad_norm_is_the_full_norm(runs):
    """The sharded gradient norm (sum of squares of both shards, all-reduced) is the DDP one."""
    ddp, fsdp2 = runs["ddp"][0], runs["fsdp2"][0]
    torch.testing.assert_close(torch.tensor(fsdp2["grad_norms"]), torch.tensor(ddp["grad_norms"]), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.tensor(fsdp2["losses"]), torch.tensor(ddp["losses"]), rtol=1e-4, atol=1e-6)
