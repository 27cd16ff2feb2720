"""Token storage, readers and the TextFiles data module: formats, caching, errors, stream semantics, resume."""

import gzip
import json
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from litgpt import Tokenizer

from litcpt.assets import data_dir, tokenizer_dir
from litcpt.data import TextFiles, TokenBlocks
from litcpt.data.mixing.permutation import permute
from litcpt.data.mixing.stream import BlockStream
from litcpt.data.text.blocks import split_blocks
from litcpt.data.text.sources import iter_documents, resolve_source
from litcpt.data.text.sources import iter_txt as _iter_txt
from litcpt.data.text.token_cache import ensure_tokens
from litcpt.data.text.token_files import TokenFile, tokenizer_fingerprint, write_tokens

EN = data_dir() / "pretrain" / "en"
FR = data_dir() / "pretrain" / "fr"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("token-cache")


def make_dm(path=EN, cache_dir=None, batch_size=4, T=32, **kwargs) -> TextFiles:
    dm = TextFiles(path, cache_dir=cache_dir, **kwargs)
    dm.connect(tokenizer_dir(), batch_size=batch_size, max_seq_length=T)
    dm.prepare_data()
    dm.setup()
    return dm


def tokens_of(tf: TokenFile) -> np.ndarray:
    return np.asarray(tf.memmap()).astype(np.int64)


# ----------------------------------------------------------------------------- readers


def test_txt_is_one_document_bom_stripped(tokenizer, tmp_path):
    path = FR / "notre-dame-de-paris.txt"
    tf = ensure_tokens(path, tokenizer, cache_dir=tmp_path)
    text = path.read_text(encoding="utf-8-sig")
    expected = tokenizer.encode(text).tolist() + [tokenizer.eos_id]
    assert tokens_of(tf).tolist() == expected
    assert tf.num_documents == 1 and tf.dtype == "uint16" and tf.vocab_size == 4096
    assert not tokenizer.decode(torch.tensor(expected[:5])).startswith("\ufeff")


def test_txt_chunks_reassemble(tmp_path):
    path = EN / "wonderland.txt"
    pieces = list(_iter_txt(path, chunk_chars=5000))
    assert len(pieces) > 10
    assert [end for _, end in pieces] == [False] * (len(pieces) - 1) + [True]
    assert "".join(p for p, _ in pieces) == path.read_text(encoding="utf-8-sig")


def test_formats_jsonl_json_parquet_gz_dir(tokenizer, tmp_path):
    rows = [{"text": "Bonjour le monde.", "id": 1}, {"text": "Hello there, élève!", "id": 2}]
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    (d / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    (d / "sub" / "b.json").write_text(json.dumps(rows), encoding="utf-8")
    with gzip.open(d / "c.jsonl.gz", "wt", encoding="utf-8") as fp:
        fp.write("\n".join(json.dumps(r) for r in rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": [r["text"] for r in rows]}), d / "d.parquet")
    (d / ".hidden.txt").write_text("never read", encoding="utf-8")
    (d / "notes.md").write_text("ignored", encoding="utf-8")

    ref = resolve_source(d)
    assert [p.name for p in ref.files] == ["a.jsonl", "c.jsonl.gz", "d.parquet", "b.json"]
    docs = [t for t, end in iter_documents(ref) if end]
    assert docs == [r["text"] for r in rows] * 4
    tf = ensure_tokens(d, tokenizer, cache_dir=tmp_path / "cache")
    expected = []
    for text in docs:
        expected += tokenizer.encode(text).tolist() + [tokenizer.eos_id]
    assert tokens_of(tf).tolist() == expected
    assert tf.num_documents == 8


def test_custom_text_field(tokenizer, tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"body": "some words here"}) + "\n", encoding="utf-8")
    tf = ensure_tokens(path, tokenizer, cache_dir=tmp_path / "c", text_field="body")
    assert tokenizer.decode(torch.tensor(tokens_of(tf)[:-1])) == "some words here"


class _FakeDataset:
    def __init__(self, rows):
        self.rows = rows
        self.column_names = list(rows[0]) if rows else []

    def iter(self, batch_size):
        for i in range(0, len(self.rows), batch_size):
            chunk = self.rows[i : i + batch_size]
            yield {k: [r[k] for r in chunk] for k in self.column_names}


def test_hf_paths_with_fake_datasets_module(tokenizer, tmp_path, monkeypatch):
    """The hf: / load_from_disk code paths, against a stand-in `datasets` module."""
    calls = []
    disk = tmp_path / "saved"
    disk.mkdir()
    (disk / "state.json").write_text("{}")
    (disk / "dataset_info.json").write_text("{}")

    class DatasetDict(dict):
        pass

    fake = types.SimpleNamespace(
        DatasetDict=DatasetDict,
        load_from_disk=lambda p: calls.append(("disk", p)) or _FakeDataset([{"text": "from disk"}]),
        load_dataset=lambda name, **kw: calls.append(("hub", name, kw)) or _FakeDataset([{"text": "from hub"}]),
    )
    monkeypatch.setitem(sys.modules, "datasets", fake)
    tf = ensure_tokens(disk, tokenizer, cache_dir=tmp_path / "c")
    assert tokenizer.decode(torch.tensor(tokens_of(tf)[:-1])) == "from disk"
    tf = ensure_tokens("hf:json@validation", tokenizer, cache_dir=tmp_path / "c", hf_kwargs={"data_files": "x.jsonl"})
    assert tokenizer.decode(torch.tensor(tokens_of(tf)[:-1])) == "from hub"
    assert calls[-1] == ("hub", "json", {"data_files": "x.jsonl", "split": "validation"})
    with pytest.raises(ValueError, match="missing text field 'content'"):
        ensure_tokens("hf:json", tokenizer, cache_dir=tmp_path / "c2", text_field="content")


def _real_datasets():
    try:
        import datasets
    except Exception as err:  # broken installs raise AttributeError on import
        pytest.skip(f"datasets not importable here: {err}")
    return datasets


def test_hf_save_to_disk_and_load_dataset_json(tokenizer, tmp_path):
    datasets = _real_datasets()
    texts = ["Le chat dort.", "The dog barks."] * 20
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(tmp_path / "ds"))
    tf = ensure_tokens(tmp_path / "ds", tokenizer, cache_dir=tmp_path / "c")
    assert tf.num_documents == 40
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t}) for t in texts), encoding="utf-8")
    tf2 = ensure_tokens("hf:json", tokenizer, cache_dir=tmp_path / "c", hf_kwargs={"data_files": str(jsonl)})
    assert tokens_of(tf2).tolist() == tokens_of(tf).tolist()


# ----------------------------------------------------------------------------- errors


def test_error_missing_path(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ensure_tokens(tmp_path / "nope", tokenizer, cache_dir=tmp_path)


def test_error_unsupported_and_empty_dir(tokenizer, tmp_path):
    (tmp_path / "a.csv").write_text("x")
    with pytest.raises(ValueError, match="unsupported file type"):
        ensure_tokens(tmp_path / "a.csv", tokenizer, cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="directory has no"):
        ensure_tokens(tmp_path / "empty", tokenizer, cache_dir=tmp_path)


def test_error_empty_corpus(tokenizer, tmp_path):
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(ValueError, match="empty corpus"):
        ensure_tokens(tmp_path / "e.txt", tokenizer, cache_dir=tmp_path / "c")
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="empty corpus"):
        ensure_tokens(tmp_path / "e.jsonl", tokenizer, cache_dir=tmp_path / "c")
    assert not list((tmp_path / "c").rglob("*.tmp")), "temporary files must be removed"
    assert not list((tmp_path / "c").rglob("meta.json"))


def test_error_missing_field_names_file_and_line(tokenizer, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "ok"}\n{"txt": "typo"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"rows\.jsonl:2: missing text field 'text' \(fields: txt\)"):
        ensure_tokens(path, tokenizer, cache_dir=tmp_path / "c")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: invalid JSON"):
        ensure_tokens(bad, tokenizer, cache_dir=tmp_path / "c")
    nonstr = tmp_path / "n.jsonl"
    nonstr.write_text('{"text": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"n\.jsonl:1: field 'text' must be a string"):
        ensure_tokens(nonstr, tokenizer, cache_dir=tmp_path / "c")


def test_error_too_small_for_one_block(tmp_path):
    (tmp_path / "tiny.txt").write_text("just a few words")
    dm = TextFiles(tmp_path / "tiny.txt", cache_dir=tmp_path / "c")
    dm.connect(tokenizer_dir(), batch_size=2, max_seq_length=64)
    with pytest.raises(ValueError, match="too few for one block"):
        dm.prepare_data()


def test_error_no_tokenizer_and_no_block_size(tmp_path):
    dm = TextFiles(EN / "wonderland.txt", cache_dir=tmp_path)
    dm.connect(None, batch_size=2, max_seq_length=32)
    with pytest.raises(ValueError, match="tokenizer is needed"):
        dm.prepare_data()
    dm.connect(tokenizer_dir(), batch_size=2)
    with pytest.raises(ValueError, match="max_seq_length"):
        dm.prepare_data()
    with pytest.raises(ValueError, match="val_split_fraction"):
        TextFiles(EN, val_split_fraction=0.0)


def test_pretokenised_dir_and_tokenizer_mismatch(tokenizer, tmp_path):
    tf = ensure_tokens(EN / "wonderland.txt", tokenizer, cache_dir=tmp_path)
    again = ensure_tokens(tf.path, tokenizer)  # a cache entry is usable as a pre-tokenised source
    assert again.num_tokens == tf.num_tokens
    from litcpt.assets.make_tokenizer import write_tokenizer_dir

    other = Tokenizer(write_tokenizer_dir(tmp_path / "other", [EN / "wonderland.txt"], vocab_size=300))
    with pytest.raises(ValueError, match="another tokenizer"):
        ensure_tokens(tf.path, other)
    dm = TextFiles(tf.path)
    dm.connect(other, batch_size=2, max_seq_length=16)
    with pytest.raises(ValueError, match="another tokenizer"):
        dm.setup()


# ----------------------------------------------------------------------------- cache


def test_cache_hit_and_invalidation(tokenizer, tmp_path, monkeypatch):
    src = tmp_path / "doc.txt"
    src.write_text("first version of the text " * 50, encoding="utf-8")
    tf1 = ensure_tokens(src, tokenizer, cache_dir=tmp_path / "c")
    meta = json.loads((tf1.path / "meta.json").read_text())
    assert meta["tokenizer"] == tokenizer_fingerprint(tokenizer) and meta["num_tokens"] == tf1.num_tokens
    import litcpt.data.text.token_cache as tokens_mod

    def boom(*a, **k):
        raise AssertionError("re-tokenised although cached")

    monkeypatch.setattr(tokens_mod, "write_tokens", boom)
    assert ensure_tokens(src, tokenizer, cache_dir=tmp_path / "c").path == tf1.path
    monkeypatch.undo()
    src.write_text("second, longer version of the text " * 60, encoding="utf-8")
    tf2 = ensure_tokens(src, tokenizer, cache_dir=tmp_path / "c")
    assert tf2.path != tf1.path and tf2.num_tokens != tf1.num_tokens
    with pytest.raises(ValueError, match="not tokenised yet"):
        ensure_tokens(EN / "wonderland.txt", tokenizer, cache_dir=tmp_path / "c", create=False)


def test_uint32_for_large_vocab(tmp_path):
    class BigVocab:  # a tokenizer whose ids do not fit in uint16
        backend = "huggingface"
        bos_id, eos_id, use_bos, vocab_size = 70_000, 70_000, False, 70_001

        class processor:
            @staticmethod
            def get_vocab_size(with_added_tokens=True):
                return 70_001

            @staticmethod
            def to_str():
                return "big"

            @staticmethod
            def encode_batch(texts, add_special_tokens=False):
                return [types.SimpleNamespace(ids=[66_000 + len(t)]) for t in texts]

    tf = write_tokens([("ab", True), ("abc", True)], BigVocab(), tmp_path / "big", source="x")
    assert tf.dtype == "uint32"
    assert tokens_of(tf).tolist() == [66_002, 70_000, 66_003, 70_000]


# ----------------------------------------------------------------------------- blocks


def test_token_blocks_and_pickling(tokenizer, tmp_path):
    tf = ensure_tokens(EN / "wonderland.txt", tokenizer, cache_dir=tmp_path)
    T = 16
    ds = TokenBlocks(tf, T)
    toks = tokens_of(tf)
    assert len(ds) == (len(toks) - 1) // T
    for i in (0, 1, len(ds) - 1):
        x = ds[i]
        assert x.dtype == torch.long and x.shape == (T + 1,)
        assert x.tolist() == toks[i * T : i * T + T + 1].tolist()
    ds.read([0])  # opens the memmap
    assert len(pickle.dumps(ds)) < 10_000, "the memmap must not be pickled"
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 1000, 4097])
def test_permute_is_bijection(n):
    out = permute(np.arange(n), n, key=123)
    assert sorted(out.tolist()) == list(range(n))
    if n > 16:
        assert out.tolist() != list(range(n))
        assert permute(np.arange(n), n, key=124).tolist() != out.tolist()
    assert permute(np.arange(n), n, key=123).tolist() == out.tolist()


def test_split_is_deterministic_disjoint_covering():
    split = split_blocks(1000, 0.05, seed=7)
    assert split.num_val == 50 and split.num_train == 950
    val = split.val_blocks(np.arange(50))
    train = split.train_blocks(np.arange(950))
    assert sorted(np.concatenate([val, train]).tolist()) == list(range(1000))
    assert split_blocks(1000, 0.05, seed=7).val_blocks(np.arange(50)).tolist() == val.tolist()
    assert split_blocks(1000, 0.05, seed=8).val_blocks(np.arange(50)).tolist() != val.tolist()
    assert split_blocks(3, 0.01).num_val == 1
    with pytest.raises(ValueError, match="too few"):
        split_blocks(1, 0.05)


# ----------------------------------------------------------------------------- TextFiles stream


def collect(loader, n):
    it = iter(loader)
    return torch.stack([next(it) for _ in range(n)])


def test_textfiles_batches_and_val(cache):
    dm = make_dm(cache_dir=cache, batch_size=4, T=32, name="en")
    assert dm.val_names == ["en"]
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 33) and batch.dtype == torch.long
    vl = dm.val_dataloader()
    vb = next(iter(vl))
    assert vb.shape == (4, 33)
    assert len(vl.dataset) == round(0.05 * dm.token_file().num_blocks(32))
    assert TextFiles(EN).val_names == ["val"]


def test_stream_epochs_cover_train_blocks_and_reshuffle(cache):
    dm = make_dm(EN / "wonderland.txt", cache_dir=cache, batch_size=5, T=64)
    stream = dm.train_stream()
    n = len(dm.train_blocks())
    _, local, blocks = stream.plan(np.arange(2 * n))
    first, second = blocks[:n], blocks[n:]
    assert sorted(first.tolist()) == list(range(n)) == sorted(second.tolist())
    assert first.tolist() != second.tolist(), "every epoch is a new shuffle"
    assert first.tolist() != list(range(n))
    train_ids = set(dm.train_blocks().block_ids(np.arange(n)).tolist())
    val_ids = set(dm.val_blocks().block_ids(np.arange(len(dm.val_blocks()))).tolist())
    assert not train_ids & val_ids
    # the data read matches the plan
    batch = stream.read_batches(np.arange(5))
    assert torch.equal(batch, torch.from_numpy(dm.train_blocks().read(blocks[:5])))


def test_stream_is_seeded(cache):
    a = collect(make_dm(cache_dir=cache, seed=1).train_dataloader(), 3)
    b = collect(make_dm(cache_dir=cache, seed=1).train_dataloader(), 3)
    c = collect(make_dm(cache_dir=cache, seed=2).train_dataloader(), 3)
    assert torch.equal(a, b) and not torch.equal(a, c)


def rank_batches(stream: BlockStream, rank, world, n, start=0):
    stream.configure(start, rank, world)
    it = iter(stream)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("start", [0, 12, 13])
def test_two_ranks_interleave_to_the_one_rank_stream(cache, start):
    dm = make_dm(cache_dir=cache, batch_size=3, T=32)
    stream = dm.train_stream()
    single = torch.cat(rank_batches(stream, 0, 1, 8, start))  # 24 samples
    r0 = torch.cat(rank_batches(stream, 0, 2, 4, start))
    r1 = torch.cat(rank_batches(stream, 1, 2, 4, start))
    assert torch.equal(single[0::2], r0) and torch.equal(single[1::2], r1)


def test_rank_from_explicit_hook_validated(cache):
    stream = make_dm(cache_dir=cache).train_stream()
    stream.configure(0, 2, 2)
    with pytest.raises(ValueError, match="invalid rank"):
        next(iter(stream))


def test_two_ranks_through_loaders_count_global_samples(cache):
    single = collect(make_dm(cache_dir=cache, batch_size=2, T=32).train_dataloader(), 6)
    loaders = []
    for rank in (0, 1):
        loader = make_dm(cache_dir=cache, batch_size=2, T=32).train_dataloader()
        loader.dataset.configure(0, rank, 2)
        loaders.append(loader)
    got = [collect(loaders[r], 3) for r in (0, 1)]
    flat = single.reshape(-1, 33)
    assert torch.equal(flat[0::2], got[0].reshape(-1, 33)) and torch.equal(flat[1::2], got[1].reshape(-1, 33))
    assert loaders[0].state_dict() == {"consumed_samples": 12}


@pytest.mark.slow
def test_two_workers_same_order_as_zero(cache):
    reference = collect(make_dm(cache_dir=cache, batch_size=3, num_workers=0).train_dataloader(), 40)
    loader = make_dm(cache_dir=cache, batch_size=3, num_workers=2).train_dataloader()
    assert torch.equal(collect(loader, 40), reference)
    assert loader.state_dict() == {"consumed_samples": 120}
    # a new iteration resumes where the previous one stopped, with workers too
    assert torch.equal(collect(loader, 5), collect(make_dm(cache_dir=cache, batch_size=3).train_dataloader(), 45)[40:])


def test_loader_state_dict_resume(cache):
    reference = collect(make_dm(cache_dir=cache).train_dataloader(), 10)
    dm = make_dm(cache_dir=cache)
    loader = dm.train_dataloader()
    first = collect(loader, 4)
    state = loader.state_dict()
    assert state == {"consumed_samples": 16}
    assert dm.state_dict()["consumed_samples"] == 16
    dm2 = make_dm(cache_dir=cache)
    loader2 = dm2.train_dataloader()
    loader2.load_state_dict(state)
    rest = collect(loader2, 6)
    assert torch.equal(torch.cat([first, rest]), reference)
    # the data-module state also resumes a loader made afterwards
    dm3 = make_dm(cache_dir=cache)
    dm3.load_state_dict(dm.state_dict())
    assert torch.equal(collect(dm3.train_dataloader(), 6), reference[4:])
    with pytest.raises(ValueError, match="consumed_samples"):
        dm3.load_state_dict({})


def test_fabric_save_load_resumes_loader(cache, tmp_path):
    """litgpt pretrain's path: state["train_dataloader"] goes through fabric.save / fabric.load."""
    import lightning as L

    fabric = L.Fabric(accelerator="cpu", devices=1)
    reference = collect(make_dm(cache_dir=cache).train_dataloader(), 7)
    loader = fabric.setup_dataloaders(make_dm(cache_dir=cache).train_dataloader())
    it = iter(loader)
    first = [next(it) for _ in range(3)]
    fabric.save(tmp_path / "state.pth", {"train_dataloader": loader, "iter_num": 3})
    loader2 = fabric.setup_dataloaders(make_dm(cache_dir=cache).train_dataloader())
    state = {"train_dataloader": loader2, "iter_num": 0}
    fabric.load(tmp_path / "state.pth", state)
    assert state["iter_num"] == 3
    it2 = iter(loader2)
    rest = [next(it2) for _ in range(4)]
    assert torch.equal(torch.stack(first + rest), reference)


def test_jsonargparse_builds_textfiles(tmp_path):
    from jsonargparse import ArgumentParser
    from litgpt.data import DataModule

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        f"data:\n  class_path: litcpt.data.TextFiles\n  init_args:\n    train_data_path: {EN}\n"
        "    name: en\n    val_split_fraction: 0.1\n    hf_kwargs: {data_files: x.jsonl}\n"
    )
    parser = ArgumentParser()
    parser.add_argument("--config", action="config")
    parser.add_argument("--data", type=DataModule | None, default=None)
    data = parser.instantiate_classes(parser.parse_args(["--config", str(cfg_file)])).data
    assert isinstance(data, TextFiles)
    assert data.name == "en" and data.val_split_fraction == 0.1 and data.hf_kwargs == {"data_files": "x.jsonl"}


# ----------------------------------------------------------------------------- Lightning resume


def _lightning_module():
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(4096, 4)
            self.head = torch.nn.Linear(4, 4096)
            self.seen = []

        def training_step(self, batch, batch_idx):
            self.seen.append(batch.clone())
            logits = self.head(self.emb(batch[:, :-1]))
            return torch.nn.functional.cross_entropy(logits.reshape(-1, 4096), batch[:, 1:].reshape(-1))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny()


def _trainer(max_steps, root, accumulate=1):
    import lightning as L

    return L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accumulate_grad_batches=accumulate,
        default_root_dir=root,
    )


def fit_batches(dm_factory, max_steps, root, ckpt_in=None, ckpt_out=None, accumulate=1):
    model = _lightning_module()
    trainer = _trainer(max_steps, root, accumulate)
    trainer.fit(model, datamodule=dm_factory(), ckpt_path=ckpt_in)
    if ckpt_out is not None:
        trainer.save_checkpoint(ckpt_out)
    return model.seen


@pytest.mark.slow
@pytest.mark.parametrize("accumulate", [1, 2])
def test_lightning_resume_identical_sequence(cache, tmp_path, accumulate):
    factory = lambda: make_dm(cache_dir=cache, batch_size=2, T=16)
    full = fit_batches(factory, 7, tmp_path, accumulate=accumulate)
    ckpt = tmp_path / "k.ckpt"
    part1 = fit_batches(factory, 3, tmp_path, ckpt_out=ckpt, accumulate=accumulate)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["TextFiles"]["consumed_samples"] == 3 * accumulate * 2
    part2 = fit_batches(factory, 7, tmp_path, ckpt_in=ckpt, accumulate=accumulate)
    assert len(full) == 7 * accumulate and len(part1) + len(part2) == len(full)
    assert torch.equal(torch.stack(part1 + part2), torch.stack(full))


@pytest.mark.slow
def test_lightning_restores_datamodule_before_train_dataloader(cache, tmp_path):
    calls = []

    class Watched(TextFiles):
        def load_state_dict(self, state_dict):
            calls.append(("load_state_dict", state_dict["consumed_samples"]))
            super().load_state_dict(state_dict)

        def train_dataloader(self):
            calls.append(("train_dataloader", self.stream_position()))
            return super().train_dataloader()

    def factory():
        dm = Watched(EN, cache_dir=cache)
        dm.connect(tokenizer_dir(), batch_size=2, max_seq_length=16)
        return dm

    ckpt = tmp_path / "w.ckpt"
    fit_batches(factory, 2, tmp_path, ckpt_out=ckpt)
    calls.clear()
    fit_batches(factory, 3, tmp_path, ckpt_in=ckpt)
    assert calls[0] == ("load_state_dict", 4)
    assert calls[1] == ("train_dataloader", 4)


# ----------------------------------------------------------------------------- litdata (optional)


def test_litdata_source_missing_package_or_index(tokenizer, tmp_path, monkeypatch):
    (tmp_path / "opt").mkdir()
    with pytest.raises(ValueError, match="index.json"):
        ensure_tokens(f"litdata:{tmp_path / 'opt'}", tokenizer, cache_dir=tmp_path / "c")
    (tmp_path / "opt" / "index.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "litdata", None)  # makes `import litdata` fail
    with pytest.raises(ValueError, match="pip install --no-deps litdata"):
        ensure_tokens(f"litdata:{tmp_path / 'opt'}", tokenizer, cache_dir=tmp_path / "c")


def test_litdata_source_with_stand_in_module(tokenizer, tmp_path, monkeypatch):
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "index.json").write_text("{}")
    docs = [tokenizer.encode("premier document"), tokenizer.encode("second"), tokenizer.encode("third", eos=True)]

    class StreamingDataset:
        def __init__(self, input_dir, shuffle):
            assert input_dir == str((tmp_path / "opt").resolve()) and shuffle is False

        def __len__(self):
            return len(docs)

        def __getitem__(self, i):
            return docs[i]

    monkeypatch.setitem(sys.modules, "litdata", types.SimpleNamespace(StreamingDataset=StreamingDataset))
    tf = ensure_tokens(f"litdata:{tmp_path / 'opt'}", tokenizer, cache_dir=tmp_path / "c")
    expected = sum((d.tolist() + ([] if d[-1] == tokenizer.eos_id else [tokenizer.eos_id]) for d in docs), [])
    assert tokens_of(tf).tolist() == expected and tf.num_documents == 3
