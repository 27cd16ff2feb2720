"""``litcpt generate-replay``: determinism, ranks, resume, the manifest, the filters, errors before the model loads,
and a continued run that replays a generated corpus at an exact share."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from litcpt.data.text.token_files import TokenFile
from litcpt.generation import sample as sample_module
from litcpt.generation.filters import is_degenerate, repeated_ngram_fraction, sample_key
from litcpt.generation.run import run
from tests.conftest import make_checkpoint
from tests.helpers import REPO, run_litcpt

ARGS = dict(max_tokens=1200, prompts=None, temperature=1.0, top_k=None, top_p=1.0, min_new_tokens=8,
            max_new_tokens=40, batch_size=8, shard_tokens=400, seed=7, repetition_ngram=4, repetition_threshold=0.5,
            devices=1, num_nodes=1, accelerator="cpu", precision=None)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("gen") / "ckpt")


def generate(checkpoint: Path, out: Path, **overrides) -> dict:
    return run(checkpoint_dir=checkpoint, out_dir=out, **{**ARGS, **overrides})


def without_seconds(shards: list[dict]) -> list[dict]:
    return [{k: v for k, v in s.items() if k != "seconds"} for s in shards]


def documents(path: Path, eos: int = 0) -> list[tuple[int, ...]]:
    tokens = TokenFile.load(path).memmap().tolist()
    docs, doc = [], []
    for t in tokens:
        doc.append(t)
        if t == eos:
            docs.append(tuple(doc))
            doc = []
    assert not doc, "the corpus ends with EOS"
    return docs


# ----------------------------------------------------------------------------- filters (pure)


def test_repetition_filter_drops_loops_and_keeps_text(tokenizer):
    assert repeated_ngram_fraction([1, 2, 3]) == 0.0
    assert repeated_ngram_fraction(list(range(50))) == 0.0
    loop = [5, 6, 7] * 30
    assert repeated_ngram_fraction(loop) == pytest.approx(1 - 3 / 87)
    assert is_degenerate(loop) and not is_degenerate(loop, threshold=1.0)
    assert not is_degenerate(list(range(100)) + [1, 2, 3, 4])  # one repeated 4-gram among 101
    # the documented claim: natural text of the bundled corpora stays far below the 0.5 default
    text = (REPO / "litcpt/assets/data/pretrain/en/wonderland.txt").read_text()[:60_000]
    ids = tokenizer.encode(text, bos=False).tolist()
    shares = [repeated_ngram_fraction(ids[i:i + 256]) for i in range(0, len(ids) - 256, 256)]
    assert max(shares) < 0.5 and float(np.median(shares)) < 0.1
    with pytest.raises(ValueError, match="n-gram length"):
        repeated_ngram_fraction([1, 2], n=0)
    assert sample_key([1, 2, 3]) == sample_key(np.array([1, 2, 3])) != sample_key([1, 2, 4])


# ----------------------------------------------------------------------------- determinism, manifest, Replay


@pytest.mark.slow
def test_same_seed_same_corpus_and_manifest(checkpoint, tmp_path, tokenizer):
    a = generate(checkpoint, tmp_path / "a")
    b = generate(checkpoint, tmp_path / "b")
    c = generate(checkpoint, tmp_path / "c", seed=8)
    bytes_a = (tmp_path / "a/tokens.bin").read_bytes()
    assert bytes_a == (tmp_path / "b/tokens.bin").read_bytes()
    assert bytes_a != (tmp_path / "c/tokens.bin").read_bytes()
    # the manifest: checkpoint hash, tokenizer, sampling, seed, tokens, shards
    manifest = json.loads((tmp_path / "a/manifest.json").read_text())
    assert manifest == a and a["tokens"] == 1200 == TokenFile.load(tmp_path / "a").num_tokens
    import hashlib

    assert manifest["checkpoint_sha256"] == hashlib.sha256((checkpoint / "lit_model.pth").read_bytes()).hexdigest()
    from litcpt.data.text.token_files import tokenizer_fingerprint

    assert manifest["tokenizer"] == tokenizer_fingerprint(tokenizer)
    assert manifest["sampling"] == {"temperature": 1.0, "top_k": None, "top_p": 1.0, "min_new_tokens": 8,
                                    "max_new_tokens": 40, "batch_size": 8, "repetition_ngram": 4,
                                    "repetition_threshold": 0.5}
    assert manifest["seed"] == 7 and manifest["precision"] == "32-true"
    assert [s["index"] for s in manifest["shards"]] == [0, 1, 2]
    assert [s["tokens"] for s in manifest["shards"]] == [400, 400, 400]
    assert len({s["seed"] for s in manifest["shards"]}) == 3
    assert manifest["documents"] == len(documents(tmp_path / "a")) == sum(s["samples"] for s in manifest["shards"])
    assert not (tmp_path / "a/shards").exists()
    assert without_seconds(b["shards"]) == without_seconds(a["shards"]) and c["tokens"] == 1200
    # every sample: 8..40 new tokens after the start token; ends with EOS; no duplicates
    docs = documents(tmp_path / "a")
    assert len(set(docs)) == len(docs)
    assert all(2 <= len(d) <= 41 for d in docs)
    # a second call with the same arguments has nothing to do; other arguments are refused in one line
    assert generate(checkpoint, tmp_path / "a") == a
    with pytest.raises(ValueError, match=r"other arguments \(sampling differ"):
        generate(checkpoint, tmp_path / "a", temperature=0.7)


def test_prompts_file_starts_each_sample(checkpoint, tmp_path, tokenizer):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The Queen said\n\nAlice was\n")
    manifest = generate(checkpoint, tmp_path / "p", prompts=prompts, max_tokens=600)
    heads = [tokenizer.encode(line, bos=False).tolist() for line in ("The Queen said", "Alice was")]
    starts = {tuple(d[:len(h)]) for d in documents(tmp_path / "p") for h in heads if list(d[:len(h)]) == h}
    assert starts == {tuple(h) for h in heads}
    assert manifest["prompts"]["prompts"] == 2 and len(manifest["prompts"]["sha256"]) == 64


def test_repetitive_samples_are_dropped_and_counted(checkpoint, tmp_path):
    """A near-greedy model repeats itself: with a strict threshold the loops are dropped (and counted), the budget is
    still met with the samples that pass."""
    manifest = generate(checkpoint, tmp_path / "r", temperature=0.05, max_tokens=600, shard_tokens=600,
                        repetition_threshold=0.2, min_new_tokens=30)
    loose = generate(checkpoint, tmp_path / "l", temperature=0.05, max_tokens=600, shard_tokens=600,
                     repetition_threshold=1.0, min_new_tokens=30)
    assert manifest["tokens"] == 600
    assert manifest["dropped"]["repetitive"] > 0 and loose["dropped"]["repetitive"] == 0
    assert all(repeated_ngram_fraction(d[:-1]) <= 0.2 for d in documents(tmp_path / "r"))
    assert any(repeated_ngram_fraction(d[:-1]) > 0.2 for d in documents(tmp_path / "l"))


@pytest.mark.slow
def test_killed_generation_resumes_with_finished_shards_kept(checkpoint, tmp_path, monkeypatch):
    reference = generate(checkpoint, tmp_path / "ref")
    real = sample_module.generate_shard
    calls = []

    def dies_in_third_shard(*args, **kwargs):
        calls.append(kwargs["seed"])
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed in the middle of the third shard
        return real(*args, **kwargs)

    monkeypatch.setattr("litcpt.generation.run.generate_shard", dies_in_third_shard)
    with pytest.raises(KeyboardInterrupt):
        generate(checkpoint, tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["00000", "00001"]
    assert not (out / "meta.json").exists() and not (out / "manifest.json").exists()
    calls.clear()
    monkeypatch.setattr("litcpt.generation.run.generate_shard", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed = generate(checkpoint, out)
    assert len(calls) == 1  # only the unfinished shard is made again
    assert (out / "tokens.bin").read_bytes() == (tmp_path / "ref/tokens.bin").read_bytes()
    assert without_seconds(resumed["shards"]) == without_seconds(reference["shards"])


# ----------------------------------------------------------------------------- errors before the model loads


@pytest.mark.parametrize("flags,message", [
    (["--temperature", "0"], "temperature: expected > 0"),
    (["--top_p", "1.5"], "top_p: expected in (0, 1]"),
    (["--max_new_tokens", "4", "--min_new_tokens", "8"], "max_new_tokens: expected null or an integer >= "),
    (["--max_new_tokens", "500"], "do not fit the model's block_size 64"),
    (["--prompts", "missing.txt"], "prompts: cannot read"),
])
def test_bad_arguments_are_one_line_errors(checkpoint, tmp_path, flags, message):
    proc = run_litcpt("generate-replay", "--checkpoint_dir", str(checkpoint), "--out_dir", str(tmp_path / "o"),
                      "--accelerator", "cpu", *flags, check=False, cwd=tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_out_dir_errors(checkpoint, tmp_path):
    (tmp_path / "file").write_text("x")
    proc = run_litcpt("generate-replay", "--checkpoint_dir", str(checkpoint), "--out_dir", str(tmp_path / "file"),
                      check=False)
    assert proc.returncode == 2 and "is a file" in proc.stderr
    (tmp_path / "other").mkdir()
    (tmp_path / "other/notes.txt").write_text("mine")
    proc = run_litcpt("generate-replay", "--checkpoint_dir", str(checkpoint), "--out_dir", str(tmp_path / "other"),
                      check=False)
    assert proc.returncode == 2 and "holds no generate-replay plan.json" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["notes.txt"]  # nothing written
    proc = run_litcpt("generate-replay", "--checkpoint_dir", str(tmp_path / "nope"), "--out_dir",
                      str(tmp_path / "o2"), check=False)
    assert proc.returncode != 0 and "checkpoint_dir:" in proc.stderr and "is not a directory" in proc.stderr


def test_gpu_recipe_parses():
    from litcpt.cli.parser import command_parser

    recipe = REPO / "recipes/gpu/self-replay-generate.yaml"
    cfg = command_parser("generate-replay").parse_args(["--config", str(recipe)])
    assert cfg.devices == 8 and cfg.max_tokens == 100_000_000


# ----------------------------------------------------------------------------- two ranks


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_write_their_own_shards_and_the_same_corpus(checkpoint, tmp_path):
    one = generate(checkpoint, tmp_path / "one", max_tokens=1600)
    flags = ["--max_tokens", "1600", "--min_new_tokens", "8", "--max_new_tokens", "40", "--batch_size", "8",
             "--shard_tokens", "400", "--seed", "7", "--accelerator", "cpu"]
    run_litcpt("generate-replay", "--checkpoint_dir", str(checkpoint), "--out_dir", str(tmp_path / "two"),
               "--devices", "2", *flags, timeout=300)
    two = json.loads((tmp_path / "two/manifest.json").read_text())
    assert [s["rank"] for s in two["shards"]] == [0, 1, 0, 1]
    assert (tmp_path / "two/tokens.bin").read_bytes() == (tmp_path / "one/tokens.bin").read_bytes()
    assert [s["seed"] for s in two["shards"]] == [s["seed"] for s in one["shards"]]
    # the ranks' shards are different, non-overlapping samples
    docs = documents(tmp_path / "two")
    by_rank: dict[int, set] = {0: set(), 1: set()}
    start = 0
    for shard in two["shards"]:
        by_rank[shard["rank"]].update(docs[start:start + shard["samples"]])
        start += shard["samples"]
    assert by_rank[0] and by_rank[1] and not by_rank[0] & by_rank[1]


# ----------------------------------------------------------------------------- continue, replaying the corpus


@pytest.mark.slow
def test_docs_commands_generate_then_continue_at_exact_share(checkpoint, tmp_path):
    """docs/continual-pretraining.md's two commands with recipes/tiny/d2-self-replay.yaml, shrunk: the continued run
    trains on the generated corpus at exactly the replay share."""
    from litcpt.data import Replay
    from litcpt.demo.runtime import instantiate

    corpus = tmp_path / "out/tiny/self-replay"  # the recipe's relative path, from tmp_path
    run_litcpt("generate-replay", "--checkpoint_dir", str(checkpoint), "--out_dir", "out/tiny/self-replay",
               "--max_tokens", "4096", "--max_new_tokens", "60", "--accelerator", "cpu", cwd=tmp_path)
    recipe = yaml.safe_load((REPO / "recipes/tiny/d2-self-replay.yaml").read_text())
    recipe["data"]["init_args"]["new"]["init_args"]["train_data_path"] = str(REPO / "litcpt/assets/data/pretrain/fr")
    for source in ("new", "replay"):
        recipe["data"]["init_args"][source]["init_args"]["cache_dir"] = str(tmp_path / "cache")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    run_litcpt("pretrain", "--config", "recipe.yaml", "--initial_checkpoint_dir", str(checkpoint),
               "--out_dir", "run", "--data.init_args.fraction", "0.25", "--train.max_tokens", "2048",
               "--train.max_seq_length", "32", "--eval.interval", "2", "--eval.max_iters", "1", cwd=tmp_path)
    assert (tmp_path / "run/final/lit_model.pth").is_file()
    # the run's data, rebuilt: its first 64 samples (4 steps of 16 blocks of 32) hold exactly 16 replayed ones, at
    # most one away from a quarter after every prefix, read from the generated corpus
    recipe["data"]["init_args"]["replay"]["init_args"]["train_data_path"] = str(corpus)
    recipe["data"]["init_args"]["fraction"] = 0.25
    data = instantiate(recipe["data"])
    assert isinstance(data, Replay)
    data.connect(tokenizer=checkpoint, batch_size=16, max_seq_length=32)
    data.prepare_data()
    data.setup()
    assert str(data.sources[1].train_data_path) == str(corpus) and TokenFile.load(corpus).num_tokens == 4096
    src, _, _ = data.train_stream().plan(np.arange(64))
    assert int((src == 1).sum()) == 16 and all(abs(int((src[:n] == 1).sum()) - n / 4) <= 1 for n in range(1, 65))
