"""Pairs/s of litcpt's RewardBench evaluator vs a straightforward loop, same tiny model and data, one run, CPU.

    PYTHONPATH=. python benchmarks/rewardbench_speed.py [--pairs 128 --batch_size 8 --rounds 5 --threads 2 --model
    recipe]

Models (``--model``): ``recipe``, the tiny recipe's architecture (4 layers, 128 wide, vocab 4096), or ``micro``, the
tests' 2x32 model; block size ``--block_size``, random weights (speed does not depend on them): a DPO policy + reference
(implicit reward), and a classifier reward model.
Data: the first ``--pairs`` bundled HH-RLHF pairs (long multi-turn prompts, short answers), truncated from the left.

* litcpt (the default, ``share_prompt``): :func:`litcpt.rewardbench.engine.score_tokenized` — each pair's prompt
  once, both responses from its keys and values; ``--share_group`` batches per call, their prompts and then their
  responses sorted by length and run ``--batch_size`` rows per forward; the final layer only where outputs are read;
  LM head (DPO) only on positions that predict response tokens, in cache-sized chunks.
* litcpt without prompt sharing (``share_prompt=False``): length-sorted batches of ``--batch_size`` pairs, chosen and
  rejected in one forward.
* straightforward: one sequence per forward (batch size 1, chosen and rejected separately, input order), full
  logits, ``log_softmax`` over every position, masked sum — what a first implementation does.

Rounds alternate the methods; the best round of each is reported (on a shared machine other jobs only ever make a
round slower), in wall-clock pairs/s and in pairs per CPU-second of this process (``time.process_time``, steadier
under contention). Both methods must agree on every score (max abs difference printed) and on the accuracy.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from litgpt import GPT, Config, Tokenizer

from litcpt import assets
from litcpt.data.preference.pair_loading import load_preference_pairs
from litcpt.data.preference.pair_tokens import tokenize_pairs
from litcpt.models.base import init_weights
from litcpt.models.reward import RewardModel
from litcpt.rewardbench.engine import score_tokenized
from litcpt.rewardbench.scorers import ImplicitRewardScorer, RewardModelScorer

MODELS = {  # name -> (n_layer, n_head, n_embd, intermediate_size)
    "recipe": (4, 4, 128, 352),    # recipes/tiny/pretrain.yaml, ~1.9M parameters (the LM head is ~0.5M of them)
    "micro": (2, 2, 32, 64),       # the tests' tiny_config(): the LM head dominates the compute
}


def tiny_config(block_size: int, model: str = "recipe") -> Config:
    n_layer, n_head, n_embd, intermediate = MODELS[model]
    return Config(name=f"bench-{model}", block_size=block_size, vocab_size=4096, padded_vocab_size=4096,
                  n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_query_groups=n_head, rotary_percentage=1.0,
                  parallel_residual=False, bias=False, norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP",
                  intermediate_size=intermediate)


def gpt(config: Config, seed: int) -> GPT:
    torch.manual_seed(seed)
    model = GPT(config)
    init_weights(model)
    return model.eval().requires_grad_(False)


@torch.inference_mode()
def naive_logp(model: GPT, ids: torch.Tensor, prompt_length: int) -> float:
    logits = model(ids.view(1, -1))[0]
    logps = torch.log_softmax(logits[:-1].float(), dim=-1).gather(-1, ids[1:].view(-1, 1)).squeeze(-1)
    mask = torch.arange(1, len(ids)) >= prompt_length
    return float(logps[mask].sum())


def naive_dpo(policy: GPT, reference: GPT, items, beta: float) -> list[tuple[float, float]]:
    out = []
    for item in items:
        rewards = []
        for ids, prompt in ((item.chosen_ids, item.chosen_prompt_length),
                            (item.rejected_ids, item.rejected_prompt_length)):
            rewards.append(beta * (naive_logp(policy, ids, prompt) - naive_logp(reference, ids, prompt)))
        out.append(tuple(rewards))
    return out


@torch.inference_mode()
def naive_reward(rm: RewardModel, items) -> list[tuple[float, float]]:
    out = []
    for item in items:
        out.append(tuple(float(rm(ids.view(1, -1), torch.tensor([len(ids) - 1]))) for ids in
                         (item.chosen_ids, item.rejected_ids)))
    return out


def litcpt_scores(scorer, items, batch_size: int, share_group: int = 16) -> list[tuple[float, float]]:
    scores = score_tokenized(scorer, items, batch_size=batch_size, rank=0, world_size=1, share_group=share_group)
    return [(s.chosen, s.rejected) for s in scores]


def positions_computed(model: torch.nn.Module, fn) -> int:
    """Token positions that enter the first transformer block of ``model`` while ``fn`` runs (padding included)."""
    gpt_model = getattr(model, "model", model)
    count = [0]

    def hook(module, args):
        count[0] += args[0].shape[0] * args[0].shape[1]

    handle = gpt_model.transformer.h[0].register_forward_pre_hook(hook)
    try:
        fn()
    finally:
        handle.remove()
    return count[0]


def timed(fn) -> tuple[float, float, list[tuple[float, float]]]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--model", choices=sorted(MODELS), default="recipe")
    parser.add_argument("--block_size", type=int, default=256)
    parser.add_argument("--share_group", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kinds", default="dpo,reward", help="comma-separated: dpo, reward")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    config = tiny_config(args.block_size, args.model)
    tokenizer = Tokenizer(assets.tokenizer_dir())
    pairs = load_preference_pairs(assets.preference_file())[: args.pairs]
    items, stats = tokenize_pairs(pairs, tokenizer, max_length=args.block_size)
    lengths = [len(i.chosen_ids) + len(i.rejected_ids) for i in items]
    prompt_share = sum(i.chosen_prompt_length + i.rejected_prompt_length for i in items) / sum(lengths)
    print(f"data: {len(items)} HH-RLHF pairs, {sum(lengths) / len(lengths) / 2:.0f} tokens per sequence on average "
          f"({prompt_share:.0%} prompt), {stats.truncated} truncated to {args.block_size}; model {args.model} "
          f"({config.n_layer}x{config.n_embd}, vocab 4096); {args.threads} threads; batch_size {args.batch_size}")

    bs, group = args.batch_size, args.share_group
    methods: dict[str, dict] = {}
    counted: dict[str, torch.nn.Module] = {}        # the model whose first block counts positions
    if "dpo" in args.kinds:
        policy, reference = gpt(config, 0), gpt(config, 1)
        counted["dpo"] = policy
        methods["dpo"] = {
            "straightforward (1 sequence/forward)": lambda: naive_dpo(policy, reference, items, 0.1),
            "litcpt (shared prompt, default)": lambda: litcpt_scores(
                ImplicitRewardScorer(policy, reference, beta=0.1), items, bs, group),
            "litcpt, share_prompt=False": lambda: litcpt_scores(
                ImplicitRewardScorer(policy, reference, beta=0.1, share_prompt=False), items, bs),
        }
    if "reward" in args.kinds:
        torch.manual_seed(2)
        rm = RewardModel(config).eval().requires_grad_(False)
        counted["reward"] = rm
        methods["reward"] = {
            "straightforward (1 sequence/forward)": lambda: naive_reward(rm, items),
            "litcpt (shared prompt, default)": lambda: litcpt_scores(RewardModelScorer(rm), items, bs, group),
            "litcpt, share_prompt=False": lambda: litcpt_scores(RewardModelScorer(rm, share_prompt=False), items,
                                                                 bs),
        }

    for kind, runs in methods.items():
        wall: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        results: dict[str, list] = {}
        for r in range(args.rounds):
            for name in (list(runs) if r % 2 == 0 else list(reversed(runs))):
                w, c, results[name] = timed(runs[name])
                wall[name].append(w)
                cpu[name].append(c)
        base_name = next(iter(runs))
        base = results[base_name]
        print(f"\n{kind}: best of {args.rounds} rounds (median in brackets)")
        rates, cpu_rates = {}, {}
        for name in runs:
            rates[name] = len(items) / min(wall[name])
            cpu_rates[name] = len(items) / min(cpu[name])
            diff = max(abs(a - b) for x, y in zip(results[name], base) for a, b in zip(x, y))
            acc = sum(c > r for c, r in results[name]) / len(items)
            print(f"  {name:<38} {rates[name]:7.1f} pairs/s [{len(items) / statistics.median(wall[name]):7.1f}]  "
                  f"{cpu_rates[name]:7.1f} pairs/CPU-s   accuracy {acc:.4f}   max |score diff| {diff:.1e}")
        for name in list(runs)[1:]:
            print(f"  speed-up {name} / straightforward: {rates[name] / rates[base_name]:.2f}x wall-clock, "
                  f"{cpu_rates[name] / cpu_rates[base_name]:.2f}x CPU time")
        real = sum(lengths)
        counts = {name: positions_computed(counted[kind], runs[name]) for name in runs}
        print("  token positions through each model, padding included (% of the sequences' tokens): " + ", ".join(
            f"{name.split(' (')[0] if name.startswith('straight') else name} {n} ({n / real:.0%})"
            for name, n in counts.items()))


if __name__ == "__main__":
    main()
