"""The command registry and each command's jsonargparse parser: what both the CLI (:mod:`litcpt.cli.main`) and the
shipped
answers (:mod:`litcpt.cli.help_cache`) are made from. Imports nothing heavy until a parser is built.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

HELP_WIDTH = 100
"""Columns of every ``--help``, shipped or not: the real parser wraps at this width whatever the terminal, so the
answers shipped in ``litcpt/assets/cli`` are the very text it prints (see :mod:`litcpt.cli.help_cache`)."""

# command -> "module:function"; imported only when the command runs, so `litcpt --help` is fast.
COMMANDS: dict[str, str] = {
    "pretrain": "litcpt.commands.pretrain:setup",
    "reward": "litcpt.commands.reward:setup",
    "score": "litcpt.commands.score:main",
    "dpo": "litcpt.commands.dpo:setup",
    "rewardbench": "litcpt.commands.rewardbench:main",
    "demo": "litcpt.commands.demo:main",
    "report": "litcpt.commands.report:main",
    "anneal": "litcpt.commands.anneal:setup",
    "plot-schedule": "litcpt.commands.plot_schedule:main",
    "merge": "litcpt.commands.merge:main",
    "prepare-data": "litcpt.commands.prepare_data:main",
    "generate-replay": "litcpt.commands.generate_replay:main",
    "export": "litcpt.commands.export:main",
    "import-reward-model": "litcpt.commands.import_reward_model:main",
}

_DESCRIPTIONS: dict[str, str] = {
    "pretrain": "pretrain or continue pretraining a litgpt model (re-warm/re-decay, replay, infinite schedules)",
    "reward": "train a reward model (one-score head, Bradley-Terry loss) on preference pairs",
    "score": "score prompt/response rows or pairs with a reward model",
    "dpo": "train a policy with Direct Preference Optimization against a frozen reference",
    "rewardbench": "RewardBench-style accuracy per subset and section, for reward models and DPO models",
    "demo": "offline CPU demo of the paper: D1 pretrain, D2 continue with/without replay, union retrain, infinite LR",
    "report": "table + plots (Markdown/PNG/JSON) of finished runs: final val loss per source, tokens spent",
    "anneal": "branch from a constant-phase checkpoint of an infinite-schedule run and anneal the LR to a final model",
    "plot-schedule": "draw the LR schedule of one or several recipes (stages one after the other) to a PNG",
    "merge": "average LitGPT checkpoints of one model (uniform or weighted; soups, last-k averages) into a new one",
    "prepare-data": "tokenise a recipe's corpora once, in parallel processes, into the cache training reads",
    "generate-replay": "sample a replay corpus from a model (when its pretraining data is gone) as a token file",
    "export": "a litcpt checkpoint -> a Hugging Face directory (reward models: ForSequenceClassification)",
    "import-reward-model": "a Hugging Face sequence-classification reward model -> a litcpt reward checkpoint",
}


RECIPE_CLASSES = ("litcpt.data", "litcpt.callbacks")
"""The packages whose classes recipes name by ``class_path`` (``litcpt.data.Replay``): imported by a parser with an
option that takes a class, so that ``--help`` lists them among the known subclasses and the keys of their
``init_args`` are known before any run (:func:`litcpt.cli.answers.describe`)."""


def _import_recipe_classes(parser) -> None:
    from jsonargparse._typehints import ActionTypeHint, get_subclass_types

    if any(isinstance(a, ActionTypeHint) and get_subclass_types(a._typehint, also_lists=True, callable_return=True)
           for a in parser._actions):
        for module in RECIPE_CLASSES:
            importlib.import_module(module)


def load_command(target: str) -> Callable:
    """The function behind ``"module:function"`` (imported now: the command's heavy imports come with it)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


_MARKUP = [(re.compile(r":(?:class|func|meth|mod|data|attr|obj):`~?([^`]+)`"), r"\1"),  # Sphinx roles: the name
           (re.compile(r"``([^`]+)``"), r"\1"),  # RST literals: the text
           (re.compile(r"<class '(?:[\w]+\.)*(\w+)'>"), r"\1")]  # a bare type: its name (Path)
"""What ``--help`` drops from the docstrings and type names it shows (they are written for the API docs)."""


def plain(text: str) -> str:
    """``text`` without RST markup or ``<class '...'>``: what ``--help`` prints."""
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    return text


def build_parser(command: str, function: Callable, *, help_texts: bool = True):
    """The jsonargparse parser of one command (with ``--config`` and ``--print_config``). ``help_texts=False``: the
    same keys, types and defaults, without the dataclass fields' attribute docstrings, which only ``--help`` shows
    and which cost ~0.5 s a parse (jsonargparse reads every dataclass's source): how a run reads its arguments."""
    from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter, set_parsing_settings

    class FixedWidth(DefaultHelpFormatter):
        """Help wrapped at ``HELP_WIDTH`` columns whatever the terminal, so the answers shipped in
        ``litcpt/assets/cli`` are the very text this parser prints (see :mod:`litcpt.cli.help_cache`)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "width": HELP_WIDTH})

        def _expand_help(self, action):
            return plain(super()._expand_help(action))

        def _format_text(self, text):
            return super()._format_text(plain(text))

        def start_section(self, heading):
            super().start_section(plain(heading) if heading else heading)

    set_parsing_settings(docstring_parse_attribute_docstrings=help_texts)
    parser = ArgumentParser(prog=f"litcpt {command}", description=(function.__doc__ or "").split("\n\n")[0],
                            exit_on_error=False, default_meta=False, allow_abbrev=False,  # no key prefixes
                            formatter_class=FixedWidth)
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML recipe; later flags override its keys")
    parser.add_function_arguments(function, as_group=False, fail_untyped=False)
    _import_recipe_classes(parser)
    return parser


def command_parser(command: str):
    """The parser of the registered ``command`` (its signature is the schema): how code below the commands reads a
    command's recipe (e.g. :func:`litcpt.training.recipe.pretrain_parser`) without importing the command itself."""
    if command not in COMMANDS:
        raise ValueError(f"command: {command!r} is not a litcpt command (one of {', '.join(COMMANDS)})")
    return build_parser(command, load_command(COMMANDS[command]), help_texts=False)
