"""``litcpt generate-replay``'s run: sample a corpus from a LitGPT checkpoint into a litcpt token file, in shards.

The corpus of ``max_tokens`` tokens is cut into shards of ``shard_tokens``
(:func:`litcpt.generation.shards.shard_quotas`); shard ``k`` is sampled from its own seed
(:func:`litcpt.generation.sample.shard_seed`) by rank ``k % world size``, so the same arguments give the same corpus
on 1 or N devices, and a killed run keeps its finished shards and makes only the others. Arguments, the checkpoint,
the tokenizer, the prompts and ``out_dir`` are checked before the model is loaded. With several devices, Lightning's
``Trainer.predict`` launches the ranks (:func:`litcpt.runtime.inference.launch_ranks`, as RewardBench); each rank
writes its own shards and rank 0 joins them (:func:`litcpt.generation.shards.assemble`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from litcpt.generation.sample import Sampling, StartTokens, generate_shard, shard_seed
from litcpt.generation.shards import MANIFEST, PLAN, assemble, is_done, shard_dir, shard_quotas, write_shard
from litcpt.runtime.atomic import write_json

__all__ = ["check_arguments", "cli_validate", "read_prompts", "run"]


def check_arguments(*, max_tokens: int, temperature: float, top_k: int | None, top_p: float, min_new_tokens: int,
                    max_new_tokens: int | None, batch_size: int, shard_tokens: int, repetition_ngram: int,
                    repetition_threshold: float, devices: int, num_nodes: int) -> None:
    """One-line errors for values out of range (what the CLI's types do not check)."""
    checks = [
        ("max_tokens", max_tokens >= 2, "an integer >= 2"),
        ("temperature", temperature > 0, "> 0 (greedy decoding would give one sample per prompt)"),
        ("top_k", top_k is None or top_k >= 1, "null or an integer >= 1"),
        ("top_p", 0 < top_p <= 1, "in (0, 1]"),
        ("min_new_tokens", min_new_tokens >= 1, "an integer >= 1"),
        ("max_new_tokens", max_new_tokens is None or max_new_tokens >= min_new_tokens,
         f"null or an integer >= min_new_tokens ({min_new_tokens})"),
        ("batch_size", batch_size >= 1, "an integer >= 1"),
        ("shard_tokens", shard_tokens >= 2, "an integer >= 2"),
        ("repetition_ngram", repetition_ngram >= 1, "an integer >= 1"),
        ("repetition_threshold", 0 <= repetition_threshold <= 1, "in [0, 1] (1 keeps every sample)"),
        ("devices", devices >= 1, "an integer >= 1"),
        ("num_nodes", num_nodes >= 1, "an integer >= 1"),
    ]
    values = locals()
    for name, ok, expected in checks:
        if not ok:
            raise ValueError(f"{name}: expected {expected}, got {values[name]!r}")


def read_prompts(path: Path | None, tokenizer: Any) -> tuple[list[list[int]], dict[str, Any] | None]:
    """The token ids of each non-blank line of ``path`` (``[[]]``: no file, every sample starts from BOS only) and
    the file's description for the manifest."""
    if path is None:
        return [[]], None
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"prompts: cannot read {str(path)!r} as UTF-8 text ({type(err).__name__}: {err})") from None
    prompts = [tokenizer.encode(line, bos=False).tolist() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompts: {str(path)!r} has no non-blank line (expected one prompt per line)")
    return prompts, {"file": str(path), "sha256": hashlib.sha256(raw).hexdigest(), "prompts": len(prompts)}


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fp:
        while chunk := fp.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _check_out_dir(out_dir: Path, plan: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a finished corpus made with ``plan`` (None: there is work to do); an error if ``out_dir``
    holds anything else (another corpus, a file)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir: {str(out_dir)!r} is a file (expected a directory for the corpus)")
    for name in (MANIFEST, PLAN):
        path = out_dir / name
        if not path.is_file():
            continue
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"out_dir: {path} is unreadable ({err}); delete {str(out_dir)!r} to start again") \
                from None
        differ = sorted(k for k in plan if saved.get(k) != plan[k])  # a partial plan: only its keys
        if differ:
            raise ValueError(f"out_dir: {str(out_dir)!r} holds a corpus generated with other arguments "
                             f"({', '.join(differ)} differ, see {path}); give another --out_dir or delete it to "
                             "start again")
        if name == MANIFEST:
            return saved
    if out_dir.is_dir() and not (out_dir / PLAN).is_file() and any(p.name != "config.yaml" for p in out_dir.iterdir()):
        raise ValueError(f"out_dir: {str(out_dir)!r} is not empty and holds no generate-replay plan.json (expected "
                         "a new or empty directory, or one of an earlier generate-replay run to resume)")
    return None


@dataclass
class _ShardDone:
    index: int
    stats: dict[str, Any]


def _summary(manifest: dict[str, Any], *, resumed: int, seconds: float, generated: int, out_dir: Path) -> str:
    d = manifest["dropped"]
    s = manifest["sampling"]
    rate = generated / seconds if seconds > 0 else 0.0
    return (f"generate-replay: {manifest['tokens']:,} tokens, {manifest['documents']:,} documents in "
            f"{len(manifest['shards'])} shards ({resumed} from an earlier run) in {seconds:.1f} s "
            f"({rate:,.0f} generated tok/s); dropped {d['repetitive']} repetitive (share of repeated "
            f"{s['repetition_ngram']}-grams > {s['repetition_threshold']:g}), {d['duplicate']} duplicate, "
            f"{d['short']} short -> {out_dir}")


def _prepare(*, checkpoint_dir: Path, prompts: Path | None, sampling: dict[str, Any], max_tokens: int,
             shard_tokens: int, seed: int, precision: str | None, device: torch.device) -> dict[str, Any]:
    """Everything checked and known before the model loads: config, tokenizer, prompts, start tokens and the plan."""
    from litcpt.data.text.token_files import tokenizer_fingerprint
    from litcpt.runtime.checkpoint import check_checkpoint_dir, load_config
    from litcpt.runtime.inference import resolve_precision
    from litcpt.runtime.tokenizers import load_checked_tokenizer

    checkpoint_dir = check_checkpoint_dir(checkpoint_dir, field="checkpoint_dir")
    config = load_config(checkpoint_dir)
    tokenizer = load_checked_tokenizer(checkpoint_dir, config, field="checkpoint_dir")
    if tokenizer.eos_id is None:
        raise ValueError(f"checkpoint_dir: the tokenizer in {str(checkpoint_dir)!r} has no EOS token (needed to end "
                         "and separate samples)")
    prompt_ids, prompts_info = read_prompts(prompts, tokenizer)
    room = config.block_size - 1 - max(len(p) for p in prompt_ids)
    max_new = sampling["max_new_tokens"] if sampling["max_new_tokens"] is not None else room
    if max_new > room or sampling["min_new_tokens"] > room:
        longest = max(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
        where = f"; the longest prompt (non-blank line {longest + 1} of {prompts}) has {len(prompt_ids[longest])} " \
                "tokens" if prompts is not None else ""
        raise ValueError(f"max_new_tokens: {max_new} new tokens do not fit the model's block_size "
                         f"{config.block_size} after the start token and prompt (at most {room}{where})")
    start = StartTokens(start=tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id,
                        eos=tokenizer.eos_id, bos=tokenizer.bos_id if tokenizer.use_bos else None)
    plan = {"source": f"litcpt generate-replay {checkpoint_dir}", "checkpoint_dir": str(checkpoint_dir),
            "checkpoint_sha256": _file_sha256(checkpoint_dir / "lit_model.pth"), "model": config.name,
            "tokenizer": tokenizer_fingerprint(tokenizer), "sampling": {**sampling, "max_new_tokens": max_new},
            "prompts": prompts_info, "seed": int(seed), "max_tokens": int(max_tokens),
            "shard_tokens": int(shard_tokens), "precision": resolve_precision(precision, device)}
    return {"config": config, "tokenizer": tokenizer, "prompts": prompt_ids, "start": start, "plan": plan,
            "checkpoint_dir": checkpoint_dir}


def _load_model(ready: dict[str, Any], device: torch.device) -> torch.nn.Module:
    from litcpt.models.base import build_gpt
    from litcpt.runtime.inference import model_dtype

    config, plan = ready["config"], ready["plan"]
    model = build_gpt(config, checkpoint_dir=ready["checkpoint_dir"], field="checkpoint_dir")
    model = model.eval().requires_grad_(False).to(device=device, dtype=model_dtype(plan["precision"], device))
    model.max_seq_length = min(config.block_size, 1 + max(len(p) for p in ready["prompts"]) +
                               plan["sampling"]["max_new_tokens"])
    return model


def _shard_maker(model: torch.nn.Module, ready: dict[str, Any], out_dir: Path, quotas: list[int], rank: int,
                 bar: Any):
    """``make(call, device)``: generate and write the shards of ``call``; the run of the inference harness."""
    from litcpt.runtime.inference import autocast_context

    plan = ready["plan"]
    sampling = Sampling(**plan["sampling"])

    def make(call: list[int], device: torch.device) -> list[_ShardDone]:
        done = []
        for k in call:
            seed = shard_seed(plan["seed"], k)
            with autocast_context(plan["precision"], device):
                shard = generate_shard(model, seed=seed, quota=quotas[k], prompts=ready["prompts"],
                                       start=ready["start"], sampling=sampling, block_size=model.max_seq_length,
                                       device=device, progress=bar.update)
            stats = write_shard(shard_dir(out_dir, k), shard, {"index": k, "seed": seed, "rank": rank},
                                ready["tokenizer"], plan["source"])
            done.append(_ShardDone(index=k, stats=stats))
        return done

    return make


def _sampling(**args: Any) -> dict[str, Any]:
    return {"temperature": float(args["temperature"]), "top_k": args["top_k"], "top_p": float(args["top_p"]),
            "min_new_tokens": int(args["min_new_tokens"]), "max_new_tokens": args["max_new_tokens"],
            "batch_size": int(args["batch_size"]), "repetition_ngram": int(args["repetition_ngram"]),
            "repetition_threshold": float(args["repetition_threshold"])}


def cli_validate(**args: Any) -> None:
    """The checks the CLI runs before it writes ``config.yaml`` into ``out_dir``: argument ranges, and ``out_dir``
    is new, empty or an earlier run of the same sampling, seed and budget."""
    sampling = _sampling(**args)
    check_arguments(max_tokens=args["max_tokens"], shard_tokens=args["shard_tokens"], devices=args["devices"],
                    num_nodes=args["num_nodes"], **sampling)
    if sampling["max_new_tokens"] is None:
        sampling.pop("max_new_tokens")  # resolved from the model: compared once the model config is read
    saved = Path(args["out_dir"]) / PLAN
    same = {"seed": int(args["seed"]), "max_tokens": int(args["max_tokens"]),
            "shard_tokens": int(args["shard_tokens"])}
    _check_out_dir(Path(args["out_dir"]), same)
    if saved.is_file():
        _check_out_dir(Path(args["out_dir"]), {"sampling": {**json.loads(saved.read_text()).get("sampling", {}),
                                                            **sampling}})


def run(*, checkpoint_dir: Path, out_dir: Path, max_tokens: int, prompts: Path | None, temperature: float,
        top_k: int | None, top_p: float, min_new_tokens: int, max_new_tokens: int | None, batch_size: int,
        shard_tokens: int, seed: int, repetition_ngram: int, repetition_threshold: float, devices: int,
        num_nodes: int, accelerator: str, precision: str | None) -> dict[str, Any]:
    """Sample a corpus from ``checkpoint_dir`` into ``out_dir`` (resuming an earlier run of the same arguments).

    The arguments are ``litcpt generate-replay``'s (:func:`litcpt.commands.generate_replay.main`: its signature
    holds their defaults, its docstring what each means); every one is given, by name.

    Returns: the corpus's ``manifest.json`` (on every rank but 0: ``{"rank": rank}``).
    """
    from tqdm import tqdm

    from litcpt.runtime.inference import launch_ranks, predict_planned

    sampling = _sampling(temperature=temperature, top_k=top_k, top_p=top_p, min_new_tokens=min_new_tokens,
                         max_new_tokens=max_new_tokens, batch_size=batch_size, repetition_ngram=repetition_ngram,
                         repetition_threshold=repetition_threshold)
    check_arguments(max_tokens=max_tokens, shard_tokens=shard_tokens, devices=devices, num_nodes=num_nodes,
                    **sampling)
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    ready = _prepare(checkpoint_dir=checkpoint_dir, prompts=prompts, sampling=sampling, max_tokens=max_tokens,
                     shard_tokens=shard_tokens, seed=seed, precision=precision,
                     device=torch.device("cuda" if on_gpu else "cpu"))
    out_dir = Path(out_dir)
    finished = _check_out_dir(out_dir, ready["plan"])
    if finished is not None:
        print(f"generate-replay: {out_dir} already holds this corpus ({finished['tokens']:,} tokens); nothing to do")
        return finished
    rank, world, device, trainer = launch_ranks(devices, num_nodes, accelerator, "auto")
    if rank == 0:
        write_json(out_dir / PLAN, ready["plan"])
    quotas = shard_quotas(max_tokens, shard_tokens)
    todo = [k for k in range(len(quotas)) if not is_done(shard_dir(out_dir, k))]
    mine = [k for k in todo if k % world == rank]
    model = _load_model(ready, torch.device("cpu") if trainer is not None else device)
    bar = tqdm(total=sum(quotas[k] for k in mine), desc="generate-replay", unit="tok", unit_scale=True,
               disable=rank != 0, dynamic_ncols=True)
    make = _shard_maker(model, ready, out_dir, quotas, rank, bar)
    t0 = time.perf_counter()
    if trainer is not None and todo:
        done = predict_planned(trainer, {"gpt": model}, lambda r, w: [[k] for k in todo if k % w == r], make,
                               order=[_ShardDone(index=k, stats={}) for k in todo], unit="shards",
                               precision=ready["plan"]["precision"])
    else:
        done = make(mine, device)
        if world > 1:
            torch.distributed.barrier()
    bar.close()
    seconds = time.perf_counter() - t0
    if rank != 0:
        return {"rank": rank}
    manifest = assemble(out_dir, len(quotas), ready["tokenizer"], ready["plan"])
    print(_summary(manifest, resumed=len(quotas) - len(todo), seconds=seconds,
                   generated=sum(d.stats["generated_tokens"] for d in done), out_dir=out_dir))
    return manifest

