"""``litcpt prepare-data``: tokenise a recipe's corpora once, in parallel processes, before the training job.

It writes the same cache entries (``$LITCPT_CACHE_DIR/tokens/<name>-<key>/``) that ``litcpt.data.TextFiles`` and
``litcpt.data.Replay`` read, so the training job starts without tokenising. Give the training recipe itself
(``--recipe``: its ``data``, ``tokenizer_dir`` and ``initial_checkpoint_dir`` keys are used) or the data module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from litgpt.data import DataModule


def _from_recipe(recipe: Path) -> tuple[Any, Path | None]:
    """The data module and tokenizer dir a training recipe would use."""
    import yaml
    from jsonargparse import ArgumentParser

    try:
        raw = yaml.safe_load(Path(recipe).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"recipe: cannot read {str(recipe)!r} ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"recipe: {str(recipe)!r} is not a mapping of keys")
    tokenizer_dir = raw.get("tokenizer_dir") or raw.get("initial_checkpoint_dir") or raw.get("checkpoint_dir")
    data = None
    if raw.get("data") is not None:
        parser = ArgumentParser(exit_on_error=False)
        parser.add_argument("--data", type=DataModule)
        data = parser.instantiate_classes(parser.parse_object({"data": raw["data"]})).data
    return data, Path(tokenizer_dir) if tokenizer_dir else None


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
    from litgpt import Tokenizer

    from litcpt import assets
    from litcpt.data.prepare import prepare_source

    recipe_data, recipe_tokenizer = _from_recipe(recipe) if recipe is not None else (None, None)
    data = data if data is not None else recipe_data
    if data is None:
        from litcpt.data import TextFiles

        data = TextFiles(train_data_path=assets.pretrain_files("en")[0].parent, name="en")
    tokenizer_dir = Path(tokenizer_dir or recipe_tokenizer or assets.tokenizer_dir())
    if not ((tokenizer_dir / "tokenizer.json").is_file() or (tokenizer_dir / "tokenizer.model").is_file()):
        raise FileNotFoundError(f"tokenizer_dir: {str(tokenizer_dir)!r} has no tokenizer.json or tokenizer.model")
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
