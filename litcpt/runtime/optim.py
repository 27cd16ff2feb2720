"""The optimizer a run trains with, from what a recipe gives: a jsonargparse callable, a name or a LitGPT-style dict."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Union

import torch

OptimizerCallable = Callable[[Iterable], torch.optim.Optimizer]
OptimizerArg = Union[OptimizerCallable, str]
"""How commands take the optimizer: ``AdamW``, or ``{class_path: torch.optim.AdamW, init_args: {lr: ...}}`` in a
recipe. jsonargparse turns either into a callable ``params -> Optimizer``, so every init arg can be overridden on the
command line (``--optimizer.init_args.lr 1e-4``). The Python API also accepts a LitGPT-style dict."""


def make_optimizer(spec: Any, params: Iterable, **extra: Any) -> torch.optim.Optimizer:
    """Build the optimizer from a callable (jsonargparse), a name (``"AdamW"``) or a ``{class_path, init_args}``
    dict (LitGPT style); ``extra`` (e.g. ``fused=True``) is applied where the optimizer accepts it."""
    from litgpt.utils import instantiate_torch_optimizer

    if callable(spec) and not isinstance(spec, (str, dict)):
        params = list(params)
        return _apply_extra(spec(params), params, extra)
    return instantiate_torch_optimizer(spec, params, **extra)


def _apply_extra(optimizer: torch.optim.Optimizer, params: list, extra: dict[str, Any]) -> torch.optim.Optimizer:
    """Rebuild ``optimizer`` (made by a jsonargparse callable) with the ``extra`` options it accepts and left unset
    (``None`` in its defaults, e.g. AdamW's ``fused``); an option the recipe set explicitly is kept as given."""
    import inspect

    accepted = set(inspect.signature(type(optimizer)).parameters)
    missing = {k: v for k, v in extra.items() if k in accepted and optimizer.defaults.get(k, None) is None}
    if not missing:
        return optimizer
    kwargs = {k: v for k, v in optimizer.defaults.items() if k in accepted}
    kwargs.update(missing)
    if missing.get("fused"):
        kwargs["foreach"] = None  # fused and foreach are exclusive
    return type(optimizer)(params, **kwargs)


def optimizer_lr(spec: Any) -> float | None:
    """The (peak) learning rate an optimizer spec gives, read from an optimizer built on a dummy parameter."""
    import copy

    try:
        optimizer = make_optimizer(copy.deepcopy(spec), [torch.nn.Parameter(torch.zeros(1))])
    except Exception:
        return None
    lr = optimizer.param_groups[0].get("lr")
    return float(lr) if isinstance(lr, (int, float)) or torch.is_tensor(lr) else None


_TORCH_KEYS = {"learning rate": "lr", "epsilon": "eps", "beta": "betas", "weight_decay": "weight_decay",
               "momentum": "momentum"}


def check_optimizer(spec: Any, field: str = "optimizer") -> None:
    """Build the optimizer on a dummy parameter: torch's refusal of a value (``Invalid learning rate: -0.001``)
    becomes a one-line ``ValueError`` naming the key (``optimizer.init_args.lr``), before any model is loaded."""
    import copy

    try:
        make_optimizer(copy.deepcopy(spec), [torch.nn.Parameter(torch.zeros(1))])
    except ValueError as err:
        message = " ".join(str(err).split())
        key = next((k for words, k in _TORCH_KEYS.items() if words in message.lower()), None)
        where = f"{field}.init_args.{key}" if key else field
        raise ValueError(f"{where}: {message}") from None
