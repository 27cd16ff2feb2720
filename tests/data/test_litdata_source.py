"""Streamed litdata sources (``litdata:<dir or URL>`` written with ``TokensLoader``): blocks, Replay, no cache,
errors."""

import json
import multiprocessing

import numpy as np
import pytest
import torch

litdata = pytest.importorskip("litdata")
from litdata.streaming import TokensLoader  # noqa: E402

from litcpt.assets import data_dir, tokenizer_dir  # noqa: E402
from litcpt.data import Replay, TextFiles  # noqa: E402
from litcpt.data.text.blocks import LitdataBlocks  # noqa: E402
from litcpt.data.text.litdata_source import LitdataTokens  # noqa: E402
from litcpt.data.text.sources import resolve_source  # noqa: E402
from litcpt.data.text.token_cache import ensure_tokens  # noqa: E402

EN = data_dir() / "pretrain" / "en"
FR = data_dir() / "pretrain" / "fr"
T = 32


def optimize_tokens(items, out_dir, chunk_bytes="4KB"):
    """``litdata.optimize`` 1-D token tensors with ``TokensLoader`` (as litgpt's data modules do)."""
    previous = multiprocessing.get_start_method(allow_none=True)
    try:  # optimize() forces the global start method; keep the test session's
        litdata.optimize(
            fn=torch.as_tensor,
            inputs=list(items),
            output_dir=str(out_dir),
            num_workers=1,
            chunk_bytes=chunk_bytes,
            item_loader=TokensLoader(),
            start_method="fork",
        )
    finally:
        multiprocessing.set_start_method(previous, force=True)
    return out_dir


@pytest.fixture(scope="module")
def optimized(tmp_path_factory, tokenizer):
    """A few KB of bundled text, one document per paragraph, in several small chunks; and its tokens."""
    text = (EN / "wonderland.txt").read_text(encoding="utf-8-sig")[:16000]
    items = [tokenizer.encode(p, eos=True) for p in text.split("\n\n") if p.strip()]
    out = optimize_tokens(items, tmp_path_factory.mktemp("litdata") / "wonderland")
    return out, items


def reference_blocks(out_dir, items, block_size=T) -> np.ndarray:
    """Blocks read directly from the tokens: items concatenated per chunk, cut in non-overlapping T+1 pieces."""
    index = json.loads((out_dir / "index.json").read_text())
    assert index["config"]["item_loader"] == "TokensLoader"
    blocks, k = [], 0
    for chunk in index["chunks"]:
        tokens = np.concatenate([items[i].numpy() for i in range(k, k + chunk["chunk_size"])]).astype(np.int64)
        k += chunk["chunk_size"]
        assert tokens.size == chunk["dim"]
        n = tokens.size // (block_size + 1)
        blocks.append(tokens[: n * (block_size + 1)].reshape(n, block_size + 1))
    assert k == len(items) and len(index["chunks"]) > 2
    return np.concatenate(blocks)


def make_dm(spec, cache_dir, batch_size=4, **kwargs) -> TextFiles:
    dm = TextFiles(spec, cache_dir=cache_dir, **kwargs)
    dm.connect(tokenizer_dir(), batch_size=batch_size, max_seq_length=T)
    dm.prepare_data()
    dm.setup()
    return dm


def files_under(path):
    return sorted(p.relative_to(path) for p in path.rglob("*")) if path.exists() else []


# ----------------------------------------------------------------------------- blocks


def test_streams_the_same_blocks_as_the_tokens(optimized, tmp_path):
    out, items = optimized
    before = files_under(out)
    ref = reference_blocks(out, items)
    dm = make_dm(f"litdata:{out}", tmp_path / "cache", val_split_fraction=0.1, name="alice")
    assert resolve_source(f"litdata:{out}").kind == "litdata_stream"
    tokens = dm.token_file()
    assert isinstance(tokens, LitdataTokens) and tokens.num_blocks(T) == len(ref)
    train, val = dm.train_blocks(), dm.val_blocks()
    assert isinstance(train, LitdataBlocks) and len(train) + len(val) == len(ref)
    # same held-out rule as for memmaps: a seeded choice of block indices
    split = dm._split
    assert (split.num_blocks, split.num_val) == (len(ref), round(0.1 * len(ref)))
    train_ids, val_ids = split.train_blocks(np.arange(len(train))), split.val_blocks(np.arange(len(val)))
    assert sorted(np.concatenate([train_ids, val_ids]).tolist()) == list(range(len(ref)))
    assert np.array_equal(train.read(np.arange(len(train))), ref[train_ids])
    assert np.array_equal(val.read(np.arange(len(val))), ref[val_ids])
    assert torch.equal(train[3], torch.from_numpy(ref[train_ids[3]]))
    # the stream reads the planned blocks (permutation and slicing stay litcpt's)
    stream = dm.train_stream()
    _, _, blocks = stream.plan(np.arange(48))
    got = torch.cat([b for _, b in zip(range(12), dm.train_dataloader())])
    assert torch.equal(got, torch.from_numpy(ref[split.train_blocks(blocks.reshape(-1))]))
    # (c) nothing written: no token cache entry, dataset directory untouched
    assert files_under(tmp_path / "cache") == []
    assert files_under(out) == before


def test_remote_style_url_streams_through_litdata_chunk_cache(optimized, tmp_path):
    out, items = optimized
    ref = reference_blocks(out, items)
    chunks = tmp_path / "chunks"
    dm = make_dm(f"litdata:local:{out}", tmp_path / "cache", litdata_kwargs={"cache_dir": str(chunks)})
    assert dm.token_file().path is None
    train = dm.train_blocks()
    ids = dm._split.train_blocks(np.arange(len(train)))
    assert np.array_equal(train.read(np.arange(len(train))), ref[ids])
    assert files_under(tmp_path / "cache") == [] and any(p.suffix == ".bin" for p in chunks.rglob("*"))


# ----------------------------------------------------------------------------- Replay


def make_replay(optimized, cache_dir, num_workers=0, fraction=0.25) -> Replay:
    out, _ = optimized
    dm = Replay(
        new=TextFiles(FR / "notre-dame-de-paris.txt", name="fr"),
        replay=TextFiles(f"litdata:{out}", name="alice"),
        fraction=fraction,
        cache_dir=cache_dir,
        num_workers=num_workers,
    )
    dm.connect(tokenizer_dir(), batch_size=4, max_seq_length=T)
    dm.prepare_data()
    dm.setup()
    return dm


def test_replay_of_streamed_source_exact_share_and_resume(optimized, tmp_path):
    out, items = optimized
    ref = reference_blocks(out, items)
    cache = tmp_path / "cache"
    dm = make_replay(optimized, cache)
    stream = dm.train_stream()
    n = 2000
    src, _, blocks = stream.plan(np.arange(n))
    replay = np.cumsum(src == 1)
    assert np.all(np.abs(replay - 0.25 * np.arange(1, n + 1)) <= 1) and replay[-1] == 500
    batch = stream.read_batches(np.arange(48))
    new_blocks, replay_split = dm.new.train_blocks(), dm.replay[0]._split
    for p in range(48):
        if src[p] == 1:  # the replay block really is the planned block of the litdata dataset
            expected = ref[replay_split.train_blocks([blocks[p]])[0]]
        else:
            expected = new_blocks.read([blocks[p]])[0]
        assert torch.equal(batch[p], torch.from_numpy(expected))
    # exact resume, and a worker process (with its own litdata dataset) gives the same batches
    full = torch.cat([b for _, b in zip(range(12), dm.train_dataloader())])
    assert torch.equal(full, batch)
    first_dm = make_replay(optimized, cache)
    first = torch.cat([b for _, b in zip(range(5), first_dm.train_dataloader())])
    state = first_dm.state_dict()
    assert state["consumed_samples"] == 20
    again = make_replay(optimized, cache, num_workers=1)
    again.load_state_dict(state)
    rest = torch.cat([b for _, b in zip(range(7), again.train_dataloader())])
    assert torch.equal(torch.cat([first, rest]), full)
    # only the memmapped source has a token cache entry
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1
    assert len(dm.val_dataloaders()) == 2


# ----------------------------------------------------------------------------- errors


def one_line_error(fn, match):
    with pytest.raises(ValueError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_bad_inputs_fail_with_one_line_errors(optimized, tokenizer, tmp_path):
    out, _ = optimized
    cache = tmp_path / "cache"
    one_line_error(lambda: make_dm(f"litdata:{tmp_path / 'missing'}", cache), "does not exist")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "a.txt").write_text("not optimised")
    one_line_error(lambda: make_dm(f"litdata:{tmp_path / 'plain'}", cache), "no index.json")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "index.json").write_text("{not json")
    one_line_error(lambda: make_dm(f"litdata:{tmp_path / 'broken'}", cache), "unreadable litdata index")
    one_line_error(
        lambda: make_dm(f"litdata:{out}", cache, litdata_kwargs={"shuffle": True}), "litdata_kwargs may not set shuffle"
    )
    one_line_error(lambda: ensure_tokens(f"litdata:{out}", tokenizer, cache_dir=cache), "streamed, not tokenised")
    # ids >= vocabulary size in the first block (another tokenizer's ids)
    big = optimize_tokens([torch.arange(4090, 4300, dtype=torch.int32)], tmp_path / "big")
    msg = one_line_error(lambda: make_dm(f"litdata:{big}", cache), "outside the tokenizer's vocabulary")
    assert "first block" in msg and "4096" in msg
    # ... or later: caught when the block is read
    items = [torch.arange(0, 200, dtype=torch.int32), torch.full((200,), 5000, dtype=torch.int32)]
    later = optimize_tokens(items, tmp_path / "later")
    blocks = make_dm(f"litdata:{later}", cache, val_split_fraction=0.2).train_blocks()
    one_line_error(lambda: blocks.read(np.arange(len(blocks))), "token id 5000 is outside")
    # too few tokens for one block
    tiny = optimize_tokens([torch.arange(0, 20, dtype=torch.int32)], tmp_path / "tiny")
    one_line_error(lambda: make_dm(f"litdata:{tiny}", cache), "too few for one block")
    assert files_under(cache) == []
