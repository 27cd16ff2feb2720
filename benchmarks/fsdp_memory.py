"""Per-rank memory of sharded training on CPU: 2 gloo ranks vs 1, under ``fsdp`` (FSDP1) and ``fsdp2`` (fully_shard).

For each strategy, the same ~317M-parameter LLaMA-style litgpt config (24 layers, n_embd 1024, the bundled 4096-token
vocabulary) is built the way ``litcpt pretrain`` builds it under fsdp/fsdp2 (``LanguageModel(defer_init=True)``: meta
device, materialised shard by shard, fresh GPT-NeoX init) and trained for a few real AdamW steps on random tokens, with
Lightning's Trainer, 1 process and then 2 processes. Each rank records:

- ``construct_peak``: the peak anonymous RSS (``RssAnon``: heap and tensors, sampled every ms) from just before the
  LightningModule is created until training starts (model built, sharded, optimizer made), minus its value just
  before, in GiB; ``(all RSS)``: the same from ``VmHWM`` (``/proc/self/clear_refs`` resets it), which also counts
  the pages of torch's shared libraries first touched by the FSDP code paths (~0.1-0.4 GB, varying by rank);
- ``step_peak``: the peak RSS over the first optimizer step (absolute), in GiB;
- ``state``: this rank's bytes of parameters + gradients + optimizer states (local shards), in GiB.

Targets: ``ratio_2v1`` = state per rank at 2 ranks / at 1 rank <= 0.55 (both strategies); ``construct_over_shard`` =
construct_peak / (this rank's fp32 shard of the model) <= 1.3 at 2 ranks (no full materialisation; the
eager baseline, ``--with_eager``, builds the full model on each rank first). The last line
prints the worse value of each over the two strategies.

    python benchmarks/fsdp_memory.py            # ~5-10 min on 2 CPU cores, ~6 GB RAM at peak
    python benchmarks/fsdp_memory.py --strategies fsdp2 --with_eager   # + the eager baseline (rows marked *)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GiB = 1024**3
MODEL = dict(name="bench-317m", block_size=128, vocab_size=4096, padded_vocab_size=4096, n_layer=24, n_head=16,
             n_embd=1024, n_query_groups=16, rotary_percentage=1.0, parallel_residual=False, bias=False,
             norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=2816)


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fp:
        for line in fp:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class AnonPeak:
    """Peak of ``RssAnon`` (heap and tensors, no code or file pages), sampled every millisecond by a thread."""

    def __init__(self) -> None:
        import threading

        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def now() -> float:
        return _rss_kb("RssAnon") / 1024**2

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self.now())

    def take(self) -> float:
        """The peak since the last call (GiB), then start over from the current value."""
        peak, self.peak = max(self.peak, self.now()), self.now()
        return peak


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fp:
        fp.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _local(t):
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


def worker(args: argparse.Namespace) -> None:
    import lightning as L
    import torch
    from litgpt import Config

    from litcpt.models.lm import LanguageModel
    from litcpt.runtime.strategies import make_strategy

    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    config = Config(**MODEL)
    seq = args.seq

    class Tokens(L.LightningDataModule):
        batch_size = 1

        def train_dataloader(self):
            g = torch.Generator().manual_seed(1)
            data = torch.randint(0, config.vocab_size, (64, seq + 1), generator=g)
            return torch.utils.data.DataLoader(data, batch_size=1)

    class Probe(L.Callback):
        def __init__(self) -> None:
            self.record: dict = {}

        def on_fit_start(self, trainer, pl_module):  # model built, sharded, optimizer made
            self.record["construct_peak_total"] = _rss_kb("VmHWM") / 1024**2 - self.record["rss_before"]
            self.record["construct_peak"] = anon.take() - self.record["anon_before"]
            _reset_peak()

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if "grads" not in self.record:
                params = [p for g in optimizer.param_groups for p in g["params"]]
                self.record["grads"] = sum(_local(p.grad).numel() * p.grad.element_size()
                                           for p in params if p.grad is not None) / GiB

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if "state" in self.record:
                return
            optimizer = trainer.optimizers[0]
            params = [p for g in optimizer.param_groups for p in g["params"]]
            self.record["params"] = sum(_local(p).numel() * p.element_size() for p in params) / GiB
            self.record["optimizer"] = sum(_local(t).numel() * t.element_size() for p in params
                                           for t in optimizer.state.get(p, {}).values()
                                           if torch.is_tensor(t) and t.numel() > 1) / GiB
            self.record["state"] = self.record["params"] + self.record["grads"] + self.record["optimizer"]
            self.record["step_peak"] = _rss_kb("VmHWM") / 1024**2

    probe = Probe()
    # the construction window starts before the module exists (the eager baseline builds the model right here)
    probe.record["rss_before"] = _rss_kb("VmRSS") / 1024**2
    _reset_peak()
    anon = AnonPeak()
    probe.record["anon_before"] = anon.take()
    module = LanguageModel(config, seq_length=seq, defer_init=not args.eager)
    n_params = sum(p.numel() for p in module.parameters())
    trainer = L.Trainer(accelerator="cpu", devices=args.devices,
                        strategy=make_strategy(args.strategy, accelerator="cpu", world_size=args.devices),
                        precision="32-true", max_steps=args.steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[probe],
                        use_distributed_sampler=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, datamodule=Tokens())
    record = {**probe.record, "rank": trainer.global_rank, "world": args.devices, "strategy": args.strategy,
              "n_params": n_params, "shard": n_params * 4 / args.devices / GiB}
    tag = "eager-" if args.eager else ""
    Path(args.out, f"{tag}{args.strategy}-{args.devices}-rank{trainer.global_rank}.json").write_text(json.dumps(record))


def run(strategy: str, devices: int, out: Path, steps: int, seq: int, eager: bool = False) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--worker", "--strategy", strategy, "--devices", str(devices), "--out", str(out),
           "--steps", str(steps), "--seq", str(seq)] + (["--eager"] if eager else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    tag = "eager-" if eager else ""
    return [json.loads(p.read_text()) for p in sorted(out.glob(f"{tag}{strategy}-{devices}-rank*.json"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", default="fsdp2")
    parser.add_argument("--strategies", default="fsdp,fsdp2")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--out", default=None)
    parser.add_argument("--eager", action="store_true",
                        help="baseline: build the full model on every rank first (litcpt before sharded construction)")
    parser.add_argument("--with_eager", action="store_true", help="also measure the eager baseline at 2 ranks")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    ratios, overs = [], []
    print(f"{'strategy':<9}{'ranks':>6}{'rank':>5}{'params(M)':>10}{'shard GiB':>10}{'construct GiB':>14}"
          f"{'(all RSS)':>10}{'step peak GiB':>14}{'p+g+opt GiB':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies.split(","):
            results = {}
            for devices in (1, 2):
                results[devices] = run(strategy, devices, Path(tmp), args.steps, args.seq)
                for r in results[devices]:
                    print(f"{strategy:<9}{devices:>6}{r['rank']:>5}{r['n_params'] / 1e6:>10.1f}{r['shard']:>10.3f}"
                          f"{r['construct_peak']:>14.3f}{r['construct_peak_total']:>10.3f}{r['step_peak']:>14.3f}"
                          f"{r['state']:>12.3f}", flush=True)
            ratio = max(r["state"] for r in results[2]) / results[1][0]["state"]
            over = max(r["construct_peak"] / r["shard"] for r in results[2])
            print(f"{strategy}: ratio_2v1={ratio:.3f} construct_over_shard={over:.3f}", flush=True)
            ratios.append(ratio)
            overs.append(over)
            if args.with_eager:
                eager = run(strategy, 2, Path(tmp), args.steps, args.seq, eager=True)
                for r in eager:
                    print(f"{strategy + '*':<9}{2:>6}{r['rank']:>5}{r['n_params'] / 1e6:>10.1f}{r['shard']:>10.3f}"
                          f"{r['construct_peak']:>14.3f}{r['construct_peak_total']:>10.3f}{r['step_peak']:>14.3f}"
                          f"{r['state']:>12.3f}", flush=True)
                print(f"{strategy}* (eager baseline): construct_over_shard="
                      f"{max(r['construct_peak'] / r['shard'] for r in eager):.3f}", flush=True)
    print(f"ratio_2v1={max(ratios):.3f} construct_over_shard={max(overs):.3f}")


if __name__ == "__main__":
    main()
