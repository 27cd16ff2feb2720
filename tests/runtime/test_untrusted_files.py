"""Files from others are untrusted: no loader of litcpt unpickles an object from a checkpoint (issue 23).

Each case puts a crafted file where a command reads one (a Lightning ``.ckpt``, ``lit_model.pth``, the reward head,
DPO's ``ref_logps.pt``, a sharded checkpoint's ``meta.pt`` / ``.metadata``): a real file of the previous main
(``tests/fixtures/previous_main``) with one object added whose unpickling creates a marker file. Every command must
refuse it in one line naming the file and the type, and the marker must never appear. ``LITCPT_TRUST_CHECKPOINTS``
is the explicit opt-in for a file one made oneself.
"""

from __future__ import annotations

import builtins
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers import run_litcpt

BUNDLED_PAIRS = "litcpt/assets/data/preference/hh-rlhf-harmless-base.jsonl.gz"


class Payload:
    """Unpickling this creates ``marker`` (what a crafted file would do with ``os.system``)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def poison(path: Path, marker: Path) -> None:
    """Rewrite ``path`` (a torch file) with a :class:`Payload` added to its dict."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    obj["payload"] = Payload(marker)
    path.unlink()
    torch.save(obj, path)


@pytest.fixture(autouse=True)
def one_line_errors(monkeypatch):
    """Refusals print their one line (``old``: tests/runtime/conftest.py)."""
    monkeypatch.delenv("LITCPT_DEBUG", raising=False)


def sharded(old: Path, marker: Path, part: str) -> Path:
    """A sharded-checkpoint directory (``meta.pt`` + torch.distributed.checkpoint's ``.metadata``) made from the
    previous pretrain run's step-3 checkpoint, with the payload in ``part``."""
    directory = old / "pretrain/checkpoints/step-00000003.ckpt"
    meta = torch.load(directory, map_location="cpu", weights_only=True)
    directory.unlink()
    directory.mkdir()
    if part == "meta.pt":
        meta["payload"] = Payload(marker)
    torch.save({k: v for k, v in meta.items() if k != "state_dict"}, directory / "meta.pt")
    with open(directory / ".metadata", "wb") as fp:
        pickle.dump({"payload": Payload(marker)} if part == ".metadata" else {}, fp)
    return directory


def case(name: str, old: Path, out: Path, marker: Path) -> tuple[list[str], Path]:
    """The command line of case ``name`` and the crafted file it reads."""
    pretrain = ["pretrain", "--config", str(old / "pretrain/config.yaml"), "--out_dir", str(out)]
    step3 = old / "pretrain/checkpoints/step-00000003.ckpt"
    if name in ("resume-path", "resume-auto", "resume-true"):
        own = out / "checkpoints/last.ckpt"
        own.parent.mkdir(parents=True)
        shutil.copy(step3, own)
        poison(step3 if name == "resume-path" else own, marker)
        return pretrain + ["--resume", str(step3) if name == "resume-path" else name.split("-")[1]], (
            step3 if name == "resume-path" else own)
    if name in ("resume-sharded-meta", "resume-sharded-metadata"):
        part = "meta.pt" if name.endswith("meta") else ".metadata"
        directory = sharded(old, marker, part)
        return pretrain + ["--resume", str(directory)], directory / part
    if name == "anneal":
        poison(old / "pretrain/checkpoints/last.ckpt", marker)
        return ["anneal", "--checkpoint", str(old / "pretrain/checkpoints/last.ckpt"), "--anneal_steps", "2",
                "--out_dir", str(out)], old / "pretrain/checkpoints/last.ckpt"
    if name == "carry":
        poison(step3, marker)
        return pretrain + ["--initial_checkpoint_dir", str(old / "pretrain/final"), "--carry.optimizer", "true",
                           "--carry.checkpoint", str(step3)], step3
    if name == "initial_checkpoint_dir":
        poison(old / "pretrain/final/lit_model.pth", marker)
        weights = old / "pretrain/final/lit_model.pth"
        return pretrain + ["--initial_checkpoint_dir", str(old / "pretrain/final")], weights
    if name == "merge":
        poison(old / "dpo/final/lit_model.pth", marker)
        return ["merge", str(old / "pretrain/final"), str(old / "dpo/final"), "--out_dir", str(out)], (
            old / "dpo/final/lit_model.pth")
    if name in ("score", "rewardbench-reward"):
        poison(old / "reward/final/reward_head.pth", marker)
        data = ["--data", str(old / "eval/pairs.jsonl")] if name == "score" else [
            "--data", BUNDLED_PAIRS, "--limit", "8", "--accelerator", "cpu"]
        return [name.split("-")[0], "--checkpoint_dir", str(old / "reward/final"), *data, "--out_dir", str(out)], (
            old / "reward/final/reward_head.pth")
    if name == "rewardbench-dpo":
        poison(old / "dpo/final/lit_model.pth", marker)
        return ["rewardbench", "--checkpoint_dir", str(old / "dpo/final"), "--ref_checkpoint_dir",
                str(old / "pretrain/final"), "--data", BUNDLED_PAIRS, "--limit", "8", "--accelerator", "cpu",
                "--out_dir", str(out)], old / "dpo/final/lit_model.pth"
    if name == "reward-base":
        poison(old / "pretrain/final/lit_model.pth", marker)
        return ["reward", "--config", str(old / "reward/config.yaml"), "--checkpoint_dir", str(old / "pretrain/final"),
                "--out_dir", str(out)], old / "pretrain/final/lit_model.pth"
    if name == "dpo-ref_logps":
        run = old / "dpo-precompute"
        poison(run / "ref_logps.pt", marker)
        return ["dpo", "--config", str(run / "config.yaml"), "--checkpoint_dir", str(old / "pretrain/final"),
                "--out_dir", str(run), "--resume", str(run / "checkpoints/step-00000002.ckpt")], run / "ref_logps.pt"
    raise AssertionError(name)


FAST = ["resume-auto", "anneal", "merge", "score", "rewardbench-reward", "rewardbench-dpo", "reward-base"]
# a pretrain / dpo recipe takes seconds to parse: the same refusal through the other entry points
PARSE_HEAVY = ["resume-path", "resume-true", "resume-sharded-meta", "resume-sharded-metadata", "carry",
               "initial_checkpoint_dir", "dpo-ref_logps"]
CASES = FAST + [pytest.param(name, marks=pytest.mark.slow) for name in PARSE_HEAVY]


@pytest.mark.parametrize("name", CASES)
def test_a_crafted_file_is_refused_in_one_line_and_never_run(name, old, tmp_path):
    marker = tmp_path / "PWNED"
    args, crafted = case(name, old, tmp_path / "out", marker)
    proc = run_litcpt(*args, check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert not marker.exists(), "the crafted file ran code"
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "could run code" in errors[0] and str(crafted) in errors[0], errors[0]
    assert "io.open" in errors[0] and "LITCPT_TRUST_CHECKPOINTS=" in errors[0], errors[0]  # builtins.open


def test_a_trusted_file_loads_in_full(tmp_path, monkeypatch):
    """The opt-in: a file named in LITCPT_TRUST_CHECKPOINTS (or under a directory named there) is unpickled."""
    from argparse import Namespace

    from litcpt.runtime.checkpoint import UntrustedFileError, load_lightning_checkpoint

    path = tmp_path / "run/checkpoints/own.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"global_step": 3, "hyper_parameters": Namespace(lr=0.1)}, path)  # an older writer's hparams object
    monkeypatch.delenv("LITCPT_TRUST_CHECKPOINTS", raising=False)
    with pytest.raises(UntrustedFileError, match=r"argparse\.Namespace"):
        load_lightning_checkpoint(path)
    for trusted in (path, tmp_path / "run"):
        monkeypatch.setenv("LITCPT_TRUST_CHECKPOINTS", f"{tmp_path / 'elsewhere'}:{trusted}")
        assert load_lightning_checkpoint(path)["hyper_parameters"].lr == 0.1
    monkeypatch.setenv("LITCPT_TRUST_CHECKPOINTS", str(tmp_path / "run/checkpoints/other.ckpt"))
    with pytest.raises(UntrustedFileError):
        load_lightning_checkpoint(path)


def test_a_sharded_checkpoints_own_metadata_passes(tmp_path):
    """torch.distributed.checkpoint's real ``.metadata`` (what FSDP's sharded checkpoints hold) is not refused."""
    import torch.distributed.checkpoint as dcp

    from litcpt.runtime.checkpoint import check_sharded_metadata

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    dcp.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, checkpoint_id=tmp_path / "ckpt")
    check_sharded_metadata(tmp_path / "ckpt", field="resume")
