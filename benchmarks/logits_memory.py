"""Memory and time of the logits at a 128k vocabulary: litcpt's fused LM head vs the plain head vs ``litgpt pretrain``
(its ``chunked_cross_entropy`` on full logits), and a DPO step of litcpt vs TRL's ``DPOTrainer``. Run by hand:

    PYTHONPATH=. python benchmarks/logits_memory.py [--reps 3 --threads 1 --skip_trl]

* **Model**: Llama-style (RMSNorm, SwiGLU, RoPE, no biases), 4 layers x 512, ``padded_vocab_size`` 128,256, fp32,
  random weights; random token ids; sequence 1024, micro-batch 2.
* **(a) LM step** (forward + backward + AdamW): ``lm-fused`` (``LanguageModel(fused_head=True).training_loss``),
  ``lm-unfused`` (``fused_head=False``) and ``lm-litgpt`` (``chunked_cross_entropy(model(x), y)``, as
  ``litgpt pretrain``).
* **(b) DPO step**: ``dpo-litcpt`` (``DPOModel.pair_losses`` with precomputed reference log-probs, fused head, 2
  pairs of 512 prompt + 512 response tokens) vs ``dpo-trl`` (TRL's ``DPOTrainer`` on a ``LlamaForCausalLM`` of the
  same shape, ``precompute_ref_log_probs``, the same lengths; in its own venv ``--trl_venv``, as
  ``benchmarks/dpo_vs_trl.py`` does).
* **Measured**, each configuration in its own process, ``--reps`` interleaved rounds (the machine may be shared: the
  medians are reported): peak RSS above the process's RSS after imports and model build (sampled every 2 ms by a
  thread; the first step, so AdamW's moments count), and the time of the second step.

The last line: ``lm_peak_ratio=<fused/unfused> dpo_peak_vs_trl=<litcpt/trl> lm_time_ratio=<fused/unfused>``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
VOCAB, LAYERS, WIDTH, HEADS, MLP, SEQ, BATCH = 128256, 4, 512, 8, 1376, 1024, 2


# ------------------------------------------------------------------------------------------------ measurement
def _rss() -> int:
    with open("/proc/self/statm") as fp:
        return int(fp.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak RSS above the RSS at ``start()``, sampled by a thread (torch releases the GIL in its kernels)."""

    def start(self) -> None:
        self.base, self.peak, self._stop = _rss(), 0, False
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def stop(self) -> float:
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, _rss())
        return (self.peak - self.base) / 2**20


def _two_steps(step) -> dict:
    import gc

    gc.collect()
    meter = PeakRSS()
    meter.start()
    step()
    peak = meter.stop()
    t = time.perf_counter()
    step()
    return {"peak_mib": peak, "step_s": time.perf_counter() - t}


def _config():
    from litgpt import Config

    return Config(name="bench-llama", block_size=SEQ, vocab_size=VOCAB, padded_vocab_size=VOCAB, n_layer=LAYERS,
                  n_head=HEADS, n_embd=WIDTH, n_query_groups=HEADS, rotary_percentage=1.0, parallel_residual=False,
                  bias=False, norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=MLP)


# ------------------------------------------------------------------------------------------------ workers
def worker_lm(kind: str) -> dict:
    import torch

    torch.manual_seed(0)
    batch = torch.randint(0, VOCAB, (BATCH, SEQ + 1))
    if kind == "lm-litgpt":
        from litgpt import GPT
        from litgpt.utils import chunked_cross_entropy

        model = GPT(_config())
        loss_fn = lambda: chunked_cross_entropy(model(batch[:, :-1]), batch[:, 1:])
        params = model.parameters()
    else:
        from litcpt.models.lm import LanguageModel

        module = LanguageModel(_config(), seq_length=SEQ, fused_head=kind == "lm-fused")
        loss_fn = lambda: module.training_loss(batch)[0]
        params = module.parameters()
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step() -> None:
        loss_fn().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return _two_steps(step)


def _dpo_batch():
    import torch

    half = SEQ // 2
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (2 * BATCH, SEQ), generator=g)
    ids[BATCH:, :half] = ids[:BATCH, :half]  # the same prompts for chosen and rejected
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, half:] = True
    return ids, mask


def worker_dpo_litcpt(work: Path) -> dict:
    import torch
    from litgpt import GPT

    from litcpt import assets
    from litcpt.models.base import init_weights
    from litcpt.models.dpo import DPOModel
    from litcpt.models.dpo_reference import ReferenceLogps
    from litcpt.runtime.checkpoint import save_litgpt_dir

    torch.manual_seed(0)
    model = GPT(_config())
    init_weights(model)
    ckpt = save_litgpt_dir(model.state_dict(), _config(), work / "ckpt", tokenizer_dir=assets.tokenizer_dir())
    del model
    ids, mask = _dpo_batch()
    ref = ReferenceLogps(tables={"train": torch.full((BATCH, 2), -5000.0)})
    module = DPOModel(_config(), checkpoint_dir=ckpt, reference_logps=ref, loss_type="sigmoid", beta=0.1)
    optimizer = torch.optim.AdamW(module.trainable_parameters(), lr=1e-4)
    batch = {"input_ids": ids, "response_mask": mask, "index": torch.arange(BATCH)}

    def step() -> None:
        module.pair_losses(batch)["loss"].mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return _two_steps(step)


def worker_dpo_trl(work: Path) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=WIDTH, intermediate_size=MLP, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=HEADS, max_position_embeddings=SEQ,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    ids, _ = _dpo_batch()
    half = SEQ // 2
    from datasets import Dataset

    rows = [{"prompt_input_ids": ids[i, :half].tolist(), "chosen_input_ids": ids[i, half:].tolist(),
             "rejected_input_ids": ids[BATCH + i, half:].tolist()} for i in range(BATCH)]
    dataset = Dataset.from_list(rows)

    class Trainer(DPOTrainer):
        def _prepare_dataset(self, dataset, *a, **k):  # already tokenised
            return dataset

    args = DPOConfig(output_dir=str(work / "trl"), per_device_train_batch_size=BATCH, max_steps=2, beta=0.1,
                     learning_rate=1e-4, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
                     max_length=None, precompute_ref_log_probs=True, dataloader_num_workers=0,
                     use_liger_kernel=os.environ.get("LOGITS_BENCH_LIGER") == "1")

    class Tok:  # only the pad token id is read (the data is tokenised)
        pad_token_id = 0
        eos_token_id = 1

    trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=Tok())
    loader = trainer.get_train_dataloader()
    batch = next(iter(loader))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        trainer.compute_loss(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return _two_steps(step)


def worker(kind: str, threads: int, work: Path) -> dict:
    import torch

    torch.set_num_threads(threads)
    if kind.startswith("lm-"):
        return worker_lm(kind)
    if kind == "dpo-litcpt":
        return worker_dpo_litcpt(work)
    return worker_dpo_trl(work)


# ------------------------------------------------------------------------------------------------ driver
def run(kind: str, python: str, args: argparse.Namespace, work: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([python, str(HERE), "--worker", kind, "--threads", str(args.threads), "--work", str(work)],
                          capture_output=True, text=True, env=env, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-2000:]}
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trl_venv", default="/tmp/litcpt-trl-venv")
    parser.add_argument("--skip_trl", action="store_true")
    parser.add_argument("--worker")
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.threads, Path(args.work))), flush=True)
        return
    kinds = ["lm-fused", "lm-unfused", "lm-litgpt", "dpo-litcpt"] + ([] if args.skip_trl else ["dpo-trl"])
    trl_python = str(Path(args.trl_venv) / "bin" / "python")
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):  # interleaved: a busy moment of the machine hits every configuration
            for kind in kinds:
                result = run(kind, trl_python if kind == "dpo-trl" else sys.executable, args, Path(tmp))
                results[kind].append(result)
                print(f"round {rep + 1} {kind}: {result}", flush=True)
    med = {}
    print(f"\n{'configuration':<12} {'peak MiB (median)':>18} {'step s (median)':>16}")
    for kind, rows in results.items():
        ok = [r for r in rows if "error" not in r]
        if not ok:
            print(f"{kind:<12} failed: {rows[-1]['error'].strip().splitlines()[-1] if rows else '?'}")
            continue
        med[kind] = (statistics.median(r["peak_mib"] for r in ok), statistics.median(r["step_s"] for r in ok))
        print(f"{kind:<12} {med[kind][0]:>18.0f} {med[kind][1]:>16.2f}")

    def ratio(a: str, b: str, i: int) -> str:
        return f"{med[a][i] / med[b][i]:.3f}" if a in med and b in med else "n/a"

    print(f"lm_peak_ratio={ratio('lm-fused', 'lm-unfused', 0)} dpo_peak_vs_trl={ratio('dpo-litcpt', 'dpo-trl', 0)} "
          f"lm_time_ratio={ratio('lm-fused', 'lm-unfused', 1)}")


if __name__ == "__main__":
    main()
