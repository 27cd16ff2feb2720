"""Precision defaults and the bf16-true rule, fused AdamW for every optimizer spec, rank 0 under every launcher."""

from __future__ import annotations

import pytest
import torch

from litcpt.runtime.optim import make_optimizer, optimizer_lr
from litcpt.runtime.precision import bf16_half_ulp, bf16_updates_vanish, check_precision, default_precision
from litcpt.runtime.ranks import global_rank, is_global_zero


# ------------------------------------------------------------------------------------------------ precision
@pytest.mark.parametrize("weight", [0.02, 0.011, 0.5, 3.0])
def test_bf16_rule_matches_bf16_rounding(weight):
    w = torch.tensor(weight).bfloat16().float()
    half = bf16_half_ulp(weight)
    below, above = half * 0.9, half * 1.1
    assert (w + below).bfloat16().float() == w  # rounds back: the update is lost
    assert (w + above).bfloat16().float() != w
    assert bf16_updates_vanish(below, weight) and not bf16_updates_vanish(above, weight)


def test_bf16_rule_numbers():
    assert bf16_half_ulp(0.02) == 2.0 ** -14  # ~6.1e-5: the lr below which bf16-true weights of ~0.02 stay put
    assert check_precision("bf16-true", 5e-7) and "bf16-mixed" in check_precision("bf16-true", 5e-7)
    assert check_precision("bf16-true", 3e-4) is None
    assert check_precision("bf16-mixed", 5e-7) is None and check_precision("32-true", 5e-7) is None


def test_default_precision_is_mixed_on_gpu_for_every_strategy():
    from litcpt.training.args import EvalArgs, TrainArgs
    from litcpt.training.harness import RunSpec

    assert default_precision(True, True) == "bf16-mixed" and default_precision(False, False) == "32-true"
    for strategy in ("auto", "ddp", "fsdp", "fsdp2"):
        spec = RunSpec(out_dir="out", train=TrainArgs(max_steps=1), eval=EvalArgs(), strategy=strategy,
                       accelerator="cpu")
        assert spec.resolved_precision() == "32-true"
        spec.precision = "bf16-true"
        assert spec.resolved_precision() == "bf16-true"


# -------------------------------------------------------------------------------------------------- optimizer
def _callable_spec(**init_args):
    from jsonargparse import ArgumentParser

    from litcpt.runtime.optim import OptimizerArg

    parser = ArgumentParser()
    parser.add_argument("--optimizer", type=OptimizerArg, default="AdamW")
    args = ["--optimizer.class_path", "torch.optim.AdamW"]
    for key, value in init_args.items():
        args += [f"--optimizer.init_args.{key}", str(value)]
    return parser.instantiate_classes(parser.parse_args(args)).optimizer


@pytest.mark.parametrize("form", ["string", "dict", "callable"])
def test_fused_reaches_adamw_in_every_form(form):
    spec = {"string": "AdamW", "dict": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}},
            "callable": _callable_spec(lr=1e-3)}[form]
    params = [torch.nn.Parameter(torch.randn(3, 3))]
    optimizer = make_optimizer(spec, params, fused=True)  # fused AdamW also runs on CPU in torch >= 2.4
    assert optimizer.defaults["fused"] is True
    assert optimizer.param_groups[0]["params"][0] is params[0]
    if form != "string":
        assert optimizer.defaults["lr"] == 1e-3
    assert optimizer_lr(spec) == (1e-3 if form != "string" else 1e-3)  # AdamW's default lr is 1e-3 too


def test_explicit_fused_false_is_kept_and_sgd_untouched():
    optimizer = make_optimizer(_callable_spec(lr=0.1, fused=False), [torch.nn.Parameter(torch.zeros(2))], fused=True)
    assert optimizer.defaults["fused"] is False
    from jsonargparse import ArgumentParser

    from litcpt.runtime.optim import OptimizerArg

    parser = ArgumentParser()
    parser.add_argument("--optimizer", type=OptimizerArg)
    sgd = parser.instantiate_classes(parser.parse_args(["--optimizer", "torch.optim.SGD",
                                                        "--optimizer.init_args.lr", "0.5"])).optimizer
    optimizer = make_optimizer(sgd, [torch.nn.Parameter(torch.zeros(2))], fused=True)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer_lr(sgd) == 0.5


# -------------------------------------------------------------------------------------------------------- ranks
_RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE", "SLURM_NTASKS",
              "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_JOB_NAME", "SLURM_NTASKS_PER_NODE",
              "TORCHELASTIC_RUN_ID", "LSB_JOBID", "JSM_NAMESPACE_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


@pytest.mark.parametrize(
    "env, rank",
    [
        ({}, 0),
        (
            {
                "SLURM_NTASKS": "4",
                "SLURM_NTASKS_PER_NODE": "2",
                "SLURM_PROCID": "0",
                "SLURM_LOCALID": "0",
                "SLURM_NODEID": "0",
                "SLURM_JOB_NAME": "train",
            },
            0,
        ),
        (
            {
                "SLURM_NTASKS": "4",
                "SLURM_NTASKS_PER_NODE": "2",
                "SLURM_PROCID": "2",
                "SLURM_LOCALID": "0",
                "SLURM_NODEID": "1",
                "SLURM_JOB_NAME": "train",
            },
            2,
        ),  # the old RANK/LOCAL_RANK guess said 0 here
        (
            {
                "RANK": "3",
                "GROUP_RANK": "1",
                "LOCAL_RANK": "1",
                "LOCAL_WORLD_SIZE": "2",
                "WORLD_SIZE": "4",
                "TORCHELASTIC_RUN_ID": "x",
            },
            3,
        ),
        (
            {
                "RANK": "0",
                "GROUP_RANK": "0",
                "LOCAL_RANK": "0",
                "LOCAL_WORLD_SIZE": "2",
                "WORLD_SIZE": "4",
                "TORCHELASTIC_RUN_ID": "x",
                "SLURM_NTASKS": "1",
                "SLURM_PROCID": "5",
                "SLURM_JOB_NAME": "train",
            },
            0,
        ),  # torchrun in SLURM
        ({"NODE_RANK": "1"}, 1),  # Lightning's launcher on the second node
        ({"LOCAL_RANK": "1"}, 1),
    ],
)
def test_global_rank_under_launchers(monkeypatch, env, rank):
    for name in _RANK_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert global_rank() == rank
    assert is_global_zero() == (rank == 0)
