"""Tokenise text corpora into cached, memory-mapped token files, and read fixed-length blocks.

A token file is a flat array of token ids (``uint16`` if the tokenizer has fewer than 65536
ids, else ``uint32``), documents separated by the tokenizer's EOS token (``BOS`` is also put in
front of each document when the tokenizer's config says ``add_bos_token``). It lives in a cache
directory ``<cache_dir>/<name>-<key>/`` with ``tokens.bin`` and ``meta.json``; the key hashes the
source (files with their sizes and mtimes, or the HF dataset name), the tokenizer fingerprint and
the reading settings, so a re-run with the same inputs skips tokenisation. Files are written to a
temporary name and moved into place (``os.replace``); ``meta.json`` is written last, so a cache
entry without it is ignored and rebuilt. Documents are streamed and written in chunks: memory does
not grow with the corpus.

Inputs (see :func:`resolve_source`):

* ``.txt`` (optionally ``.gz``): **one document per file**, read in chunks cut at line boundaries.
* ``.jsonl`` / ``.json`` (optionally ``.gz``): one document per row / per element of a top-level
  list, text under ``text_field``.
* ``.parquet``: one document per row, column ``text_field`` (read in record batches).
* a directory: all supported files below it, recursively, sorted by path (hidden files skipped);
  a directory written by ``datasets.Dataset.save_to_disk`` is loaded with ``load_from_disk``; a
  litcpt cache entry (``meta.json`` + ``tokens.bin``) is used as is (pre-tokenised).
* ``"litdata:<dir or URL>"``: a litdata-optimised dataset of token tensors. Written with
  ``item_loader=TokensLoader()`` (``index.json`` config ``"item_loader": "TokensLoader"``, what
  litgpt's own ``TextFiles``/``TinyStories`` write), it is **streamed**: no token file is written,
  blocks are read by index through ``litdata.StreamingDataset(..., item_loader=TokensLoader(T + 1))``
  (see :class:`LitdataTokens`, :class:`LitdataBlocks`); remote URLs (``s3://``, ``gs://``,
  ``r2://``, ``azure://``, litdata's ``local:``) must be of this kind. A local dataset written
  without ``TokensLoader`` (one token tensor per item) is imported once into a token file, with
  the current tokenizer's EOS after each item. Needs the optional ``litdata`` package.
* ``"hf:<name or path>[@split]"``: ``datasets.load_dataset(<name>, split=<split or "train">,
  **hf_kwargs)`` (e.g. ``"hf:json"`` with ``hf_kwargs={"data_files": "x.jsonl"}``). A
  ``save_to_disk`` directory also accepts ``@split`` to pick a split of a ``DatasetDict``.

Blocks: block ``i`` of a token file with block size ``T`` is ``tokens[i*T : i*T + T + 1]`` (``T + 1``
tokens: input ``[:T]``, target ``[1:]``), so there are ``(num_tokens - 1) // T`` blocks. A streamed
litdata dataset uses litdata's own ``TokensLoader`` blocks instead: ``T + 1`` tokens that do not
overlap, cut within each chunk (``chunk_tokens // (T + 1)`` per chunk; a chunk's tail is unused).
"""
