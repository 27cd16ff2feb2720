"""Memory and time of the logits at a 128k vocabulary: litcpt's fused LM head vs the plain head vs ``litgpt pretrain``
(its ``chunked_cross_entropy`` on full logits), and a DPO step of litcpt vs TRL's ``DPOTrainer``. Run by hand:

    PYTHONPATH=. python benchmarks/logits_memory.py --trl_venv /tmp/fh-trl-venv [--reps 3 --threads 1]
    PYTHONPATH=. python benchmarks/logits_memory.py --smoke --skip_trl      # vocab 4096, seq 128, one round

* **Model**: Llama-style (RMSNorm, SwiGLU, RoPE, no biases), 4 layers x 512, ``padded_vocab_size`` 128,256, fp32,
  random weights; random token ids; sequence 1024, micro-batch 2 (``--vocab`` / ``--seq`` change the scale).
* **(a) LM step** (forward + backward + AdamW): ``lm-fused`` (``LanguageModel(fused_head=True).training_loss``),
  ``lm-unfused`` (``fused_head=False``) and ``lm-litgpt`` (``chunked_cross_entropy(model(x), y)``, as
  ``litgpt pretrain``).
* **(b) DPO step**: ``dpo-litcpt`` (``DPOModel.pair_losses`` with precomputed reference log-probs, fused head, 2
  pairs of 512 prompt + 512 response tokens) vs ``dpo-trl`` (TRL's ``DPOTrainer.compute_loss`` on a
  ``LlamaForCausalLM`` of the same shape, ``precompute_ref_log_probs``, the same lengths; in its own venv
  ``--trl_venv``, as ``benchmarks/dpo_vs_trl.py`` does). TRL >= 1.14 has a chunked log-prob head of its own (on CPU it
  scores every position in ``[4096, 32768]`` tiles). ``dpo-trl-liger`` adds ``use_liger_kernel=True`` (applied as
  ``Trainer.train()`` does; TRL keeps only Liger's layer kernels); liger-kernel and triton are not in the TRL venv:
  install them with ``pip install --target DIR liger-kernel triton`` and pass ``--liger_site DIR``. Liger's kernels
  are Triton kernels, which have no CPU backend: on a CPU this configuration fails, and the summary says so.
* **Measured**, each configuration in its own process, ``--reps`` interleaved rounds (the machine may be shared: the
  medians are reported; a configuration that fails once is not retried): ``peak MiB``, the peak RSS over two steps
  above the RSS after imports and model build (sampled every 2 ms by a thread; AdamW allocates its moments in the
  first step, so this is the run's peak); ``step-2 MiB``, the second step's own peak above the RSS at its start
  (the weights and moments excluded), and ``fwd+bwd MiB``, the same up to the end of its backward (AdamW's update
  excluded: what the LM head changes); the wall and CPU time of the second step, and the 1-minute load average.

The last line: ``lm_peak_ratio=<fused/unfused> dpo_peak_vs_trl=<litcpt/trl> lm_time_ratio=<fused/unfused>`` (the
run peaks and the wall times); the line before it gives the same ratios of the step-2 peaks and CPU times.
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


def _set_scale(vocab: int, seq: int) -> None:
    """The workers read the module-level sizes; ``--vocab`` / ``--seq`` (or ``--smoke``) shrink them."""
    global VOCAB, SEQ
    VOCAB, SEQ = vocab, seq


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


def _two_steps(backward, update) -> dict:
    """Two training steps (``backward()``: forward + backward; ``update()``: optimizer step + zero_grad), measured:

    * ``peak_mib``: peak RSS over both steps above the RSS before the first (after imports and model build). AdamW
      allocates its moments in the first step, so this is the run's peak: the first step's optimizer update or the
      second step's forward and backward on top of the moments, whichever is higher.
    * ``step2_mib``: the second step's own peak above the RSS at its start (its activations, logits, gradients and
      optimizer temporaries, the persistent weights and moments excluded); ``fwdbwd_mib``: the same up to the end
      of its backward (what the LM head changes; AdamW's update comes after).
    * ``step_s`` / ``step_cpu_s``: wall and CPU time of the second step (CPU time is less sensitive to other
      processes on a shared machine).
    """
    import gc

    gc.collect()
    whole, second = PeakRSS(), PeakRSS()
    whole.start()
    backward()
    update()
    gc.collect()
    second.start()
    wall, cpu = time.perf_counter(), time.process_time()
    backward()
    fwdbwd = (max(second.peak, _rss()) - second.base) / 2**20
    update()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"peak_mib": whole.stop(), "step2_mib": second.stop(), "fwdbwd_mib": fwdbwd, "step_s": wall,
            "step_cpu_s": cpu, "load": os.getloadavg()[0]}


def _update(optimizer) -> None:
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


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

    return _two_steps(lambda: loss_fn().backward(), lambda: _update(optimizer))


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

    return _two_steps(lambda: module.pair_losses(batch)["loss"].mean().backward(), lambda: _update(optimizer))


def _hf_tokenizer():
    """A stand-in tokenizer for TRL (the data is already tokenised: only the pad and EOS ids are read)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="<unk>")),
                                   pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


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

    rows = [{"prompt_ids": ids[i, :half].tolist(), "chosen_ids": ids[i, half:].tolist(),
             "rejected_ids": ids[BATCH + i, half:].tolist()} for i in range(BATCH)]
    dataset = Dataset.from_list(rows)

    class Trainer(DPOTrainer):
        def _prepare_dataset(self, dataset, *a, **k):  # already tokenised
            return dataset

    args = DPOConfig(output_dir=str(work / "trl"), per_device_train_batch_size=BATCH, max_steps=2, beta=0.1,
                     learning_rate=1e-4, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
                     max_length=None, precompute_ref_log_probs=True, dataloader_num_workers=0, disable_tqdm=True,
                     use_liger_kernel=os.environ.get("LOGITS_BENCH_LIGER") == "1")
    trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=_hf_tokenizer())
    if args.use_liger_kernel:  # what ``Trainer.train()`` does first (TRL keeps Liger's layer kernels only)
        from transformers.integrations.liger import apply_liger_kernel

        apply_liger_kernel(trainer.model, args.liger_kernel_config)
    loader = trainer.get_train_dataloader()
    batch = next(iter(loader))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    return _two_steps(lambda: trainer.compute_loss(model, batch).backward(), lambda: _update(optimizer))


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
    if kind == "dpo-trl-liger":
        env["LOGITS_BENCH_LIGER"] = "1"
        if args.liger_site:  # liger-kernel (+ triton) installed with ``pip install --target``, outside the TRL venv
            env["PYTHONPATH"] = f"{REPO}{os.pathsep}{args.liger_site}"
    cmd = [python, str(HERE), "--worker", kind, "--threads", str(args.threads), "--work", str(work),
           "--vocab", str(VOCAB), "--seq", str(SEQ)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
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
    parser.add_argument("--liger_site", default="", help="a `pip install --target` folder holding liger-kernel")
    parser.add_argument("--vocab", type=int, default=VOCAB, help="padded vocabulary size")
    parser.add_argument("--seq", type=int, default=SEQ, help="sequence length (DPO: half prompt, half response)")
    parser.add_argument("--smoke", action="store_true", help="tiny scale (vocab 4096, seq 128, 1 round)")
    parser.add_argument("--only", default="", help="comma-separated configurations to run (default: all)")
    parser.add_argument("--worker")
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.smoke:
        args.vocab, args.seq, args.reps = 4096, 128, 1
    _set_scale(args.vocab, args.seq)
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.threads, Path(args.work))), flush=True)
        return
    kinds = ["lm-fused", "lm-unfused", "lm-litgpt", "dpo-litcpt"]
    kinds += [] if args.skip_trl else ["dpo-trl", "dpo-trl-liger"]
    if args.only:
        kinds = [k for k in kinds if k in args.only.split(",")]
    trl_python = str(Path(args.trl_venv) / "bin" / "python")
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    print(f"vocab {VOCAB}, {LAYERS} layers x {WIDTH}, seq {SEQ}, micro-batch {BATCH}, threads {args.threads}, "
          f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):  # interleaved: a busy moment of the machine hits every configuration
            for kind in kinds:
                if results[kind] and "error" in results[kind][0]:
                    continue  # failed once: it will fail again
                result = run(kind, trl_python if kind.startswith("dpo-trl") else sys.executable, args, Path(tmp))
                results[kind].append(result)
                shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.items()}
                if "error" in shown:
                    shown["error"] = shown["error"].strip().splitlines()[-1]
                print(f"round {rep + 1} {kind}: {shown}", flush=True)
    print_summary(results)


COLUMNS = ("peak_mib", "step2_mib", "fwdbwd_mib", "step_s", "step_cpu_s", "load")


def print_summary(results: dict[str, list[dict]]) -> None:
    """The medians per configuration, then the ratios; the last line is the one the issue asks for."""
    med: dict[str, dict[str, float]] = {}
    print(f"\n{'configuration':<14} {'peak MiB':>9} {'step-2 MiB':>11} {'fwd+bwd MiB':>12} {'step s':>8} "
          f"{'step CPU s':>11} {'load':>6} (medians)")
    for kind, rows in results.items():
        ok = [r for r in rows if "error" not in r]
        if not ok:
            reason = rows[-1]["error"].strip().splitlines()[-1] if rows else "?"
            if kind == "dpo-trl-liger" and "active drivers" in reason:
                reason += " (Liger's kernels are Triton kernels: no CPU backend)"
            print(f"{kind:<14} failed: {reason}")
            continue
        med[kind] = {c: statistics.median(r[c] for r in ok) for c in COLUMNS}
        m = med[kind]
        print(f"{kind:<14} {m['peak_mib']:>9.0f} {m['step2_mib']:>11.0f} {m['fwdbwd_mib']:>12.0f} {m['step_s']:>8.2f} "
              f"{m['step_cpu_s']:>11.2f} {m['load']:>6.2f}  (n={len(ok)})")

    def ratio(a: str, b: str, column: str) -> str:
        return f"{med[a][column] / med[b][column]:.3f}" if a in med and b in med else "n/a"

    print(f"step-2 peaks: lm_step2_ratio={ratio('lm-fused', 'lm-unfused', 'step2_mib')} "
          f"dpo_step2_vs_trl={ratio('dpo-litcpt', 'dpo-trl', 'step2_mib')}; forward+backward peaks: "
          f"lm_fwdbwd_ratio={ratio('lm-fused', 'lm-unfused', 'fwdbwd_mib')} "
          f"dpo_fwdbwd_vs_trl={ratio('dpo-litcpt', 'dpo-trl', 'fwdbwd_mib')}; CPU time: "
          f"lm_cpu_time_ratio={ratio('lm-fused', 'lm-unfused', 'step_cpu_s')}; vs litgpt: "
          f"peak {ratio('lm-fused', 'lm-litgpt', 'peak_mib')} time {ratio('lm-fused', 'lm-litgpt', 'step_s')}")
    print(f"lm_peak_ratio={ratio('lm-fused', 'lm-unfused', 'peak_mib')} "
          f"dpo_peak_vs_trl={ratio('dpo-litcpt', 'dpo-trl', 'peak_mib')} "
          f"lm_time_ratio={ratio('lm-fused', 'lm-unfused', 'step_s')}")

if __name__ == "__main__":
    main()
