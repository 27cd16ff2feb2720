"""``litcpt rewardbench``'s run (:func:`evaluate`): what is scored (a reward model, or a DPO policy against its
reference), the rows (v1 pairs or v2 best-of-N groups, templated and tokenised by a convention), the launch (one
process, an initialised process group, or ``Trainer.predict`` ranks), the scoring (:mod:`.engine`,
:mod:`.engine_v2`) and ``results.json`` / ``scores.jsonl`` / the table (:mod:`.results`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from litcpt.runtime.checkpoint import check_checkpoint_dir, load_config
from litcpt.runtime.strategies import StrategyName

__all__ = ["HUB_SPLITS", "ConventionName", "Kind", "RefFreeType", "apply_prompt_style", "detect_kind",
           "dpo_reduction", "evaluate", "load_pairs", "prompt_wrapper"]

Kind = Literal["auto", "reward", "dpo"]
ConventionName = Literal["litcpt", "rewardbench"]
RefFreeType = Literal["norm", "avg", "sum"]
HUB_SPLITS = {"allenai/reward-bench": "filtered", "allenai/reward-bench-2": "test"}
"""Default split of hub datasets whose preference split is not called ``train``."""


def detect_kind(checkpoint_dir: Path, *, ref_checkpoint_dir: Path | None, ref_free: bool) -> str:
    """``reward`` for a ``litcpt reward`` checkpoint, ``dpo`` for a ``litcpt dpo`` one (``dpo.json``) or when a
    reference (or reference-free scoring) is asked for; otherwise a one-line error."""
    from litcpt.models.dpo_checks import DPO_META_FILE
    from litcpt.models.reward import META_FILE

    if (checkpoint_dir / META_FILE).is_file():
        return "reward"
    if (checkpoint_dir / DPO_META_FILE).is_file() or ref_checkpoint_dir is not None or ref_free:
        return "dpo"
    raise ValueError(f"checkpoint_dir: cannot tell what {str(checkpoint_dir)!r} is (no {META_FILE} or "
                     f"{DPO_META_FILE}); pass --kind reward, or --kind dpo with --ref_checkpoint_dir or "
                     "--ref_free true")


def _v2_items(data: str | Path, split: str | None, limit: int | None, prompt_style: str | None, checkpoint_dir: Path,
              tokenizer: Any, kind: str, convention: str, max_length: int, max_prompt_length: int | None,
              truncation: str) -> tuple[list, int, str | None]:
    """RewardBench 2 rows of ``data``, templated and tokenised: (groups, number truncated, template name)."""
    from litcpt.data.preference.best_of_n import load_best_of_n_rows, replace_prompts, tokenize_groups

    rows = _read_source(data, split, limit, load_best_of_n_rows, empty="rows", unit="prompts")
    wrap, template = prompt_wrapper(prompt_style, checkpoint_dir)
    if wrap is not None:
        rows = replace_prompts(rows, wrap)
    if convention == "rewardbench":
        from litcpt.rewardbench.conventions import tokenize_groups_rewardbench

        groups, truncated = tokenize_groups_rewardbench(rows, tokenizer, kind=kind, max_length=max_length,
                                                        max_prompt_length=int(max_prompt_length or 0))
    else:
        if truncation != "left":
            raise ValueError(f"truncation: --version 2 cuts prompts from the left only, got {truncation!r}")
        groups, truncated = tokenize_groups(rows, tokenizer, max_length=max_length)
    if kind == "dpo":
        for group in groups:
            for k, (ids, n) in enumerate(zip(group.rows, group.prompt_lengths)):
                if len(ids) - max(n, 1) < 1:
                    raise ValueError(f"{data}: row {group.index + 1} completion {k}: no response token left to "
                                     f"score after truncation ({n} prompt tokens); raise max_length")
    return groups, truncated, template


def prompt_wrapper(style_name: str | None, checkpoint_dir: Path) -> tuple[Any, str | None]:
    """``(wrap, name)``: ``wrap(prompt, responses) -> (prompt, responses)`` for a prompt style (see
    :func:`apply_prompt_style`), None for raw prompts."""
    from litgpt.prompts import PromptStyle, has_prompt_style, load_prompt_style

    if style_name in (None, "raw"):
        return None, None
    if style_name == "hh":
        from litcpt.data.preference.chat import hh_prompt, hh_response

        def wrap_hh(prompt: str, responses: Any) -> tuple[str, list[str]]:
            return hh_prompt(prompt), [hh_response(r) for r in responses]
        return wrap_hh, "hh"
    if style_name == "auto":
        style = (load_prompt_style(checkpoint_dir) if has_prompt_style(checkpoint_dir)
                 else PromptStyle.from_config(load_config(checkpoint_dir)))
        name = type(style).__name__
    else:
        try:
            style = PromptStyle.from_name(style_name)
        except (KeyError, ValueError):
            raise ValueError(f"prompt_style: {style_name!r} is not raw, hh, auto or a litgpt prompt style "
                             "(see litgpt.prompts.prompt_styles)") from None
        name = style_name

    def wrap(prompt: str, responses: Any) -> tuple[str, list[str]]:
        return style.apply(prompt), list(responses)
    return wrap, name


def apply_prompt_style(pairs: list, style_name: str | None, checkpoint_dir: Path) -> tuple[list, str | None]:
    """Wrap every prompt with a template: ``None``/``raw`` (verbatim), ``hh``
    (``\\n\\nHuman: {prompt}\\n\\nAssistant:``, the format of the bundled HH-RLHF data and of models trained on
    it; responses get a leading space), ``auto`` (litgpt's prompt style of the checkpoint) or a litgpt prompt-style
    name (``llama3``, ``qwen2.5``, ...)."""
    import dataclasses

    wrap, name = prompt_wrapper(style_name, checkpoint_dir)
    if wrap is None:
        return pairs, None
    out = []
    for pair in pairs:
        prompt, (chosen, rejected) = wrap(pair.prompt, (pair.chosen, pair.rejected))
        out.append(dataclasses.replace(pair, prompt=prompt, chosen=chosen, rejected=rejected))
    return out, name


def load_pairs(data: str | Path, *, split: str | None, limit: int | None) -> list:
    """Preference pairs of ``data`` (jsonl / json / parquet / ``save_to_disk`` dir / hub name), with errors naming
    the file, line and field."""
    from litcpt.data.preference.pair_loading import load_preference_pairs

    return _read_source(data, split, limit, load_preference_pairs, empty="preference pairs", unit="pairs")


def _read_source(data: str | Path, split: str | None, limit: int | None, loader: Any, *, empty: str,
                 unit: str) -> list:
    """``loader(data, split=...)`` (the hub split RewardBench uses when ``split`` is None), first ``limit`` rows;
    one-line errors for a missing file, no rows, or a bad ``limit``."""
    source = str(data)
    split = HUB_SPLITS.get(source) if split is None else split
    if not Path(source).exists() and source.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")):
        raise FileNotFoundError(f"data: {source!r} does not exist")
    rows = loader(source, split=split)
    if not rows:
        raise ValueError(f"data: {source!r} has no {empty} (empty file?)")
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit: expected a positive number of {unit} or null, got {limit}")
        rows = rows[:limit]
    return rows


def dpo_reduction(convention: str, has_reference: bool, ref_free_type: str | None,
                  average_logps: bool | None) -> str:
    """How response log-probs are reduced: RewardBench sums whenever a reference is present and uses
    ``ref_free_type`` (default ``avg``, ``run_dpo.py``'s) without one; litcpt follows ``average_logps``, and
    ``ref_free_type`` when reference-free."""
    if convention == "rewardbench":
        return "sum" if has_reference else (ref_free_type or "avg")
    if ref_free_type is not None and not has_reference:
        return ref_free_type
    return "avg" if average_logps else "sum"


def _load_gpt(checkpoint_dir: Path, field: str, device: torch.device, dtype: torch.dtype,
              defer: bool = False) -> torch.nn.Module:
    """The GPT of ``checkpoint_dir``, frozen; ``defer``: on the meta device, filled after sharding (fsdp/fsdp2)."""
    from litcpt.models.base import build_gpt

    if defer:
        from litcpt.runtime.inference import defer_weights
        from litcpt.runtime.materialize import CheckpointWeights, meta_gpt

        model = meta_gpt(load_config(checkpoint_dir)).to(dtype=dtype)
        defer_weights(model, CheckpointWeights(checkpoint_dir, model, field=field))
        return model.eval().requires_grad_(False)
    model = build_gpt(load_config(checkpoint_dir), checkpoint_dir=checkpoint_dir, field=field)
    return model.eval().requires_grad_(False).to(device=device, dtype=dtype)


def check_options(*, kind: str, batch_size: int, share_group: int, version: int, convention: str,
                  ref_free_type: str | None) -> None:
    """One-line errors for option values outside their choices (the Python API takes any value)."""
    if kind not in ("auto", "reward", "dpo"):
        raise ValueError(f"kind: expected auto, reward or dpo, got {kind!r}")
    for name, value in (("batch_size", batch_size), ("share_group", share_group)):
        if isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value}")
    if version not in (1, 2):
        raise ValueError(f"version: expected 1 or 2, got {version!r}")
    if convention not in ("litcpt", "rewardbench"):
        raise ValueError(f"convention: expected litcpt or rewardbench, got {convention!r}")
    if ref_free_type is not None and ref_free_type not in ("norm", "avg", "sum"):
        raise ValueError(f"ref_free_type: expected norm, avg or sum, got {ref_free_type!r}")


def resolve_model(checkpoint_dir: Path, *, kind: str, ref_checkpoint_dir: Path | None, ref_free: bool,
                  beta: float | None, average_logps: bool | None, convention: str
                  ) -> tuple[str, Path | None, float | None, bool | None]:
    """``(kind, reference, beta, average_logps)`` of what is scored: the kind (``auto``: :func:`detect_kind`); for a
    DPO policy its reference (given, else ``dpo.json``'s; none when reference-free), β and length averaging (given,
    else ``dpo.json``'s, else the defaults; ``convention: rewardbench`` fixes them: 1 and summed)."""
    from litcpt.losses.preference import DEFAULT_BETA
    from litcpt.models.dpo_checks import check_reference_compatible, read_dpo_metadata

    if kind == "auto":
        kind = detect_kind(checkpoint_dir, ref_checkpoint_dir=ref_checkpoint_dir, ref_free=ref_free)
    if kind != "dpo":
        return kind, ref_checkpoint_dir, beta, average_logps
    meta = read_dpo_metadata(checkpoint_dir) or {}
    if convention == "rewardbench":
        for name, value in (("beta", beta), ("average_logps", average_logps)):
            if value is not None:
                raise ValueError(f"{name}: not used with --convention rewardbench (RewardBench's rewards are summed "
                                 "log-ratios without β; reference-free: --ref_free_type)")
        beta, average_logps = 1.0, False
    if beta is None:
        beta = float(meta.get("beta", DEFAULT_BETA))
    if average_logps is None:
        average_logps = bool(meta.get("average_logps", False))
    if ref_free or (ref_checkpoint_dir is None and meta.get("reference_free")):
        ref_checkpoint_dir = None  # asked for, or a reference-free loss (SimPO) trained it: dpo.json says so
    elif ref_checkpoint_dir is None:
        if not meta.get("reference_checkpoint_dir"):
            raise ValueError(f"ref_checkpoint_dir: {str(checkpoint_dir)!r} has no dpo.json naming its reference; "
                             "pass --ref_checkpoint_dir or --ref_free true")
        ref_checkpoint_dir = Path(meta["reference_checkpoint_dir"])
    if ref_checkpoint_dir is not None:
        ref_checkpoint_dir = check_checkpoint_dir(ref_checkpoint_dir, field="ref_checkpoint_dir")
        check_reference_compatible(checkpoint_dir, ref_checkpoint_dir)
    return kind, ref_checkpoint_dir, beta, average_logps


def sequence_lengths(block_size: int, convention: str, max_length: int | None,
                     max_prompt_length: int | None) -> tuple[int, int | None]:
    """``(max_length, max_prompt_length)``: the model's block size by default (``convention: rewardbench``: at most
    RewardBench's 2048, and a prompt keeps at most 128 tokens, at most half of ``max_length``)."""
    if convention == "rewardbench":
        from litcpt.rewardbench.conventions import MAX_LENGTH

        max_length = max_length or min(MAX_LENGTH, block_size)
    max_length = max_length or block_size
    if max_length > block_size:
        raise ValueError(f"max_length={max_length} exceeds the model's block_size {block_size}")
    if convention == "rewardbench":
        from litcpt.rewardbench.conventions import MAX_PROMPT_LENGTH

        max_prompt_length = max_prompt_length or min(MAX_PROMPT_LENGTH, max_length // 2)
    return max_length, max_prompt_length


def tokenize_items(data: str | Path, *, version: int, split: str | None, limit: int | None, prompt_style: str | None,
                   checkpoint_dir: Path, tokenizer: Any, kind: str, convention: str, max_length: int,
                   max_prompt_length: int | None, truncation: str) -> tuple[list, int, str | None]:
    """The rows of ``data`` to score, templated and tokenised: ``(items, number truncated, template name)``; v1
    pairs (:func:`load_pairs`) or v2 best-of-N groups, by ``convention``."""
    from litcpt.data.preference.pair_tokens import tokenize_pairs
    from litcpt.models.dpo_checks import check_scorable

    if version == 2:
        return _v2_items(data, split, limit, prompt_style, checkpoint_dir, tokenizer, kind, convention, max_length,
                         max_prompt_length, truncation)
    pairs = load_pairs(data, split=split, limit=limit)
    pairs, template = apply_prompt_style(pairs, prompt_style, checkpoint_dir)
    if convention == "rewardbench":
        from litcpt.rewardbench.conventions import tokenize_pairs_rewardbench

        items, stats = tokenize_pairs_rewardbench(pairs, tokenizer, kind=kind, max_length=max_length,
                                                  max_prompt_length=max_prompt_length)
    else:
        items, stats = tokenize_pairs(pairs, tokenizer, max_length=max_length, truncation=truncation)
    if kind == "dpo":
        check_scorable(items, source=str(data))
    return items, stats.truncated, template


def build_scorer(kind: str, checkpoint_dir: Path, ref_checkpoint_dir: Path | None, *, device: torch.device,
                 dtype: torch.dtype, defer: bool, share_prompt: bool, beta: float | None, average_logps: bool | None,
                 convention: str, ref_free_type: str | None) -> Any:
    """The scorer: a reward model's (:class:`~litcpt.rewardbench.scorers.RewardModelScorer`) or a DPO policy's
    implicit reward (:class:`~litcpt.rewardbench.scorers.ImplicitRewardScorer`); ``defer``: the weights on the meta
    device, filled after sharding."""
    from litcpt.rewardbench.scorers import ImplicitRewardScorer, RewardModelScorer

    if kind == "reward":
        from litcpt.models.reward import load_reward_model
        from litcpt.runtime.inference import defer_weights

        reward_model = load_reward_model(checkpoint_dir, device=device, dtype=dtype, defer_init=defer)
        if defer:
            defer_weights(reward_model.model, reward_model.weight_sources["model"])
        return RewardModelScorer(reward_model, share_prompt=share_prompt)
    policy = _load_gpt(checkpoint_dir, "checkpoint_dir", device, dtype, defer)
    reference = (_load_gpt(ref_checkpoint_dir, "ref_checkpoint_dir", device, dtype, defer) if ref_checkpoint_dir
                 else None)
    return ImplicitRewardScorer(policy, reference, beta=beta, average_logps=average_logps, share_prompt=share_prompt,
                                reduction=dpo_reduction(convention, reference is not None, ref_free_type,
                                                        average_logps))


def _model_type(kind: str, ref_checkpoint_dir: Path | None) -> str:
    return "Seq. Classifier" if kind == "reward" else ("DPO Ref. Free" if ref_checkpoint_dir is None else "DPO")


def _metadata(*, checkpoint_dir: Path, ref_checkpoint_dir: Path | None, kind: str, template: str | None,
              data: str | Path, split: str | None, unit: str, scores: list, truncated: int, max_length: int,
              truncation: str, batch_size: int, scorer: Any, world_size: int, precision: str, seconds: float,
              version: int, convention: str, max_prompt_length: int | None, beta: float | None,
              average_logps: bool | None) -> dict[str, Any]:
    """The ``metadata`` of ``results.json`` (its keys in this order)."""
    metadata: dict[str, Any] = {
        "model": str(checkpoint_dir), "ref_model": str(ref_checkpoint_dir) if ref_checkpoint_dir else None,
        "model_type": _model_type(kind, ref_checkpoint_dir), "chat_template": template, "kind": kind,
        "data": str(data), "split": split, unit: len(scores), f"truncated_{unit}": truncated, "max_length": max_length,
        "truncation": truncation, "batch_size": batch_size, "share_prompt": bool(scorer.shares_prompt),
        "world_size": world_size, "precision": precision,
        "seconds": round(seconds, 3), f"{unit}_per_second": round(len(scores) / max(seconds, 1e-9), 2),
    }
    metadata.update(version=version, convention=convention)
    if convention == "rewardbench":
        metadata["max_prompt_length"] = max_prompt_length
    if kind == "dpo":
        metadata.update(beta=beta, ref_free=ref_checkpoint_dir is None, average_logps=average_logps,
                        reduction=scorer.reduction)
    return metadata


def _write_and_print(out_dir: Path, scores: list, summary: Any, metadata: dict[str, Any], *, plot: bool,
                     version: int, unit: str, seconds: float, truncated: int, max_length: int) -> None:
    """Rank 0: ``results.json``, ``scores.jsonl`` (and ``accuracy.png``), then the table and the timing."""
    from litcpt.rewardbench.results import format_table, write_outputs

    xlabel = "best-of-N accuracy (1/k when k completions tie at the top; Ties: its own score)" if version == 2 \
        else None
    paths = write_outputs(out_dir, scores, summary, metadata, plot=plot, xlabel=xlabel,
                          chance=0.25 if version == 2 else 0.5)
    reference = metadata["ref_model"]
    title = f"{metadata['model_type']}: {metadata['model']}" + (f" (reference {reference})" if reference else "")
    print(format_table(summary, title=title, unit=unit))
    world_size = metadata["world_size"]
    print(f"{len(scores)} {unit} in {seconds:.1f} s ({metadata[f'{unit}_per_second']} {unit}/s, "
          f"{world_size} process{'es' if world_size > 1 else ''}); {truncated} truncated to {max_length} "
          "tokens")
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def evaluate(
    *,
    checkpoint_dir: Path,
    data: str | Path,
    kind: Kind,
    ref_checkpoint_dir: Path | None,
    beta: float | None,
    ref_free: bool,
    average_logps: bool | None,
    split: str | None,
    prompt_style: str | None,
    batch_size: int,
    max_length: int | None,
    truncation: Literal["left", "keep_end"],
    limit: int | None,
    share_prompt: bool,
    share_group: int,
    out_dir: Path,
    plot: bool,
    devices: int,
    num_nodes: int,
    accelerator: str,
    strategy: StrategyName,
    precision: str | None,
    convention: ConventionName,
    ref_free_type: RefFreeType | None,
    max_prompt_length: int | None,
    version: Literal[1, 2],
) -> dict[str, Any]:
    """RewardBench-style evaluation of a reward model or a DPO policy: accuracy per subset, section scores, Score.

    The arguments are ``litcpt rewardbench``'s (:func:`litcpt.commands.rewardbench.main`: its signature holds their
    defaults, its docstring what each means); every one is given, by name.

    Returns: the ``results.json`` content.
    """
    from litgpt import Tokenizer

    from litcpt.rewardbench.results import Timer, results_json, summarize
    from litcpt.runtime.inference import launch_ranks, model_dtype, resolve_precision

    checkpoint_dir = check_checkpoint_dir(checkpoint_dir, field="checkpoint_dir")
    check_options(kind=kind, batch_size=batch_size, share_group=share_group, version=version, convention=convention,
                  ref_free_type=ref_free_type)
    kind, ref_checkpoint_dir, beta, average_logps = resolve_model(
        checkpoint_dir, kind=kind, ref_checkpoint_dir=ref_checkpoint_dir, ref_free=ref_free, beta=beta,
        average_logps=average_logps, convention=convention)
    config = load_config(checkpoint_dir)
    tokenizer = Tokenizer(checkpoint_dir)
    max_length, max_prompt_length = sequence_lengths(config.block_size, convention, max_length, max_prompt_length)
    items, truncated, template = tokenize_items(
        data, version=version, split=split, limit=limit, prompt_style=prompt_style, checkpoint_dir=checkpoint_dir,
        tokenizer=tokenizer, kind=kind, convention=convention, max_length=max_length,
        max_prompt_length=max_prompt_length, truncation=truncation)
    if convention == "rewardbench":
        truncation = "rewardbench"  # type: ignore[assignment]

    rank, world_size, device, trainer = launch_ranks(devices, num_nodes, accelerator, strategy)
    precision = resolve_precision(precision, device)
    dtype = model_dtype(precision, device)
    if trainer is not None:
        device = torch.device("cpu")  # the strategy moves (or shards) the models
        # a sharded forward is a collective: every rank must run the same forwards, prompt sharing's vary per call
        share_prompt = share_prompt and strategy not in ("fsdp", "fsdp2")
    defer = trainer is not None and strategy in ("fsdp", "fsdp2")  # no rank ever holds a full copy
    scorer = build_scorer(kind, checkpoint_dir, ref_checkpoint_dir, device=device, dtype=dtype, defer=defer,
                          share_prompt=share_prompt, beta=beta, average_logps=average_logps, convention=convention,
                          ref_free_type=ref_free_type)
    unit = "prompts" if version == 2 else "pairs"
    options = {"batch_size": batch_size, "pad_id": 0 if tokenizer.eos_id is None else int(tokenizer.eos_id),
               "device": device, "precision": precision,
               "default_subset": Path(str(data).rstrip("/")).name.split(".")[0] or "all", "rank": rank,
               "world_size": world_size, "progress": True, "share_group": share_group, "trainer": trainer}
    _announce_prompt_sharing(scorer, items, version=version, options=options)
    with Timer() as timer:
        scores = _score(scorer, items, version=version, options=options)
    if version == 2:
        from litcpt.rewardbench.engine_v2 import summarize_groups

        summary = summarize_groups(scores)
    else:
        summary = summarize(scores)
    metadata = _metadata(
        checkpoint_dir=checkpoint_dir, ref_checkpoint_dir=ref_checkpoint_dir, kind=kind, template=template, data=data,
        split=split, unit=unit, scores=scores, truncated=truncated, max_length=max_length, truncation=truncation,
        batch_size=batch_size, scorer=scorer, world_size=world_size, precision=precision, seconds=timer.seconds,
        version=version, convention=convention, max_prompt_length=max_prompt_length, beta=beta,
        average_logps=average_logps)
    results = results_json(summary, metadata)
    if rank == 0:
        _write_and_print(out_dir, scores, summary, metadata, plot=plot, version=version, unit=unit,
                         seconds=timer.seconds, truncated=truncated, max_length=max_length)
    return results


def _score(scorer: Any, items: list, *, version: int, options: dict[str, Any]) -> list:
    """Every item scored once (v1: pairs, :func:`~litcpt.rewardbench.engine.score_tokenized`; v2: groups,
    :func:`~litcpt.rewardbench.engine_v2.score_groups`)."""
    if version == 2:
        from litcpt.rewardbench.engine_v2 import score_groups

        return score_groups(scorer, items, **options)
    from litcpt.rewardbench.engine import score_tokenized

    return score_tokenized(scorer, items, **options)


def _announce_prompt_sharing(scorer: Any, items: list, *, version: int, options: dict[str, Any]) -> None:
    """Rank 0, v1 pairs with prompt sharing: how much memory the prompts' keys and values take per call."""
    from litcpt.rewardbench.engine import shared_prompt_bytes

    if options["rank"] == 0 and scorer.shares_prompt and version == 1:
        batch_size, share_group = options["batch_size"], options["share_group"]
        held = shared_prompt_bytes(scorer, items, batch_size=batch_size, share_group=share_group,
                                   rank=options["rank"], world_size=options["world_size"])
        print(f"prompt sharing: {share_group} batches of {batch_size} pairs per call; up to {held / 2**20:.1f} MiB of "
              "prompt keys/values held per call (lower --share_group if memory is short)")
