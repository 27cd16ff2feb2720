"""Listwise reward-model training step (forward + backward) and RewardBench 2 scoring: shared prompt vs plain forward.

Run by hand: ``PYTHONPATH=. python benchmarks/listwise_speed.py [--prompts 64] [--rejected 3] [--rounds 5]``.
Rows: bundled HH-RLHF prompts, each with its chosen and ``--rejected`` rejected responses (its own and the next
pairs'), ``max_length`` 128, on the tiny recipe model (4 x 128, random weights). Prints steps/s and the ratio of the
shared-prompt path to the plain one (best of ``--rounds`` alternating rounds, measured in the same run).
"""

from __future__ import annotations

import argparse
import time

import torch
from litgpt import Config, Tokenizer

from litcpt import assets
from litcpt.data.preference.best_of_n import BestOfNRow, collate_groups, tokenize_groups
from litcpt.data.preference.pair_loading import load_preference_pairs
from litcpt.models.base import init_weights
from litcpt.models.reward import RewardModel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--rejected", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="prompts per training step")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--parts", default="train,score,rb2-reward,rb2-dpo", help="comma-separated subset to run")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = Config(name="tiny", block_size=128, vocab_size=4096, padded_vocab_size=4096, n_layer=4, n_head=4,
                    n_embd=128, n_query_groups=4, rotary_percentage=1.0, parallel_residual=False, bias=False,
                    norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=512)
    pairs = load_preference_pairs(assets.preference_file())[: args.prompts + args.rejected]
    rows = [BestOfNRow(p.prompt, (p.chosen, *(q.rejected for q in pairs[i:i + args.rejected])), 1)
            for i, p in enumerate(pairs[: args.prompts])]
    groups, _ = tokenize_groups(rows, Tokenizer(assets.tokenizer_dir()), max_length=128)
    batches = [collate_groups(groups[i:i + args.batch]) for i in range(0, len(groups), args.batch)]
    rm = RewardModel(config)
    init_weights(rm.model)
    rm.log = lambda *a, **k: None

    def train_epoch(share: bool) -> float:
        rm.share_prompt = share
        rm.train()
        start = time.perf_counter()
        for batch in batches:
            rm.zero_grad()
            rm.training_step(batch, 0).backward()
        return len(batches) / (time.perf_counter() - start)

    def score_epoch(share: bool) -> float:
        rm.eval()
        start = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                rm.listwise_scores(batch, share_prompt=share)
        return len(batches) * args.batch / (time.perf_counter() - start)

    from litgpt import GPT

    from litcpt.rewardbench.engine_v2 import score_groups
    from litcpt.rewardbench.scorers import ImplicitRewardScorer, RewardModelScorer

    policy, reference = GPT(config).eval(), GPT(config).eval()
    init_weights(policy)
    init_weights(reference)

    def rb2_epoch(kind: str):
        def run(share: bool) -> float:
            scorer = (RewardModelScorer(rm.eval(), share_prompt=share) if kind == "reward"
                      else ImplicitRewardScorer(policy, reference, share_prompt=share))
            start = time.perf_counter()
            with torch.inference_mode():
                score_groups(scorer, groups, batch_size=args.batch, rank=0, world_size=1)
            return len(groups) / (time.perf_counter() - start)
        return run

    parts = {"train": ("training step", train_epoch, "steps/s"), "score": ("scoring", score_epoch, "prompts/s"),
             "rb2-reward": ("RewardBench 2 score_groups, reward model", rb2_epoch("reward"), "prompts/s"),
             "rb2-dpo": ("RewardBench 2 score_groups, DPO policy + reference", rb2_epoch("dpo"), "prompts/s")}
    for name, fn, unit in (parts[p] for p in args.parts.split(",")):
        best = {False: 0.0, True: 0.0}
        for _ in range(args.rounds):
            for share in (False, True):
                best[share] = max(best[share], fn(share))
        tokens = sum(len(r) for g in groups for r in g.rows)
        print(f"{name}: plain {best[False]:.2f} {unit}, shared prompt {best[True]:.2f} {unit}, "
              f"ratio {best[True] / best[False]:.2f}x  ({args.prompts} prompts x {args.rejected + 1} completions, "
              f"{tokens} tokens, batch {args.batch} prompts, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
