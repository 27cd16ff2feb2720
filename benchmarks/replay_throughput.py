"""Throughput of the Replay train dataloader vs. a tiny model's training throughput (CPU).

    PYTHONPATH=. python benchmarks/replay_throughput.py [--seconds 3] [--cache_dir DIR]

Data: bundled French (new) + English (replay) text, fraction 0.05, block 256, micro-batch 8,
measured with 1 and 2 dataloader workers. Model: litgpt GPT (4 layers, 128 wide, 4 heads,
block 256, vocab 4096), forward + backward + AdamW step on the same batch shape. The loader
should deliver at least 100x the tokens/s the model consumes, so it never is the bottleneck.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import torch

from litcpt.assets import pretrain_files, tokenizer_dir
from litcpt.data import Replay

BLOCK, BATCH, FRACTION = 256, 8, 0.05


def loader_tokens_per_second(cache_dir: str, num_workers: int, seconds: float) -> float:
    """Tokens/s (input tokens, ``B * T`` per batch) delivered by ``Replay.train_dataloader()``."""
    dm = Replay(
        new=str(pretrain_files("fr")[0].parent),
        replay=str(pretrain_files("en")[0].parent),
        fraction=FRACTION,
        num_workers=num_workers,
        cache_dir=cache_dir,
    )
    dm.connect(tokenizer_dir(), batch_size=BATCH, max_seq_length=BLOCK)
    dm.prepare_data()
    dm.setup()
    it = iter(dm.train_dataloader())
    for _ in range(20):  # start the workers, warm caches
        next(it)
    batches, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            batch = next(it)
        batches += 50
    elapsed = time.perf_counter() - t0
    assert batch.shape == (BATCH, BLOCK + 1)
    return batches * BATCH * BLOCK / elapsed


def model_tokens_per_second(steps: int = 5) -> float:
    """Tokens/s of forward + backward + AdamW on a tiny litgpt GPT (CPU)."""
    from litgpt import GPT, Config

    config = Config(
        name="bench-tiny", block_size=BLOCK, vocab_size=4096, padded_vocab_size=4096, n_layer=4, n_embd=128, n_head=4
    )
    torch.manual_seed(0)
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = torch.randint(0, 4096, (BATCH, BLOCK + 1))

    def step() -> None:
        logits = model(batch[:, :BLOCK])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH * BLOCK / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per loader setting")
    parser.add_argument("--cache_dir", default=None, help="token cache (default: a temporary directory)")
    args = parser.parse_args()
    # the small bundled English corpus is replayed for more than one epoch within seconds
    warnings.filterwarnings("ignore", message="Replay: source .* exhausted")
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_dir or tmp
        model = model_tokens_per_second()
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; block {BLOCK}, batch {BATCH}, "
            f"fraction {FRACTION}"
        )
        print(f"{'tiny GPT train step (4x128)':<32} {model:>14,.0f} tokens/s")
        for workers in (1, 2):
            rate = loader_tokens_per_second(cache, workers, args.seconds)
            verdict = "OK" if rate >= 100 * model else "below 100x target"
            print(
                f"{f'Replay loader, {workers} worker(s)':<32} {rate:>14,.0f} tokens/s  "
                f"= {rate / model:,.0f}x model  ({verdict})"
            )


if __name__ == "__main__":
    main()
