"""``litcpt demo``'s one console line: the current run's optimizer step, updated, and an ETA weighted by each run's
tokens (the bar counts tokens, not runs)."""

from __future__ import annotations

import io
from types import SimpleNamespace

from litcpt.demo.runtime import DemoProgress, Scenario, step_report


def _scenario(name, tokens):
    return Scenario(name=name, label=name, recipe={"train": {"max_tokens": tokens}})


def test_the_line_shows_the_inner_step_and_counts_tokens():
    file = io.StringIO()
    progress = DemoProgress([_scenario("d1", 1000), _scenario("d2", 3000)], file=file)
    on_step = progress.start(0)
    on_step(5, 10)
    assert progress.bar.n == 500 and progress.bar.total == 4000
    assert "run 1/2 d1: step 5/10" in file.getvalue()
    progress.finish()
    on_step = progress.start(1)
    on_step(1, 4)
    assert progress.bar.n == 1000 + 750  # a quarter of the long run moves the bar 1.5x as far as all of the short one
    assert "run 2/2 d2: step 1/4" in file.getvalue()
    progress.finish()
    assert progress.bar.n == 4000
    progress.close()


def test_the_callback_reports_once_per_optimizer_step():
    seen = []
    callback = step_report(lambda step, total: seen.append((step, total)))
    trainer = SimpleNamespace(global_step=0, max_steps=3)
    for step in (1, 1, 2, 2, 3):  # two micro-batches per step but the last
        trainer.global_step = step
        callback.on_train_batch_end(trainer, None, None, None, 0)
    assert seen == [(1, 3), (2, 3), (3, 3)]
