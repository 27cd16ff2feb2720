"""The files of a generated corpus, and how its shards become one token file.

``out_dir`` of ``litcpt generate-replay``::

    plan.json                  what is being generated (checked on resume: other arguments are an error)
    shards/00007/stats.json    a finished shard's facts (seed, rank, dropped samples, its documents' keys and lengths)
    shards/00007/tokens.bin    its documents, a litcpt token file (meta.json written last: the shard is finished)
    tokens.bin, meta.json      the corpus: every shard's documents in shard order, exact duplicates across shards
                               dropped (a litcpt token file: ``Replay``/``TextFiles`` read ``out_dir`` as a source)
    manifest.json              written last: the checkpoint's hash, the tokenizer, the sampling arguments, the seed,
                               the tokens, each shard; the shards are then deleted

A killed run leaves finished shards (kept) and at most one unfinished one per rank (a hidden temporary file, redone).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from litcpt.data.text.token_files import TokenFile, write_token_chunks
from litcpt.generation.filters import sample_key
from litcpt.generation.sample import ShardOutput
from litcpt.runtime.atomic import write_json

__all__ = ["MANIFEST", "PLAN", "assemble", "is_done", "shard_dir", "shard_quotas", "write_shard"]

PLAN = "plan.json"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "litcpt-generated-corpus"


def shard_quotas(max_tokens: int, shard_tokens: int) -> list[int]:
    """Tokens of each shard: ``shard_tokens`` each, the last one the rest of ``max_tokens``."""
    full, rest = divmod(int(max_tokens), int(shard_tokens))
    return [int(shard_tokens)] * full + ([rest] if rest else [])


def shard_dir(out_dir: Path, index: int) -> Path:
    return Path(out_dir) / "shards" / f"{index:05d}"


def is_done(path: Path) -> bool:
    """A shard is finished once its ``meta.json`` (written after ``stats.json`` and ``tokens.bin``) exists."""
    return (path / "stats.json").is_file() and (path / "meta.json").is_file()


def write_shard(path: Path, shard: ShardOutput, info: dict[str, Any], tokenizer: Any, source: str) -> dict[str, Any]:
    """Write a finished shard (``stats.json``, then its token file); returns its stats."""
    if not shard.documents:
        raise RuntimeError(f"generation: shard {path.name} kept no document")
    stats = {**info, "tokens": shard.tokens, "samples": len(shard.documents), "generated_tokens": shard.generated,
             "dropped": dict(shard.dropped), "seconds": round(shard.seconds, 3),
             "documents": [[sample_key(d), len(d)] for d in shard.documents]}
    write_json(path / "stats.json", stats, indent=None)
    write_token_chunks(iter(shard.documents), tokenizer, path, source=source, num_documents=len(shard.documents))
    return stats


def read_stats(path: Path) -> dict[str, Any]:
    try:
        stats = json.loads((path / "stats.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}/stats.json: unreadable ({err}); delete the shard directory to generate it again") \
            from None
    tf = TokenFile.load(path)
    if sum(n for _, n in stats["documents"]) != tf.num_tokens:
        raise ValueError(f"{path}: stats.json does not match tokens.bin; delete the shard directory to generate it "
                         "again")
    return stats


def _documents(out_dir: Path, count: int, counts: dict[str, int]) -> Iterator[np.ndarray]:
    """Every shard's documents in shard order, a document whose key came before left out (counted)."""
    seen: set[str] = set()
    for index in range(count):
        path = shard_dir(out_dir, index)
        stats = read_stats(path)
        tokens = TokenFile.load(path).memmap()
        offset = 0
        keep: list[np.ndarray] = []
        for key, length in stats["documents"]:
            if key in seen:
                counts["duplicate"] += 1
            else:
                seen.add(key)
                keep.append(np.asarray(tokens[offset:offset + length], dtype=np.int64))
            offset += length
        if keep:
            yield np.concatenate(keep)


def assemble(out_dir: Path, count: int, tokenizer: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """Join the ``count`` finished shards into ``out_dir``'s token file, write ``manifest.json`` (``manifest`` plus
    the corpus's tokens, documents and each shard's stats) and delete the shards. Returns the manifest."""
    out_dir = Path(out_dir)
    shards = [read_stats(shard_dir(out_dir, k)) for k in range(count)]
    cross = {"duplicate": 0}
    tf = write_token_chunks(_documents(out_dir, count, cross), tokenizer, out_dir, source=manifest["source"],
                            num_documents=lambda: sum(s["samples"] for s in shards) - cross["duplicate"])
    dropped = {k: sum(s["dropped"][k] for s in shards) for k in ("repetitive", "duplicate", "short")}
    dropped["duplicate"] += cross["duplicate"]
    full = {**manifest, "format": MANIFEST_FORMAT, "version": 1, "tokens": tf.num_tokens,
            "documents": tf.num_documents, "dropped": dropped,
            "generated_tokens": sum(s["generated_tokens"] for s in shards),
            "seconds": round(sum(s["seconds"] for s in shards), 3),
            "shards": [{k: v for k, v in s.items() if k != "documents"} for s in shards]}
    write_json(out_dir / MANIFEST, full)
    shutil.rmtree(out_dir / "shards", ignore_errors=True)
    return full
