"""``litdata:`` sources: a litdata-optimised token dataset, streamed block by block (``TokensLoader``) or imported
once into a token file (one token tensor per item). Needs the optional ``litdata`` package."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from litcpt.data.text.sources import LITDATA_REMOTE_PREFIXES, SourceRef, litdata_index
from litcpt.data.text.token_files import tokenizer_fingerprint, tokenizer_id_space

__all__ = ["LITDATA_HINT", "LitdataTokens", "check_ids", "import_litdata", "litdata_chunks", "open_litdata"]

LITDATA_HINT = "pip install --no-deps litdata lightning-utilities boto3 filelock"


def import_litdata() -> Any:
    try:
        import litdata
    except Exception as err:
        raise ValueError(
            f"litdata sources need the optional `litdata` package ({err}); install it without touching torch: "
            f"{LITDATA_HINT}"
        ) from None
    return litdata


def litdata_chunks(ref: SourceRef, tokenizer: Any) -> Iterator[np.ndarray]:
    """Documents of a litdata-optimised directory (items = 1-D token tensors, as written by
    litgpt's ``TextFiles``/``TinyStories`` ``prepare_data``), EOS appended to each."""
    litdata = import_litdata()
    dataset = litdata.StreamingDataset(input_dir=str(ref.path), shuffle=False)
    for i in range(len(dataset)):
        item = dataset[i]
        ids = np.asarray(item.numpy() if hasattr(item, "numpy") else item, dtype=np.int64).reshape(-1)
        if ids.size and ids[-1] != tokenizer.eos_id:
            ids = np.append(ids, tokenizer.eos_id)
        yield ids


_LITDATA_RESERVED = ("input_dir", "item_loader", "shuffle", "subsample", "transform", "drop_last", "seed")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _streaming_dataset(uri: str, block_size: int, litdata_kwargs: dict[str, Any] | None, what: str) -> Any:
    """``litdata.StreamingDataset`` serving ``block_size + 1``-token blocks of ``uri`` by index."""
    litdata = import_litdata()
    from litdata.streaming import TokensLoader

    kwargs = dict(litdata_kwargs or {})
    bad = sorted(set(kwargs) & set(_LITDATA_RESERVED))
    if bad:
        raise ValueError(f"{what}: litdata_kwargs may not set {', '.join(bad)} (litcpt decides the block order)")
    try:
        loader = TokensLoader(block_size=block_size + 1)
        return litdata.StreamingDataset(input_dir=uri, item_loader=loader, shuffle=False, **kwargs)
    except Exception as err:
        raise ValueError(f"{what}: cannot open litdata dataset {uri} ({_first_line(err)})") from None


@dataclass(frozen=True)
class LitdataTokens:
    """A litdata-optimised token dataset (written with ``TokensLoader``), streamed, not copied.

    The counterpart of :class:`TokenFile` for :func:`open_litdata`: only the per-chunk token counts
    of ``index.json`` are held (O(number of chunks) memory). ``tokenizer`` is the fingerprint of the
    tokenizer the data was *checked* against (token ids below its vocabulary size); litdata stores
    no tokenizer, so using the same tokenizer as at ``optimize`` time is the user's responsibility.
    """

    uri: str
    chunk_tokens: tuple[int, ...]
    dtype: str
    vocab_size: int
    id_space: int
    tokenizer: str
    source: str
    litdata_kwargs: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def num_tokens(self) -> int:
        return int(sum(self.chunk_tokens))

    @property
    def path(self) -> Path | None:
        return None if self.uri.startswith(LITDATA_REMOTE_PREFIXES) else Path(self.uri)

    def chunk_blocks(self, block_size: int) -> np.ndarray:
        """Blocks of ``block_size + 1`` tokens in each chunk (int64 array, one entry per chunk)."""
        return np.asarray(self.chunk_tokens, dtype=np.int64) // (block_size + 1)

    def num_blocks(self, block_size: int) -> int:
        """Number of non-overlapping ``T + 1``-token blocks (litdata ``TokensLoader`` layout)."""
        return int(self.chunk_blocks(block_size).sum())

    def dataset(self, block_size: int) -> Any:
        """A fresh ``litdata.StreamingDataset`` serving block ``i`` as ``dataset[i]``."""
        return _streaming_dataset(self.uri, block_size, self.litdata_kwargs, self.source)


def open_litdata(
    ref: SourceRef,
    tokenizer: Any,
    block_size: int,
    litdata_kwargs: dict[str, Any] | None = None,
    what: str = "data path",
) -> LitdataTokens:
    """Open a ``litdata:`` token dataset for streaming (nothing is written).

    Checks that ``index.json`` says ``TokensLoader``, that there is at least one block of
    ``block_size + 1`` tokens and that the ids of the first block are below the tokenizer's
    vocabulary size; every later read checks its ids too (see :class:`LitdataBlocks`).
    """
    where = f"{what} {ref.spec!r}"
    if tokenizer is None:
        raise ValueError(f"{where}: a tokenizer is needed (pass --tokenizer_dir / connect(tokenizer=...))")
    uri = ref.litdata_uri
    ds = _streaming_dataset(uri, block_size, litdata_kwargs, where)
    index_dir = Path(getattr(getattr(ds, "input_dir", None), "path", None) or uri)
    if not (index_dir / "index.json").is_file():
        raise ValueError(f"{where}: no index.json found (not a litdata-optimised dataset?)")
    index = litdata_index(index_dir / "index.json", where)
    config = index.get("config") if isinstance(index.get("config"), dict) else {}
    if config.get("item_loader") != "TokensLoader":
        raise ValueError(
            f"{where}: items were not written with TokensLoader (index.json "
            f"item_loader={config.get('item_loader')!r}); "
            "streaming needs litdata.optimize(..., item_loader=TokensLoader())"
        )
    try:
        chunk_tokens = tuple(int(c["dim"]) for c in index["chunks"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"{where}: index.json has no token counts per chunk ('dim'); re-run litdata.optimize"
        ) from None
    id_space = tokenizer_id_space(tokenizer)
    tokens = LitdataTokens(
        uri=uri,
        chunk_tokens=chunk_tokens,
        dtype="",
        vocab_size=int(tokenizer.vocab_size),
        id_space=id_space,
        tokenizer=tokenizer_fingerprint(tokenizer),
        source=where,
        litdata_kwargs=dict(litdata_kwargs or {}),
    )
    if tokens.num_blocks(block_size) < 1:
        raise ValueError(
            f"{where}: {tokens.num_tokens} tokens in {len(chunk_tokens)} chunk(s) are too few for one block of "
            f"{block_size}+1"
        )
    try:
        first = ds[0]
    except Exception as err:
        raise ValueError(f"{where}: cannot read the first block ({_first_line(err)})") from None
    ids = np.asarray(first.numpy() if hasattr(first, "numpy") else first).reshape(-1)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"{where}: items are {ids.dtype}, expected integer token ids")
    check_ids(ids, id_space, f"{where}: first block")
    return replace(tokens, dtype=ids.dtype.name)


def check_ids(ids: np.ndarray, id_space: int, where: str) -> None:
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= id_space):
        bad = int(ids.max()) if int(ids.max()) >= id_space else int(ids.min())
        raise ValueError(
            f"{where}: token id {bad} is outside the tokenizer's vocabulary [0, {id_space}); "
            "the dataset must be tokenised with the same tokenizer as the model"
        )
