"""What the parts of ``litcpt demo`` share: the tiny models, the scenario recipes' building blocks, and running one
scenario (an ordinary pretrain run, in this process) with its console output sent to a log file."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litcpt.runtime.atomic import write_yaml

__all__ = ["DEFAULT_TOKENS", "QUICK_MODEL", "QUICK_TOKENS", "TINY_MODEL", "DemoProgress", "Scenario", "instantiate",
           "lr_schedule_spec", "mix_data", "quiet_run", "run_scenario", "scenario_tokens", "step_report", "text_data",
           "torch_threads"]

TINY_MODEL: dict[str, Any] = dict(
    name="litcpt-tiny", block_size=128, vocab_size=4096, padded_vocab_size=4096, n_layer=4, n_head=4, n_embd=128,
    n_query_groups=4, rotary_percentage=1.0, parallel_residual=False, bias=False, norm_class_name="RMSNorm",
    norm_eps=1e-5, mlp_class_name="LLaMAMLP", intermediate_size=352,
)
"""The model of ``recipes/tiny/pretrain.yaml`` (~1.9M parameters)."""

QUICK_MODEL: dict[str, Any] = {**TINY_MODEL, "name": "litcpt-tiny-quick", "block_size": 64, "n_layer": 2,
                               "n_head": 2, "n_query_groups": 2, "n_embd": 64, "intermediate_size": 176}
"""A smaller model for ``quick=True`` (tests)."""

DEFAULT_TOKENS = 262_144
"""Tokens per stage: 128 optimizer steps of 16 x 128 tokens; the whole demo fits in ~10 min on a busy 2-core CPU."""
QUICK_TOKENS = 65_536


@dataclass
class Scenario:
    """One run of the demo: a ``litcpt pretrain`` recipe (a dict) and the scenario it continues from."""

    name: str
    label: str
    recipe: dict[str, Any]
    parent: str | None = None


def instantiate(spec: Any) -> Any:
    """Build objects from recipe values: ``{class_path, init_args}`` dicts (recursively), lists, plain values."""
    if isinstance(spec, dict):
        if "class_path" in spec:
            module, _, name = str(spec["class_path"]).rpartition(".")
            cls = getattr(importlib.import_module(module), name)
            return cls(**{k: instantiate(v) for k, v in (spec.get("init_args") or {}).items()})
        return {k: instantiate(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [instantiate(v) for v in spec]
    return spec


def text_data(lang: str, cache_dir: Path | None) -> dict[str, Any]:
    from litcpt import assets

    args: dict[str, Any] = {"train_data_path": str(assets.data_dir() / "pretrain" / lang), "name": lang,
                            "val_split_fraction": 0.05}
    if cache_dir is not None:
        args["cache_dir"] = str(cache_dir)
    return {"class_path": "litcpt.data.TextFiles", "init_args": args}


def mix_data(new: str, old: str, fraction: float, seed: int, cache_dir: Path | None) -> dict[str, Any]:
    """``Replay(new, old, fraction)``: validates on both sources even at fraction 0 (a D1-only run)."""
    return {
        "class_path": "litcpt.data.Replay",
        "init_args": {
            "new": text_data(new, cache_dir),
            "replay": text_data(old, cache_dir),
            "fraction": float(fraction),
            "seed": seed,
        },
    }


def lr_schedule_spec(class_name: str, **init_args: Any) -> dict[str, Any]:
    return {"class_path": f"litcpt.callbacks.{class_name}", "init_args": init_args}


@contextlib.contextmanager
def quiet_run(log_file: Path) -> Iterator[None]:
    """Send a run's console output (progress bar, summaries, warnings) to ``log_file``."""
    names = ["lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "litgpt"]
    levels = {n: logging.getLogger(n).level for n in names}
    with open(log_file, "a") as fp, contextlib.redirect_stdout(fp), contextlib.redirect_stderr(fp):
        handler = logging.StreamHandler(fp)
        for n in names:
            logging.getLogger(n).setLevel(logging.WARNING)
        logging.getLogger("lightning").addHandler(handler)
        try:
            yield
        finally:
            logging.getLogger("lightning").removeHandler(handler)
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the body with ``n`` torch CPU threads, then restore the previous setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def runs_dir_of(out_dir: Path | str, name: str) -> tuple[Path, Path]:
    """``(out_dir, out_dir/name)`` with the runs directory created; tokenizers' own threads off (the demo sets the
    torch threads itself, and forked loader workers would warn)."""
    out_dir = Path(out_dir)
    runs_dir = out_dir / name
    runs_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return out_dir, runs_dir


def scenario_tokens(scenario: Scenario) -> int:
    """The training tokens of a scenario's run (its recipe's ``train.max_tokens``; 1 if it gives none): the weight of
    the run in the demo's ETA."""
    return int((scenario.recipe.get("train") or {}).get("max_tokens") or 1)


class DemoProgress:
    """One line on ``file``, updated: the runs done, the current run's optimizer step, and an ETA weighted by each
    run's tokens (the bar counts tokens: a run of 4x the tokens moves it 4x as far)."""

    def __init__(self, scenarios: Sequence[Scenario], file: Any, desc: str = "litcpt demo") -> None:
        from tqdm.auto import tqdm

        self.weights = [scenario_tokens(s) for s in scenarios]
        self.names = [s.name for s in scenarios]
        self.bar = tqdm(total=sum(self.weights), desc=desc, unit="tok", unit_scale=True, file=file,
                        dynamic_ncols=True)
        self.index, self.done = 0, 0

    def start(self, index: int) -> Callable[[int, int], None]:
        """Run ``index`` starts: returns what its steps report to (``on_step(step, max_steps)``)."""
        self.index, self.done = index, sum(self.weights[:index])
        self._show(0, None)
        return self.step

    def step(self, step: int, max_steps: int) -> None:
        self._show(step, max_steps)

    def finish(self) -> None:
        """The current run is done: its whole weight counts."""
        self.bar.n = self.done + self.weights[self.index]
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()

    def _show(self, step: int, max_steps: int | None) -> None:
        fraction = min(step / max_steps, 1.0) if max_steps else 0.0
        self.bar.n = self.done + round(self.weights[self.index] * fraction)
        at = f"step {step}/{max_steps}" if max_steps else "starting"
        self.bar.set_postfix_str(f"run {self.index + 1}/{len(self.weights)} {self.names[self.index]}: {at}",
                                 refresh=False)
        self.bar.refresh()


def step_report(on_step: Callable[[int, int], None]) -> Any:
    """A Lightning callback that calls ``on_step(global_step, max_steps)`` after each optimizer step."""
    from lightning.pytorch.callbacks import Callback

    class StepReport(Callback):
        def __init__(self) -> None:
            self.shown = -1

        def on_train_batch_end(self, trainer: Any, *_: Any) -> None:
            if trainer.global_step != self.shown:  # once per optimizer step, not per micro-batch
                self.shown = trainer.global_step
                on_step(trainer.global_step, trainer.max_steps)

    return StepReport()


def run_scenario(scenario: Scenario, runs_dir: Path, *, verbose: bool = False,
                 on_step: Callable[[int, int], None] | None = None) -> Path:
    """Run one scenario into ``runs_dir/<name>`` (replacing an earlier run there); returns its run dir.

    The recipe (with ``out_dir`` and, for a continued run, ``initial_checkpoint_dir``) is written to the run's
    ``config.yaml`` and read by ``litcpt pretrain``'s own parser (:func:`litcpt.training.recipe.pretrain_parser`:
    the command's signature is the schema, its defaults fill the keys the recipe leaves out), then run."""
    from litcpt.training.pretrain import run
    from litcpt.training.recipe import pretrain_parser

    out = runs_dir / scenario.name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    recipe = {"out_dir": str(out), **scenario.recipe}
    if scenario.parent is not None:
        recipe["initial_checkpoint_dir"] = str(runs_dir / scenario.parent / "final")
    write_yaml(out / "config.yaml", recipe)
    parser = pretrain_parser()
    args = {k: v for k, v in parser.instantiate_classes(parser.parse_object(recipe)).items() if k != "config"}
    # the optimizer as the recipe's {class_path, init_args} dict (not the parser's callable): the run saves it in the
    # checkpoint's hyperparameters, as the demo's runs always have
    args["optimizer"] = recipe["optimizer"]
    if on_step is not None:  # the run's steps, on the demo's one line (its own bar goes to train.log)
        args["callbacks"] = [*(args.get("callbacks") or []), step_report(on_step)]
    context = contextlib.nullcontext() if verbose else quiet_run(out / "train.log")
    with context:
        run(**args)
    return out
