"""``litcpt <command> --config recipe.yaml [--key value ...]``.

Each command is one function whose typed signature is both its CLI and its recipe schema (as in LitGPT): every key
of a recipe can be overridden on the command line (``--train.max_tokens 2e6``), ``--help`` lists them and
``--print_config`` prints the resolved recipe. Bad keys and values end in a one-line error naming the key.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from litcpt.cli.parser import _DESCRIPTIONS, COMMANDS, build_parser, load_command


def _positional_to_flags(args: list[str], key: str) -> list[str]:
    """``a b --x 1`` -> ``--key+ a --key+ b --x 1``: leading bare arguments fill the list parameter ``key``
    (commands opt in with a module-level ``cli_positional = "<parameter>"``, e.g. ``litcpt report RUN_DIR ...``)."""
    out, i = [], 0
    while i < len(args) and not args[i].startswith("-"):
        out += [f"--{key}+", args[i]]
        i += 1
    return out + args[i:]


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: litcpt <command> [--config RECIPE.yaml] [--key value ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {_DESCRIPTIONS.get(name, '')}" for name in COMMANDS]
    lines += ["", "`litcpt <command> --help` lists every key of that command."]
    return "\n".join(lines)


def _fail_in_one_line(command: str, call: Callable[[], Any], *, exit_code: int, suffix: str = "") -> None:
    """Run ``call``; a ``ValueError``/``FileNotFoundError`` (bad input, by litcpt's convention) or a full disk
    (:class:`~litcpt.runtime.atomic.NoSpaceError`) becomes one line on stderr and exit status ``exit_code``
    (``LITCPT_DEBUG=1`` re-raises it with its traceback)."""
    from litcpt.runtime.atomic import NoSpaceError

    try:
        call()
    except (ValueError, FileNotFoundError, NoSpaceError) as err:
        if os.environ.get("LITCPT_DEBUG"):
            raise
        from litcpt.cli.errors import error_line

        print(f"litcpt {command}: error: {error_line(err)}{suffix}", file=sys.stderr)
        raise SystemExit(exit_code) from None


def _trains(function: Callable) -> bool:
    """A command that trains (it has ``resume``): its ``config.yaml`` is written when the run starts."""
    import inspect

    return "resume" in inspect.signature(function).parameters


def _check_before_run(function: Callable, kwargs: dict) -> None:
    """The checks every command gets before any work: its output paths (``out_dir`` a directory that can be written,
    ``out_file`` a file; a training command's ``out_dir`` holds no earlier run unless it resumes) and the optimizer's
    arguments (a negative ``lr`` names the key)."""
    from litcpt.runtime.outputs import check_no_previous_run, check_out_dir, check_out_file

    if kwargs.get("out_dir") is not None:
        check_out_dir(kwargs["out_dir"])
        if _trains(function):
            check_no_previous_run(kwargs["out_dir"], kwargs.get("resume"))
    if kwargs.get("out_file") is not None:
        check_out_file(kwargs["out_file"])
    if kwargs.get("optimizer") is not None:
        from litcpt.runtime.optim import check_optimizer

        check_optimizer(kwargs["optimizer"])


def _run(function: Callable, kwargs: dict, parser, cfg) -> None:
    """Run the command. ``config.yaml`` (the resolved recipe) goes to ``out_dir``: for a command that trains, when the
    run starts (after every check: a refused run or a dry run leaves an existing ``out_dir`` untouched); for the
    others, before the command runs."""
    from litcpt.runtime.ranks import is_global_zero

    out_dir = cfg.get("out_dir") if hasattr(cfg, "get") else None
    if out_dir is None:
        function(**kwargs)
        return
    text = parser.dump(cfg, skip_validation=True)
    if _trains(function):
        from litcpt.runtime.outputs import pending_config

        with pending_config(Path(str(out_dir)), text):
            function(**kwargs)
        return
    if is_global_zero():
        from litcpt.runtime.atomic import write_text

        write_text(Path(str(out_dir)) / "config.yaml", text)
    function(**kwargs)


def _validate(command: str, function: Callable, kwargs: dict, args: list[str]) -> None:
    """Run the command's ``cli_validate(**kwargs)`` hook, if its module has one, before ``config.yaml`` is written
    (e.g. ``litcpt anneal`` refuses an ``out_dir`` that holds another run, whose config.yaml must stay untouched).
    A refusal is an argument error: one line, exit status 2."""
    hook = getattr(sys.modules[function.__module__], "cli_validate", None)
    if hook is None:
        return
    _fail_in_one_line(command, lambda: hook(**kwargs), exit_code=2, suffix=f" (arguments: {' '.join(args)[:300]})")


def _answer_from_cache(command: str, args: list[str], cached: dict) -> None:
    """Exit with the cached help or defaults (``--print_config`` alone), or with a one-line error for an unknown key
    or a plainly wrong simple value; return if none applies (or the part needed is not cached)."""
    from litcpt.cli import help_cache as cli_cache

    flags = _positional_to_flags(args, cached["positional"]) if cached.get("positional") else args
    if cli_cache.wants_help(flags):
        if cached.get("help") is None:
            return
        print(cached["help"], end="")
        raise SystemExit(0)
    if flags == ["--print_config"] and cached.get("print_config") is not None:
        print(cached["print_config"], end="")
        raise SystemExit(0)
    from litcpt.cli import recipe_keys

    problem = (cli_cache.unknown_key(flags, cached) or recipe_keys.problem(flags, cached)
               or cli_cache.bad_value(flags, cached))
    if problem:
        print(f"litcpt {command}: error: {problem} (arguments: {' '.join(args)[:300]})", file=sys.stderr)
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        raise SystemExit(0 if argv else 2)
    command, args = argv[0].replace("_", "-"), argv[1:]
    command = command if command in COMMANDS else command.replace("-", "_")
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(argv[0].replace("_", "-"), list(COMMANDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"litcpt: unknown command {argv[0]!r}{hint}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    from litcpt.cli import help_cache as cli_cache
    cached = cli_cache.load(command)  # --help, unknown keys... answered without importing torch/Lightning/LitGPT
    if cached is not None:
        _answer_from_cache(command, args, cached)
    function = load_command(COMMANDS[command])
    positional = getattr(sys.modules[function.__module__], "cli_positional", None)
    if positional:
        args = _positional_to_flags(args, positional)
    store = cached is None or cached.get("partial")
    # the help texts only where they are shown: --help, --print_config, and the answers stored for the next call
    shows_help = cli_cache.wants_help(args) or any(a.startswith("--print_config") or a.endswith(".help") for a in args)
    parser = build_parser(command, function, help_texts=bool(store or shows_help))
    if store:
        cli_cache.store(command, parser, positional)  # the next call answers from it
    from jsonargparse import ArgumentError

    cfg = None
    try:
        cfg = parser.parse_args(args)
        init = parser.instantiate_classes(cfg)
    except Exception as err:
        if os.environ.get("LITCPT_DEBUG"):
            raise
        from litcpt.cli.answers import describe
        from litcpt.cli.errors import error_line

        what = (error_line(err, cfg) if isinstance(err, (ArgumentError, ValueError, TypeError))
                else f"{type(err).__name__}: {err}")
        if isinstance(err, ArgumentError):  # the same line as from the cache: the key, and the closest one
            from litcpt.cli import recipe_keys

            described = describe(parser)
            what = cli_cache.unknown_key(args, described) or recipe_keys.problem(args, described) or what
        print(f"litcpt {command}: error: {what} (arguments: {' '.join(args)[:300]})", file=sys.stderr)
        raise SystemExit(2) from None
    kwargs = {k: v for k, v in init.items() if k != "config"}
    _validate(command, function, kwargs, args)  # before config.yaml: a refused run leaves no trace in out_dir
    _fail_in_one_line(command, lambda: _check_before_run(function, kwargs), exit_code=2,
                      suffix=f" (arguments: {' '.join(args)[:300]})")
    try:
        _fail_in_one_line(command, lambda: _run(function, kwargs, parser, cfg), exit_code=1)
    except SystemExit:  # e.g. pre-empted (litcpt.runtime.preemption): every rank stops at the same step
        _end_process_group()
        raise
    _end_process_group()


def _end_process_group() -> None:
    """Tear down the job's process group once the command is done: left to interpreter exit, gloo's threads can abort
    a finished run ("terminate called without an active exception", exit status -6 instead of 0)."""
    dist = sys.modules.get("torch.distributed")  # never import torch just for this
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
