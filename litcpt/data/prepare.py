"""Tokenise corpora once, outside the training job, in parallel processes, into the cache training reads.

:func:`prepare_source` writes exactly the token file that ``TextFiles``' own (single-process) tokenisation would write,
at the same cache entry (:func:`litcpt.data.text.token_cache.cache_entry`: source, tokenizer fingerprint and reading
settings),
so a later ``litcpt pretrain`` with the same data finds it and skips tokenisation. Documents are read in the main
process and cut into the same batches as the in-job tokeniser; the batches are encoded by a pool of worker processes
(``imap``, in order), and BOS/EOS are added in the main process exactly as
:func:`litcpt.data.text.token_files.token_chunks`
does: the output is byte-identical whatever the number of processes. :func:`prepare_corpora` (what
``litcpt prepare-data`` runs) prepares every corpus of a recipe's data module.

:func:`check_prepared` is what a distributed training job calls before it would tokenise: a large corpus (above
:data:`INLINE_LIMIT_BYTES` of source files) that is not in the cache yet is an error naming the command to run,
instead of one rank tokenising for longer than the collective timeout while the others wait.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from litgpt.data import DataModule

from litcpt.data.text.sources import SourceRef, iter_documents, resolve_source
from litcpt.data.text.token_cache import cache_entry, ensure_tokens
from litcpt.data.text.token_files import ENCODE_BATCH_CHARS, DocumentCounter, write_token_chunks
from litcpt.runtime.encoding import encode_batch, encode_many, init_worker
from litcpt.runtime.ranks import world_size as job_world_size

INLINE_LIMIT_BYTES = int(os.environ.get("LITCPT_INLINE_TOKENIZE_LIMIT", 1 << 30))
"""Source bytes above which a multi-process training job refuses to tokenise inline (env
``LITCPT_INLINE_TOKENIZE_LIMIT`` overrides; 1 GiB by default, minutes of single-process tokenising)."""

def _batches(pieces: Iterable[tuple[str, bool]], batch_chars: int) -> Iterator[list[tuple[str, bool]]]:
    """The pieces grouped as the in-job tokeniser groups them (a batch closes once it holds >= batch_chars)."""
    batch: list[tuple[str, bool]] = []
    size = 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece[0])
        if size >= batch_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def parallel_token_chunks(pieces: Iterable[tuple[str, bool]], tokenizer: Any, tokenizer_dir: str | Path, *,
                          processes: int, progress: Any = None,
                          batch_chars: int = ENCODE_BATCH_CHARS) -> Iterator[np.ndarray]:
    """Token chunks of ``pieces`` as :func:`litcpt.data.text.token_files.token_chunks` yields them, encoded by
    ``processes``
    workers (``processes <= 1``: in this process)."""
    eos, bos, use_bos = tokenizer.eos_id, tokenizer.bos_id, tokenizer.use_bos
    if eos is None:
        raise ValueError("tokenizer: has no EOS token (needed to separate documents); check its tokenizer_config.json")
    if use_bos and bos is None:
        raise ValueError("tokenizer: add_bos_token is set but the tokenizer has no BOS token")
    batches = _batches(pieces, batch_chars)
    pool = None
    if processes > 1:
        pool = get_context("spawn").Pool(processes, initializer=init_worker, initargs=(str(tokenizer_dir),))

        def pairs() -> Iterator[tuple[list[tuple[str, bool]], list[list[int]]]]:
            # a bounded window of batches at a time: reading never runs ahead of encoding by more than that
            window: list[list[tuple[str, bool]]] = []
            for batch in batches:
                window.append(batch)
                if len(window) >= 2 * processes:
                    yield from zip(window, pool.map(encode_batch, [[t for t, _ in b] for b in window]))
                    window = []
            if window:
                yield from zip(window, pool.map(encode_batch, [[t for t, _ in b] for b in window]))
    else:
        def pairs() -> Iterator[tuple[list[tuple[str, bool]], list[list[int]]]]:
            for batch in batches:
                yield batch, encode_many(tokenizer, [t for t, _ in batch])
    at_doc_start = True
    try:
        for batch, ids_list in pairs():
            out: list[int] = []
            for (_, ends), ids in zip(batch, ids_list):
                if at_doc_start and use_bos:
                    out.append(bos)
                out.extend(ids)
                if ends:
                    out.append(eos)
                at_doc_start = ends
            if progress is not None:
                progress.update(sum(int(ends) for _, ends in batch))
                progress.set_postfix(tokens=f"{progress.n_tokens + len(out):,}", refresh=False)
                progress.n_tokens += len(out)
            yield np.asarray(out, dtype=np.int64)
    finally:
        if pool is not None:
            pool.terminate()


def source_bytes(ref: SourceRef) -> int | None:
    """Total size of a file source in bytes (None for sources whose size is not known up front)."""
    if not ref.files:
        return None
    return sum(f.stat().st_size for f in ref.files)


def prepare_source(spec: str | Path, tokenizer: Any, tokenizer_dir: str | Path, *, cache_dir: str | Path | None = None,
                   text_field: str = "text", hf_kwargs: dict[str, Any] | None = None, processes: int = 1,
                   what: str = "data path", show_progress: bool = True) -> tuple[Path | None, str]:
    """Tokenise ``spec`` into its cache entry unless it is there; returns (entry, what happened)."""
    ref = resolve_source(spec, what)
    if ref.kind in ("tokens", "litdata_stream"):
        return ref.path, "pre-tokenised (nothing to do)"
    entry = cache_entry(ref, tokenizer, cache_dir, text_field, hf_kwargs)
    if (entry / "meta.json").is_file():
        return entry, "already prepared"
    if ref.kind == "litdata":  # an import of token tensors: no text to encode
        ensure_tokens(spec, tokenizer, cache_dir, text_field, hf_kwargs, what)
        return entry, "imported"
    from tqdm import tqdm

    documents = DocumentCounter()
    one_doc_per_file = bool(ref.files) and all(f.name.lower().endswith((".txt", ".txt.gz")) for f in ref.files)
    total = len(ref.files) if one_doc_per_file else None
    with tqdm(total=total, unit=" docs", desc=f"tokenising {ref.label}", disable=not show_progress,
              dynamic_ncols=True) as bar:
        bar.n_tokens = 0
        chunks = parallel_token_chunks(
            documents.wrap(iter_documents(ref, text_field, hf_kwargs)),
            tokenizer,
            tokenizer_dir,
            processes=processes,
            progress=bar,
        )
        tf = write_token_chunks(chunks, tokenizer, entry, source=str(spec), num_documents=documents)
    return entry, f"{tf.num_tokens:,} tokens, {tf.num_documents:,} documents"


def check_prepared(
    spec: str | Path,
    tokenizer: Any,
    *,
    cache_dir: str | Path | None,
    text_field: str,
    hf_kwargs: dict[str, Any] | None,
    world_size: int,
    what: str,
) -> None:
    """Raise a one-line error when a multi-process job would tokenise a large corpus inline."""
    if world_size <= 1 or tokenizer is None:
        return
    ref = resolve_source(spec, what)
    if ref.kind in ("tokens", "litdata_stream", "litdata"):
        return
    size = source_bytes(ref)
    if size is None or size <= INLINE_LIMIT_BYTES:
        return
    if (cache_entry(ref, tokenizer, cache_dir, text_field, hf_kwargs) / "meta.json").is_file():
        return
    raise ValueError(
        f"{what} {str(spec)!r}: {size / 1e9:.1f} GB of text is not tokenised yet, and tokenising it inside a "
        f"{world_size}-process job would keep the other ranks waiting past the collective timeout; run "
        "`litcpt prepare-data --recipe <this recipe> --num_processes 16` first (it writes the cache this job reads)"
    )


def check_textfiles_prepared(data: Any) -> None:
    """:func:`check_prepared` for every path of a ``TextFiles`` (called by its ``prepare_data``)."""
    world = job_world_size()
    if world <= 1:
        return
    for what, path in (("train_data_path", data.train_data_path), ("val_data_path", data.val_data_path)):
        if path is not None:
            check_prepared(
                path,
                data.tokenizer,
                cache_dir=data.cache_dir,
                text_field=data.text_field,
                hf_kwargs=data.hf_kwargs,
                world_size=world,
                what=what,
            )


def _from_recipe(recipe: Path) -> tuple[Any, Path | None, str]:
    """The data module and tokenizer dir a training recipe would use, and the recipe's key that named the dir."""
    import yaml
    from jsonargparse import ArgumentParser

    try:
        raw = yaml.safe_load(Path(recipe).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"recipe: cannot read {str(recipe)!r} ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"recipe: {str(recipe)!r} is not a mapping of keys")
    keys = ("tokenizer_dir", "initial_checkpoint_dir", "checkpoint_dir")
    key = next((k for k in keys if raw.get(k)), "tokenizer_dir")
    tokenizer_dir = raw.get(key)
    data = None
    if raw.get("data") is not None:
        parser = ArgumentParser(exit_on_error=False)
        parser.add_argument("--data", type=DataModule)
        data = parser.instantiate_classes(parser.parse_object({"data": raw["data"]})).data
    return data, Path(tokenizer_dir) if tokenizer_dir else None, key


def _sources(data: Any) -> list[tuple[Any, str, Any]]:
    """(TextFiles, field name, path) of every corpus a litcpt data module reads."""
    from litcpt.data import Replay, TextFiles

    if isinstance(data, Replay):
        return [s for source in data.sources for s in _sources(source)]
    if isinstance(data, TextFiles):
        out = [(data, "train_data_path", data.train_data_path)]
        if data.val_data_path is not None:
            out.append((data, "val_data_path", data.val_data_path))
        return out
    raise ValueError(f"data: prepare-data knows litcpt.data.TextFiles and litcpt.data.Replay, got {type(data).__name__}"
                     " (litgpt's own data modules prepare themselves)")


def prepare_corpora(
    *,
    recipe: Path | None,
    data: DataModule | None,
    tokenizer_dir: Path | None,
    num_processes: int,
) -> list[Path]:
    """Tokenise the corpora of a training recipe (or of ``data``) into the token cache, in parallel processes
    (:func:`prepare_source` for each ``TextFiles`` source, ``Replay``'s included); prints one line per source.

    The arguments are ``litcpt prepare-data``'s (:func:`litcpt.commands.prepare_data.main`: its signature holds their
    defaults, its docstring what each means); every one is given, by name.

    Returns: the cache entries.
    """
    from litgpt import Tokenizer

    from litcpt import assets

    recipe_data, recipe_tokenizer, key = _from_recipe(recipe) if recipe is not None else (None, None, "")
    data = data if data is not None else recipe_data
    if data is None:
        from litcpt.data import TextFiles

        data = TextFiles(train_data_path=assets.pretrain_files("en")[0].parent, name="en")
    # the key the user wrote: --tokenizer_dir, else the recipe's tokenizer_dir / initial_checkpoint_dir
    where = "tokenizer_dir" if tokenizer_dir is not None or recipe_tokenizer is None else f"{recipe}: {key}"
    tokenizer_dir = Path(tokenizer_dir or recipe_tokenizer or assets.tokenizer_dir())
    if not tokenizer_dir.is_dir():
        hint = "" if where == "tokenizer_dir" else "; run the stage that writes it first, or give --tokenizer_dir"
        raise FileNotFoundError(f"{where}: {str(tokenizer_dir)!r} does not exist (the tokenizer is read from it{hint})")
    if not ((tokenizer_dir / "tokenizer.json").is_file() or (tokenizer_dir / "tokenizer.model").is_file()):
        raise FileNotFoundError(f"{where}: {str(tokenizer_dir)!r} has no tokenizer.json or tokenizer.model")
    tokenizer = Tokenizer(tokenizer_dir)
    processes = int(num_processes) or (os.cpu_count() or 1)
    entries = []
    for source, field, path in _sources(data):
        entry, done = prepare_source(path, tokenizer, tokenizer_dir, cache_dir=source.cache_dir,
                                     text_field=source.text_field, hf_kwargs=source.hf_kwargs, processes=processes,
                                     what=field)
        print(f"{field} {str(path)!r}: {done} -> {entry}")
        if entry is not None:
            entries.append(entry)
    return entries
