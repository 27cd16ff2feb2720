"""``litcpt prepare-data``: tokenise a recipe's corpora once, in parallel processes, before the training job.

It writes the same cache entries (``$LITCPT_CACHE_DIR/tokens/<name>-<key>/``) that ``litcpt.data.TextFiles`` and
``litcpt.data.Replay`` read, so the training job starts without tokenising. Give the training recipe itself
(``--recipe``: its ``data``, ``tokenizer_dir`` and ``initial_checkpoint_dir`` keys are used) or the data module.
"""

from __future__ import annotations

from pathlib import Path

from litgpt.data import DataModule

from litcpt.data.prepare import prepare_corpora

__all__ = ["main"]


def main(
    recipe: Path | None = None,
    data: DataModule | None = None,
    tokenizer_dir: Path | None = None,
    num_processes: int = 0,
) -> list[Path]:
    """Tokenise the corpora of a training recipe (or of ``--data``) into the token cache, in parallel processes.

    Args:
        recipe: a ``litcpt pretrain`` recipe; its ``data`` and tokenizer (``tokenizer_dir``, else the
            ``initial_checkpoint_dir``) are used.
        data: the data module (overrides the recipe's): ``{class_path: litcpt.data.TextFiles, init_args: {...}}`` or
            ``litcpt.data.Replay``. Default: the bundled English corpus.
        tokenizer_dir: the tokenizer (overrides the recipe's; default: the bundled one, as ``litcpt pretrain``).
        num_processes: tokeniser processes (0: all CPUs of this machine).

    Returns: the cache entries.
    """
    return prepare_corpora(
        recipe=recipe,
        data=data,
        tokenizer_dir=tokenizer_dir,
        num_processes=num_processes,
    )
