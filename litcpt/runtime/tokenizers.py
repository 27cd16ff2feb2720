"""Loading the tokenizer of a training run, checked against the model it feeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_checked_tokenizer(tokenizer_dir: Path, config: Any, *, field: str = "tokenizer_dir") -> Any:
    """A litgpt ``Tokenizer`` from ``tokenizer_dir``; errors (naming ``field``) if the dir has no tokenizer or its
    vocabulary does not fit the embedding table of ``config`` (a ``litgpt.Config``).

    (Not :func:`litcpt.data.text.datamodule.load_tokenizer`, which turns a data module's ``tokenizer`` argument into a
    tokenizer and checks nothing about a model.)
    """
    from litgpt import Tokenizer

    path = Path(tokenizer_dir)
    if not ((path / "tokenizer.json").is_file() or (path / "tokenizer.model").is_file()):
        raise FileNotFoundError(f"{field}: {str(path)!r} has no tokenizer.json or tokenizer.model")
    tokenizer = Tokenizer(path)
    if tokenizer.vocab_size > config.padded_vocab_size:
        raise ValueError(f"{field}: the tokenizer in {str(path)!r} has {tokenizer.vocab_size} tokens but the model "
                         f"config {config.name!r} has padded_vocab_size {config.padded_vocab_size}")
    return tokenizer
