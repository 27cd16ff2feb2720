"""DPO training speed and agreement: ``litcpt dpo`` vs TRL's ``DPOTrainer``, same model, same pairs, fp32 CPU.

    PYTHONPATH=. python benchmarks/dpo_vs_trl.py [--steps 20 --batch 8 --max_length 256 --threads 2]

What is compared:

* **Model**: a tiny Llama (RMSNorm, SwiGLU, RoPE, no biases; ``--layers``/``--width``, vocab 4096 = the bundled
  tokenizer), random init, saved as a LitGPT checkpoint for litcpt and converted with litgpt's
  ``copy_weights_llama`` to a Hugging Face ``LlamaForCausalLM`` directory (same weights, same tokenizer) for TRL.
* **Pairs**: the bundled HH-RLHF harmless-base pairs, tokenised once by litcpt (``truncation: drop``: pairs longer
  than ``--max_length`` are left out, so neither side truncates). TRL gets litcpt's token ids (its dataset
  preparation is skipped) in litcpt's batch order (its sampler is sequential), so both train on identical batches.
* **Training**: DPO ``sigmoid``, β 0.1, reference = the starting model with **precomputed reference log-probs** on
  both sides, ``--batch`` pairs per step (no accumulation), AdamW lr 1e-4 (no weight decay), constant LR, gradient
  clipping at norm 1.0, fp32, CPU, ``--threads`` threads each.
* **litcpt's side** is ``litcpt.commands.dpo.setup`` (what ``litcpt dpo`` runs): one forward over the ``2B`` rows,
  the LM head only on the positions that predict response tokens; validation is on 16 pairs (never reached).
* **Measured**: optimizer steps/s (and pairs/s) over steps ``--skip+1 .. --steps`` (the first steps warm up; the
  reference pass is excluded on both sides), peak RSS of each process, and the loss of every step (must agree to
  1e-4: same model, same data, same optimizer).

TRL runs in its own venv, which this script creates on first use (``--trl_venv``, default ``/tmp/litcpt-trl-venv``:
``pip install torch==2.13.0`` then ``pip install trl==--trl_version``); TRL is not a litcpt dependency. Each side
runs in a fresh subprocess, one after the other (``--rounds`` alternating rounds; the best round of each is kept —
on a shared machine other jobs only ever slow a round down).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]


# ----------------------------------------------------------------------------------------------------- workers
def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_litcpt(args: argparse.Namespace) -> dict:
    """``litcpt.commands.dpo.setup`` (what ``litcpt dpo`` runs), timed from its own metrics.csv."""
    import csv

    import torch

    torch.set_num_threads(args.threads)
    import shutil

    from litcpt.callbacks import ConstantLR
    from litcpt.commands.dpo import setup
    from litcpt.data.preference.datamodule import Preference
    from litcpt.training.args import EvalArgs, TrainArgs

    work = Path(args.work)
    out = work / f"litcpt-run-{args.round}"
    shutil.rmtree(out, ignore_errors=True)  # metrics.csv must be this run's
    setup(
        work / "litgpt",
        out_dir=out,
        beta=0.1,
        loss_type="sigmoid",
        precompute_ref=True,
        data=Preference(
            train_data_path=work / "pairs.jsonl",
            val_data_path=work / "val.jsonl",
            max_length=args.max_length,
            truncation="drop",
        ),
        train=TrainArgs(
            global_batch_size=args.batch,
            micro_batch_size=args.batch,
            max_steps=args.steps,
            log_interval=1,
            save_interval=None,
            max_norm=1.0,
        ),
        eval=EvalArgs(interval=10**6, max_iters=1),
        lr_schedule=ConstantLR(),
        optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": args.lr, "weight_decay": 0.0}},
        precision="32-true",
        accelerator="cpu",
        devices=1,
        logger_name="csv",
        seed=42,
    )
    losses, times = {}, {}
    with open(next((out / "logs").glob("version_*/metrics.csv")), newline="") as fp:
        for row in csv.DictReader(fp):
            if row.get("train/loss"):
                losses[int(row["step"])] = float(row["train/loss"])
            if row.get("train/time"):
                times[int(row["step"])] = float(row["train/time"])
    steps = sorted(times)
    return {
        "losses": [losses[s] for s in sorted(losses)],
        "times": [times[s] for s in steps],
        "peak_rss_mib": _rss_mib(),
    }


def worker_trl(args: argparse.Namespace) -> dict:
    """TRL's ``DPOTrainer.train()`` on litcpt's token ids, in litcpt's batch order."""
    import torch

    torch.set_num_threads(args.threads)
    import trl
    from datasets import Dataset
    from torch.utils.data import SequentialSampler
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    work = Path(args.work)
    rows = json.loads((work / "trl_pairs.json").read_text())
    times: list[float] = []
    losses: list[float] = []

    class Timer(TrainerCallback):
        def on_step_end(self, *a, **k):
            times.append(time.perf_counter())

    class Trainer(DPOTrainer):
        def _prepare_dataset(self, dataset, *a, **k):  # already tokenised by litcpt
            return dataset

        def _get_train_sampler(self, *a, **k):  # litcpt's batch order
            return SequentialSampler(self.train_dataset)

        def compute_loss(self, *a, **k):
            loss = super().compute_loss(*a, **k)
            if self.model.training:
                losses.append(float(loss.detach()))
            return loss

    tokenizer = PreTrainedTokenizerFast.from_pretrained(work / "hf")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = LlamaForCausalLM.from_pretrained(work / "hf", dtype=torch.float32)
    config = DPOConfig(
        output_dir=str(work / f"trl-run-{args.round}"),
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        max_steps=args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        beta=0.1,
        loss_type=["sigmoid"],
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=args.batch,
        max_length=None,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=42,
        dataloader_num_workers=0,
        disable_tqdm=True,
        bf16=False,
        fp16=False,
    )
    trainer = Trainer(
        model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[Timer()]
    )
    start = time.perf_counter()
    trainer.train()
    return {"losses": losses, "times": [t - start for t in times], "peak_rss_mib": _rss_mib(), "trl": trl.__version__}


# ------------------------------------------------------------------------------------------------- preparation
def prepare(args: argparse.Namespace) -> dict:
    """LitGPT + HF checkpoints of one random tiny Llama, the pairs file, and TRL's copy of litcpt's batches."""
    import shutil

    import torch
    from litgpt import GPT, Config, Tokenizer
    from litgpt.scripts.convert_lit_checkpoint import copy_weights_llama

    from litcpt import assets
    from litcpt.data.preference.datamodule import Preference
    from litcpt.data.preference.pair_loading import load_preference_pairs
    from litcpt.models.base import init_weights
    from litcpt.runtime.checkpoint import save_litgpt_dir

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    config = Config(
        name="bench-llama",
        block_size=args.max_length,
        vocab_size=4096,
        padded_vocab_size=4096,
        n_layer=args.layers,
        n_head=args.heads,
        n_embd=args.width,
        n_query_groups=args.heads,
        rotary_percentage=1.0,
        parallel_residual=False,
        bias=False,
        norm_class_name="RMSNorm",
        mlp_class_name="LLaMAMLP",
        intermediate_size=args.width * 11 // 4,
        norm_eps=1e-5,
        rope_base=10000,
    )
    torch.manual_seed(0)
    model = GPT(config)
    init_weights(model)
    save_litgpt_dir(model.state_dict(), config, work / "litgpt", tokenizer_dir=assets.tokenizer_dir())

    hf_state: dict = {}
    copy_weights_llama(config, hf_state, model.state_dict())
    hf = work / "hf"
    hf.mkdir(exist_ok=True)
    torch.save({k: v.contiguous() for k, v in hf_state.items()}, hf / "pytorch_model.bin")
    (hf / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "vocab_size": config.padded_vocab_size,
                "hidden_size": config.n_embd,
                "intermediate_size": config.intermediate_size,
                "num_hidden_layers": config.n_layer,
                "num_attention_heads": config.n_head,
                "num_key_value_heads": config.n_query_groups,
                "head_dim": config.head_size,
                "max_position_embeddings": config.block_size,
                "rms_norm_eps": config.norm_eps,
                "rope_theta": config.rope_base,
                "tie_word_embeddings": False,
                "attention_bias": False,
                "mlp_bias": False,
                "hidden_act": "silu",
                "torch_dtype": "float32",
            },
            indent=1,
        )
    )
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (assets.tokenizer_dir() / name).is_file():
            shutil.copy(assets.tokenizer_dir() / name, hf / name)

    pairs = load_preference_pairs(assets.preference_file())
    for name, subset in (("pairs.jsonl", pairs), ("val.jsonl", pairs[:16])):  # litcpt validates on 16 pairs
        with open(work / name, "w", encoding="utf-8") as fp:
            for pair in subset:
                fp.write(json.dumps({"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}) + "\n")

    # litcpt's batches, in its order: TRL trains on exactly these
    data = Preference(
        train_data_path=work / "pairs.jsonl",
        val_data_path=work / "val.jsonl",
        max_length=args.max_length,
        truncation="drop",
    )
    data.connect(tokenizer=Tokenizer(work / "litgpt"), batch_size=args.batch, max_seq_length=args.max_length)
    data.setup()
    items = {item.index: item for item in data.train_dataset.items}
    rows, lengths = [], []
    for step, batch in enumerate(data.train_dataloader()):
        if step == args.steps:
            break
        for index in batch["index"].tolist():
            item = items[index]
            p = int(item.chosen_prompt_length)
            prompt = item.chosen_ids[:p].tolist()
            if p != int(item.rejected_prompt_length) or item.rejected_ids[:p].tolist() != prompt:
                raise RuntimeError(f"pair {index}: chosen and rejected prompts differ after tokenisation")
            rows.append(
                {
                    "prompt_ids": prompt,
                    "chosen_ids": item.chosen_ids[p:].tolist(),
                    "rejected_ids": item.rejected_ids[p:].tolist(),
                }
            )
            lengths += [len(item.chosen_ids), len(item.rejected_ids)]
    if len(rows) < args.steps * args.batch:
        raise RuntimeError(f"only {len(rows)} pairs fit in {args.max_length} tokens; need {args.steps * args.batch}")
    (work / "trl_pairs.json").write_text(json.dumps(rows))
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "pairs_used": len(rows),
        "mean_tokens_per_sequence": sum(lengths) / len(lengths),
    }


def ensure_trl_venv(venv: Path, version: str) -> Path:
    python = venv / "bin" / "python"
    if python.is_file():
        check = subprocess.run(
            [str(python), "-c", "import trl; print(trl.__version__)"], capture_output=True, text=True
        )
        if check.returncode == 0 and check.stdout.strip() == version:
            return python
    print(f"creating TRL venv {venv} (torch 2.13.0, trl {version}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"trl=={version}"], check=True)
    return python


def run_worker(python: str, kind: str, args: argparse.Namespace, round_: int) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO) if kind == "litcpt" else "",
        "OMP_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "TQDM_DISABLE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(Path(args.work) / "hf-datasets-cache"),
    }
    cmd = [
        python,
        str(HERE),
        "--worker",
        kind,
        "--round",
        str(round_),
        "--work",
        args.work,
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
        "--max_length",
        str(args.max_length),
        "--threads",
        str(args.threads),
        "--lr",
        str(args.lr),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=args.work)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def steps_per_second(times: list[float], skip: int) -> float:
    """Steps per second from the end times of steps ``skip+1 .. N`` (times[i] = end of step i+1)."""
    return (len(times) - 1 - skip) / (times[-1] - times[skip])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip", type=int, default=3, help="warm-up steps left out of the timing")
    parser.add_argument("--batch", type=int, default=8, help="pairs per optimizer step")
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--work", default="/tmp/litcpt-dpo-vs-trl")
    parser.add_argument("--trl_venv", default="/tmp/litcpt-trl-venv")
    parser.add_argument("--trl_version", default="1.16.0")
    parser.add_argument("--worker", choices=["litcpt", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        result = (worker_litcpt if args.worker == "litcpt" else worker_trl)(args)
        print(json.dumps(result))
        return

    trl_python = ensure_trl_venv(Path(args.trl_venv), args.trl_version)
    info = prepare(args)
    print(
        f"model: {args.layers} layers x {args.width} wide, vocab 4096, {info['parameters'] / 1e6:.2f}M parameters; "
        f"{info['pairs_used']} pairs, {info['mean_tokens_per_sequence']:.0f} tokens per sequence on average; "
        f"batch {args.batch} pairs, {args.steps} steps (first {args.skip} not timed), fp32, {args.threads} threads"
    )
    best: dict[str, dict] = {}
    for round_ in range(args.rounds):
        for kind, python in (("litcpt", sys.executable), ("trl", str(trl_python))):
            result = run_worker(python, kind, args, round_)
            result["steps_per_s"] = steps_per_second(result["times"], args.skip)
            print(
                f"round {round_} {kind:6s}: {result['steps_per_s']:.3f} steps/s, "
                f"peak RSS {result['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
            if kind not in best or result["steps_per_s"] > best[kind]["steps_per_s"]:
                best[kind] = result
    lit, trl = best["litcpt"], best["trl"]
    n = min(len(lit["losses"]), len(trl["losses"]))
    diffs = [abs(a - b) for a, b in zip(lit["losses"][:n], trl["losses"][:n])]
    print(f"\nTRL {trl.get('trl')} vs litcpt, best of {args.rounds} round(s):")
    print(
        f"  litcpt dpo : {lit['steps_per_s']:.3f} steps/s = {lit['steps_per_s'] * args.batch:.2f} pairs/s, "
        f"peak RSS {lit['peak_rss_mib']:.0f} MiB"
    )
    print(
        f"  TRL        : {trl['steps_per_s']:.3f} steps/s = {trl['steps_per_s'] * args.batch:.2f} pairs/s, "
        f"peak RSS {trl['peak_rss_mib']:.0f} MiB"
    )
    print(
        f"  speed ratio litcpt/TRL: {lit['steps_per_s'] / trl['steps_per_s']:.2f}x; "
        f"RSS ratio {lit['peak_rss_mib'] / trl['peak_rss_mib']:.2f}"
    )
    print(f"  losses, first {min(n, 5)} steps: litcpt {[round(x, 6) for x in lit['losses'][:5]]}")
    print(f"                            TRL    {[round(x, 6) for x in trl['losses'][:5]]}")
    print(f"  max |loss difference| over the first 3 steps: {max(diffs[:3]):.2e}; over all {n} steps: {max(diffs):.2e}")


if __name__ == "__main__":
    main()
