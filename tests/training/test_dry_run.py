"""``--dry_run true``: per-rank memory estimate from a meta-device model, nothing allocated."""

from __future__ import annotations

import subprocess
import sys

import pytest

from litcpt.training.dry_run import GiB, estimate_memory
from tests.helpers import child_env, patience


def test_estimate_closed_form():
    common = dict(n_params=1000, n_trainable=1000, n_frozen=0, block_params=100, n_layer=2, n_embd=8,
                  intermediate_size=16, vocab_size=32, llama_mlp=True, micro_batch_size=2, seq_length=4,
                  activation_checkpointing=False)
    one = estimate_memory(world_size=1, sharded=False, precision="bf16-mixed", **common)
    assert (one.params, one.grads, one.optimizer) == (4000, 4000, 8000)  # fp32 master weights, grads, 2 moments
    # activations: 2 layers x (10*8 + 4*16) values x 8 tokens x 2 bytes + logits 8 x 32 x (2 + 4)
    assert one.activations == 2 * (80 + 64) * 8 * 2 + 8 * 32 * 6
    four = estimate_memory(world_size=4, sharded=True, precision="bf16-mixed", **common)
    assert (four.params, four.grads, four.optimizer) == (1000, 1000, 2000) and four.activations == one.activations
    assert four.gather_buffers == 2 * 100 * 2
    ddp = estimate_memory(world_size=4, sharded=False, precision="bf16-mixed", **common)
    assert ddp.params == 4000
    true = estimate_memory(world_size=1, sharded=False, precision="bf16-true", **{**common, "n_frozen": 1000})
    assert (true.params, true.frozen, true.optimizer) == (2000, 2000, 4000)
    ckpt = estimate_memory(world_size=1, sharded=False, precision="32-true",
                           **{**common, "activation_checkpointing": True})
    assert ckpt.activations == 2 * 8 * 8 * 4 + (80 + 64) * 8 * 4 + 8 * 32 * 8


def test_7b_dry_run_fast_and_small(tmp_path):
    """The issue's command: a 7B model, 8 ranks, fsdp2, without allocating it (peak RSS well under 2 GB)."""
    code = ("import resource, sys; from litcpt.cli.main import main; main(sys.argv[1:]); "
            "print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    env = child_env()
    proc = subprocess.run([sys.executable, "-c", code, "pretrain", "--model_name", "Llama-2-7b-hf", "--devices", "8",
                           "--strategy", "fsdp2", "--dry_run", "true", "--out_dir", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=patience(300), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "6.738B parameters" in out and "world size 8" in out and "precision bf16-mixed" in out
    params = next(line for line in out.splitlines() if line.startswith("parameters"))
    assert abs(float(params.split()[-1]) - 6.738e9 * 4 / 8 / GiB) < 0.01  # fp32 shard of 1/8
    rss_gb = int(out.split("maxrss_kb")[1].split()[0]) / 1024**2
    assert rss_gb < 2.0, rss_gb
    assert not (tmp_path / "out" / "final").exists()


def test_reward_and_dpo_dry_run(tiny_checkpoint, tmp_path, capsys):
    from litcpt.commands import dpo, reward

    reward.setup(tiny_checkpoint, out_dir=tmp_path / "r", devices=2, strategy="fsdp", accelerator="cpu", dry_run=True)
    out = capsys.readouterr().out
    assert "(reward)" in out and "world size 2" in out and "precision 32-true" in out
    dpo.setup(tiny_checkpoint, out_dir=tmp_path / "d", devices=2, strategy="fsdp2", accelerator="cpu", dry_run=True)
    out = capsys.readouterr().out
    assert "(dpo)" in out and "frozen reference" in out
    assert not (tmp_path / "d" / "final").exists()


def test_fused_head_counts_one_chunk_of_logits(tmp_path, capsys):
    from litcpt.losses.fused_head import chunk_rows

    common = dict(n_params=1000, n_trainable=1000, n_frozen=0, block_params=100, n_layer=2, n_embd=8,
                  intermediate_size=16, vocab_size=128256, llama_mlp=True, micro_batch_size=2, seq_length=1024,
                  activation_checkpointing=False, world_size=1, sharded=False, precision="bf16-mixed")
    plain, fused = estimate_memory(**common), estimate_memory(**common, fused_head=True)
    assert plain.logits == plain.unfused_logits == fused.unfused_logits == 2048 * 128256 * 6
    assert fused.logits == fused.fused_logits == chunk_rows(128256) * 128256 * 6 + 2048 * (8 * 2 + 8)
    assert plain.activations - fused.activations == plain.logits - fused.logits
    from litcpt.cli.main import main

    for flag in ("true", "false"):
        main(["pretrain", "--model_name", "Llama-3.2-1B", "--train.micro_batch_size", "2", "--train.max_seq_length",
              "1024", "--train.fused_head", flag, "--dry_run", "true", "--out_dir", str(tmp_path / flag)])
        line = next(x for x in capsys.readouterr().out.splitlines() if "of which logits" in x)
        assert f"fused head {'on' if flag == 'true' else 'off'}; unfused: 1.47 GiB, fused: 0.19 GiB" in line, line


def test_dry_run_warns_as_the_run_does_about_bf16_true(tiny_checkpoint, tmp_path, monkeypatch):
    """``--dry_run`` and the real run issue the same bf16-true warning (one function makes it), with the run's
    default optimizer filled in (dpo: lr 5e-7)."""
    import warnings

    from litcpt.commands import dpo, pretrain
    from litcpt.runtime.precision import check_precision
    from litcpt.training import harness

    expected = check_precision("bf16-true", 5e-7)

    def caught(call) -> list[str]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            call()
        return [str(w.message) for w in seen if "most weights will not change" in str(w.message)]

    dry = caught(lambda: dpo.setup(tiny_checkpoint, out_dir=tmp_path / "d", precision="bf16-true", accelerator="cpu",
                                   dry_run=True))
    assert dry == [expected]

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(harness, "build_trainer", stop)  # the real run up to its Trainer: the warning comes before
    optimizer = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 5e-7}}

    def real():
        with pytest.raises(Stop):
            pretrain.setup(initial_checkpoint_dir=tiny_checkpoint, out_dir=tmp_path / "p", precision="bf16-true",
                           accelerator="cpu", optimizer=optimizer)

    assert caught(real) == [expected]
    dry_pretrain = caught(lambda: pretrain.setup(initial_checkpoint_dir=tiny_checkpoint, out_dir=tmp_path / "q",
                                                 precision="bf16-true", accelerator="cpu", optimizer=optimizer,
                                                 dry_run=True))
    assert dry_pretrain == [expected]
    assert caught(lambda: dpo.setup(tiny_checkpoint, out_dir=tmp_path / "e", precision="bf16-mixed", accelerator="cpu",
                                    dry_run=True)) == []
