"""``litcpt rewardbench``: RewardBench-style accuracy of a reward model or a DPO policy (the signature is the CLI)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch

from litcpt.runtime.checkpoint import check_checkpoint_dir, load_config
from litcpt.runtime.strategies import StrategyName

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


def _launch(devices: int, num_nodes: int, accelerator: str, strategy: str) -> tuple[int, int, torch.device, Any]:
    """(rank, world size, device, trainer): one process or an already-initialised process group (trainer None:
    a plain loop), else the ``Trainer.predict`` harness (:func:`litcpt.runtime.inference.predict_trainer`), which
    launches the
    ranks; the models then load on the CPU and the strategy places them (``fsdp``/``fsdp2``: sharded)."""
    dist = torch.distributed
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if on_gpu else torch.device("cpu")
        return rank, world, device, None
    if devices > 1 or num_nodes > 1:
        from litcpt.runtime.inference import predict_trainer

        trainer = predict_trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                                  progress=False)
        return trainer.global_rank, trainer.world_size, torch.device("cuda" if on_gpu else "cpu"), trainer
    if on_gpu:
        return 0, 1, torch.device("cuda", 0), None
    return 0, 1, torch.device("cpu"), None


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


def main(
    checkpoint_dir: Path,
    data: str | Path,
    kind: Kind = "auto",
    ref_checkpoint_dir: Path | None = None,
    beta: float | None = None,
    ref_free: bool = False,
    average_logps: bool | None = None,
    split: str | None = None,
    prompt_style: str | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    truncation: Literal["left", "keep_end"] = "left",
    limit: int | None = None,
    share_prompt: bool = True,
    share_group: int = 16,
    out_dir: Path = Path("out/rewardbench"),
    plot: bool = False,
    devices: int = 1,
    num_nodes: int = 1,
    accelerator: str = "auto",
    strategy: StrategyName = "auto",
    precision: str | None = None,
    convention: ConventionName = "litcpt",
    ref_free_type: RefFreeType | None = None,
    max_prompt_length: int | None = None,
    version: Literal[1, 2] = 1,
) -> dict[str, Any]:
    """RewardBench-style evaluation of a reward model or a DPO policy: accuracy per subset, section scores, Score.

    Args:
        checkpoint_dir: a ``litcpt reward`` checkpoint (classifier), a ``litcpt dpo`` checkpoint (``dpo.json`` names
            its reference and β) or any LitGPT checkpoint scored as a DPO policy (give ``ref_checkpoint_dir`` or
            ``ref_free``), e.g. a hub model converted with ``litgpt download``.
        data: RewardBench rows ``prompt``/``chosen``/``rejected``/``subset``/``id`` (or any format
            ``litcpt.data.Preference`` reads) as ``.jsonl``/``.json``/``.parquet``, a ``save_to_disk`` dir or a hub
            dataset name (``allenai/reward-bench`` uses split ``filtered``). Rows without ``subset`` form one subset
            named after the data.
        kind: ``auto`` (from the checkpoint's files), ``reward`` or ``dpo``.
        ref_checkpoint_dir: DPO reference (default: the one in ``dpo.json``). Must share the policy's tokenizer.
        beta: β of the implicit reward (default: ``dpo.json``'s, else 0.1); scales rewards, never accuracies.
        ref_free: DPO without reference: reward ``β · log π(y|x)``.
        average_logps: length-average the response log-probs instead of summing them (default: ``dpo.json``'s,
            else false; RewardBench's ``avg`` vs ``sum``).
        split: dataset split for hub names and dataset dicts.
        prompt_style: ``raw`` / null (prompts verbatim), ``hh``, ``auto`` (the checkpoint's litgpt prompt style) or a
            litgpt prompt-style name.
        batch_size: pairs per forward pass (``2 x batch_size`` sequences); with ``share_prompt``, rows per forward in
            each of its two phases (prompts, then responses).
        max_length: tokens per sequence (default: the model's block size); longer sequences are truncated.
        truncation: ``left`` (drop the start of the prompt first) or ``keep_end``.
        limit: score only the first ``limit`` pairs (quick checks).
        share_prompt: compute each pair's prompt once and score chosen and rejected from its keys and values (same
            scores up to float rounding; models it cannot run, e.g. sliding-window attention, use plain forwards).
        share_group: with ``share_prompt``: batches whose prompts and responses are sorted and run together (less
            padding); their prompts' keys and values are held in memory at once.
        out_dir: where ``results.json``, ``scores.jsonl`` and ``accuracy.png`` go.
        plot: write ``accuracy.png``, a bar chart of per-subset accuracy.
        devices: processes per node; pairs are sharded over them and every pair is counted once.
        num_nodes: number of nodes.
        accelerator: ``auto``, ``cpu`` or ``gpu``.
        strategy: with several devices: ``auto``/``ddp`` (a full model copy per rank), ``fsdp`` or ``fsdp2`` (the
            models sharded over the ranks, for models that do not fit one device; prompt sharing is off there).
        precision: ``32-true``, ``bf16-mixed``, ``bf16-true``, ``16-mixed``, ``16-true`` (default: bf16-mixed on GPU).
        convention: ``litcpt`` (sequences and rewards as litcpt trains them) or ``rewardbench`` (the official code's
            tokenisation, truncation and rewards: joint prompt+response encoding with the boundary-merge rule, BOS
            always for DPO, log-probs summed with a reference and no β; see ``litcpt.rewardbench.conventions``).
        ref_free_type: reference-free DPO reduction ``sum``, ``avg`` or ``norm`` (``-‖log π‖₂``); default ``avg``
            with ``--convention rewardbench`` (``run_dpo.py``'s), else from ``average_logps``.
        max_prompt_length: ``--convention rewardbench``: tokens a too-long prompt keeps (default 128, at most half of
            ``max_length``); ``max_length`` defaults to 2048 there (or the block size when smaller).
        version: 1 (pairs, sections) or 2 (RewardBench 2: rows with lists ``chosen``/``rejected``, ``num_correct``;
            every completion scored, best-of-N with the tie penalty per subset, Ties by its own formula, Score = mean
            of the six subsets; ``data`` may be ``allenai/reward-bench-2``, split ``test``). Works for reward models
            and, through the implicit reward, DPO models.

    Returns: the ``results.json`` content.
    """
    from litgpt import Tokenizer

    from litcpt.data.preference.pair_tokens import tokenize_pairs
    from litcpt.losses.preference import DEFAULT_BETA
    from litcpt.models.dpo_checks import check_reference_compatible, check_scorable, read_dpo_metadata
    from litcpt.rewardbench.engine import score_tokenized, shared_prompt_bytes
    from litcpt.rewardbench.results import Timer, format_table, summarize, write_outputs
    from litcpt.rewardbench.scorers import ImplicitRewardScorer, RewardModelScorer
    from litcpt.runtime.inference import model_dtype, resolve_precision

    checkpoint_dir = check_checkpoint_dir(checkpoint_dir, field="checkpoint_dir")
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
    if kind == "auto":
        kind = detect_kind(checkpoint_dir, ref_checkpoint_dir=ref_checkpoint_dir, ref_free=ref_free)
    meta = (read_dpo_metadata(checkpoint_dir) or {}) if kind == "dpo" else {}
    if kind == "dpo" and convention == "rewardbench":
        for name, value in (("beta", beta), ("average_logps", average_logps)):
            if value is not None:
                raise ValueError(f"{name}: not used with --convention rewardbench (RewardBench's rewards are summed "
                                 "log-ratios without β; reference-free: --ref_free_type)")
        beta, average_logps = 1.0, False
    if kind == "dpo":
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
    config = load_config(checkpoint_dir)
    tokenizer = Tokenizer(checkpoint_dir)
    if convention == "rewardbench":
        from litcpt.rewardbench.conventions import MAX_LENGTH
        max_length = max_length or min(MAX_LENGTH, config.block_size)
    max_length = max_length or config.block_size
    if max_length > config.block_size:
        raise ValueError(f"max_length={max_length} exceeds the model's block_size {config.block_size}")
    if convention == "rewardbench":
        from litcpt.rewardbench.conventions import MAX_PROMPT_LENGTH

        max_prompt_length = max_prompt_length or min(MAX_PROMPT_LENGTH, max_length // 2)
    if version == 2:
        items, truncated, template = _v2_items(data, split, limit, prompt_style, checkpoint_dir, tokenizer, kind,
                                               convention, max_length, max_prompt_length, truncation)
    else:
        pairs = load_pairs(data, split=split, limit=limit)
        pairs, template = apply_prompt_style(pairs, prompt_style, checkpoint_dir)
        if convention == "rewardbench":
            from litcpt.rewardbench.conventions import tokenize_pairs_rewardbench

            items, stats = tokenize_pairs_rewardbench(pairs, tokenizer, kind=kind, max_length=max_length,
                                                      max_prompt_length=max_prompt_length)
        else:
            items, stats = tokenize_pairs(pairs, tokenizer, max_length=max_length, truncation=truncation)
        truncated = stats.truncated
        if kind == "dpo":
            check_scorable(items, source=str(data))
    if convention == "rewardbench":
        truncation = "rewardbench"  # type: ignore[assignment]

    rank, world_size, device, trainer = _launch(devices, num_nodes, accelerator, strategy)
    precision = resolve_precision(precision, device)
    dtype = model_dtype(precision, device)
    if trainer is not None:
        device = torch.device("cpu")  # the strategy moves (or shards) the models
        # a sharded forward is a collective: every rank must run the same forwards, prompt sharing's vary per call
        share_prompt = share_prompt and strategy not in ("fsdp", "fsdp2")
    defer = trainer is not None and strategy in ("fsdp", "fsdp2")  # no rank ever holds a full copy
    if kind == "reward":
        from litcpt.models.reward import load_reward_model
        from litcpt.runtime.inference import defer_weights

        reward_model = load_reward_model(checkpoint_dir, device=device, dtype=dtype, defer_init=defer)
        if defer:
            defer_weights(reward_model.model, reward_model.weight_sources["model"])
        scorer: Any = RewardModelScorer(reward_model, share_prompt=share_prompt)
    else:
        policy = _load_gpt(checkpoint_dir, "checkpoint_dir", device, dtype, defer)
        reference = (_load_gpt(ref_checkpoint_dir, "ref_checkpoint_dir", device, dtype, defer) if ref_checkpoint_dir
                     else None)
        scorer = ImplicitRewardScorer(policy, reference, beta=beta, average_logps=average_logps,
                                      share_prompt=share_prompt,
                                      reduction=dpo_reduction(convention, reference is not None, ref_free_type,
                                                              average_logps))
    default_subset = Path(str(data).rstrip("/")).name.split(".")[0] or "all"
    pad_id = 0 if tokenizer.eos_id is None else int(tokenizer.eos_id)
    unit = "prompts" if version == 2 else "pairs"
    if rank == 0 and scorer.shares_prompt and version == 1:
        held = shared_prompt_bytes(scorer, items, batch_size=batch_size, share_group=share_group, rank=rank,
                                   world_size=world_size)
        print(f"prompt sharing: {share_group} batches of {batch_size} pairs per call; up to {held / 2**20:.1f} MiB of "
              "prompt keys/values held per call (lower --share_group if memory is short)")
    options = {"batch_size": batch_size, "pad_id": pad_id, "device": device, "precision": precision,
               "default_subset": default_subset, "rank": rank, "world_size": world_size, "progress": True,
               "share_group": share_group, "trainer": trainer}
    with Timer() as timer:
        if version == 2:
            from litcpt.rewardbench.engine_v2 import score_groups, summarize_groups

            scores: Any = score_groups(scorer, items, **options)
        else:
            scores = score_tokenized(scorer, items, **options)
    summary = summarize_groups(scores) if version == 2 else summarize(scores)
    model_type = "Seq. Classifier" if kind == "reward" else ("DPO Ref. Free" if ref_checkpoint_dir is None else "DPO")
    metadata: dict[str, Any] = {
        "model": str(checkpoint_dir), "ref_model": str(ref_checkpoint_dir) if ref_checkpoint_dir else None,
        "model_type": model_type, "chat_template": template, "kind": kind, "data": str(data), "split": split,
        unit: len(scores), f"truncated_{unit}": truncated, "max_length": max_length, "truncation": truncation,
        "batch_size": batch_size, "share_prompt": bool(scorer.shares_prompt), "world_size": world_size,
        "precision": precision,
        "seconds": round(timer.seconds, 3), f"{unit}_per_second": round(len(scores) / max(timer.seconds, 1e-9), 2),
    }
    metadata.update(version=version, convention=convention)
    if convention == "rewardbench":
        metadata["max_prompt_length"] = max_prompt_length
    if kind == "dpo":
        metadata.update(beta=beta, ref_free=ref_checkpoint_dir is None, average_logps=average_logps,
                        reduction=scorer.reduction)
    from litcpt.rewardbench.results import results_json

    results = results_json(summary, metadata)
    if rank == 0:
        xlabel = "best-of-N accuracy (1/k when k completions tie at the top; Ties: its own score)" if version == 2 \
            else None
        paths = write_outputs(out_dir, scores, summary, metadata, plot=plot, xlabel=xlabel,
                              chance=0.25 if version == 2 else 0.5)
        title = f"{model_type}: {checkpoint_dir}" + (f" (reference {ref_checkpoint_dir})" if ref_checkpoint_dir else "")
        print(format_table(summary, title=title, unit=unit))
        print(f"{len(scores)} {unit} in {timer.seconds:.1f} s ({metadata[f'{unit}_per_second']} {unit}/s, "
              f"{world_size} process{'es' if world_size > 1 else ''}); {truncated} truncated to {max_length} "
              "tokens")
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return results
