"""``litcpt prepare-data``: parallel tokenisation into the very cache entry training reads; large unprepared corpora
are refused inside multi-process jobs with the command to run."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from litcpt import assets
from litcpt.data.prepare import check_prepared, parallel_token_chunks
from litcpt.data.text.sources import iter_documents, resolve_source
from litcpt.data.text.token_cache import cache_entry, ensure_tokens
from litcpt.data.text.token_files import token_chunks
from tests.helpers import REPO, run_litcpt


def test_parallel_chunks_equal_in_job_tokeniser(tokenizer):
    ref = resolve_source(REPO / "litcpt/assets/data/pretrain/en")
    serial = np.concatenate(list(token_chunks(iter_documents(ref, "text", None), tokenizer)))
    parallel = np.concatenate(list(parallel_token_chunks(iter_documents(ref, "text", None), tokenizer,
                                                         assets.tokenizer_dir(), processes=2, batch_chars=50_000)))
    np.testing.assert_array_equal(parallel, serial)


@pytest.mark.slow
def test_prepare_data_cli_writes_the_training_cache(tmp_path, tokenizer):
    recipe = tmp_path / "recipe.yaml"
    corpus = REPO / "litcpt/assets/data/pretrain/en"
    recipe.write_text(f"data:\n  class_path: litcpt.data.TextFiles\n  init_args:\n    train_data_path: {corpus}\n"
                      f"    cache_dir: {tmp_path / 'cache'}\n    name: en\n")
    proc = run_litcpt("prepare-data", "--recipe", str(recipe), "--num_processes", "2")
    assert "tokens" in proc.stdout, proc.stdout
    from litcpt.data import TextFiles

    data = TextFiles(train_data_path=corpus, cache_dir=tmp_path / "cache", name="en")
    data.connect(tokenizer=tokenizer, batch_size=2, max_seq_length=32)
    data._ensure(create=False)  # training finds it: no tokenisation allowed, none needed
    entry = cache_entry(resolve_source(corpus), tokenizer, tmp_path / "cache")
    assert data.token_file().path == entry
    from litcpt.commands.prepare_data import main

    assert main(recipe=recipe, num_processes=1) == [entry]  # "already prepared": nothing rewritten


def test_large_unprepared_corpus_is_refused_in_a_multi_process_job(tmp_path, tokenizer, monkeypatch):
    import litcpt.data.prepare as prepare

    corpus = REPO / "litcpt/assets/data/pretrain/en"
    monkeypatch.setattr(prepare, "INLINE_LIMIT_BYTES", 1000)
    kwargs = dict(cache_dir=tmp_path, text_field="text", hf_kwargs=None, what="train_data_path")
    check_prepared(corpus, tokenizer, world_size=1, **kwargs)  # one process: tokenise inline, as before
    with pytest.raises(ValueError, match="litcpt prepare-data"):
        check_prepared(corpus, tokenizer, world_size=8, **kwargs)
    ensure_tokens(corpus, tokenizer, tmp_path)
    check_prepared(corpus, tokenizer, world_size=8, **kwargs)  # prepared: fine


def test_a_tokenising_worker_imports_no_torch():
    """The module a ``spawn``-started worker imports stays light (torch + Lightning cost ~6 s per worker)."""
    code = "import sys, litcpt.runtime.encoding; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-2000:] + proc.stdout


def test_a_missing_tokenizer_dir_names_the_recipe_key_that_gave_it(tmp_path):
    """recipes/tiny/d2-continue.yaml before its D1 run exists: the tokenizer comes from ``initial_checkpoint_dir``,
    which the error names (and says it does not exist), not ``tokenizer_dir``, which the user never set."""
    recipe = tmp_path / "d2.yaml"
    recipe.write_text((REPO / "recipes/tiny/d2-continue.yaml").read_text().replace(
        "initial_checkpoint_dir: out/tiny/d1/final", f"initial_checkpoint_dir: {tmp_path / 'd1' / 'final'}"))
    proc = run_litcpt("prepare-data", "--recipe", str(recipe), check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert (f"error: {recipe}: initial_checkpoint_dir: {str(tmp_path / 'd1' / 'final')!r} does not exist"
            in proc.stderr), proc.stderr
    proc = run_litcpt("prepare-data", "--recipe", str(recipe), "--tokenizer_dir", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 1 and f"error: tokenizer_dir: {str(tmp_path / 'nope')!r} does not exist" in proc.stderr
