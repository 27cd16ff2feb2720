"""Scoring a jsonl file with a reward model (``litcpt score``): prompt/response rows one score each, preference pairs
both responses and the pairwise accuracy, tokenised and truncated as training does; next to RewardBench's engine
(:mod:`litcpt.rewardbench.engine`), which scores the pairs."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from litcpt.runtime.atomic import write_json, write_lines
from litcpt.runtime.checkpoint import check_checkpoint_dir

__all__ = ["format_score_table", "score_file", "score_texts", "scores_file_name", "summary_file_name", "tokenize_texts"]


def _rows(path: Path, encoding: str = "utf-8") -> list[tuple[int, dict]]:
    """``(line number, row)`` of a jsonl file (read by :mod:`litcpt.data.rows`, like every data source), with the
    line of each bad row (bad JSON or bytes) in the error."""
    from litcpt.data.rows import BadRow, iter_file_rows

    rows = []
    for where, row in iter_file_rows(path, encoding):
        if isinstance(row, BadRow):
            raise ValueError(f"{path}:{where.number}: {row.message}")
        rows.append((where.number, row))
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def scores_file_name(data: Path) -> str:
    """``<data name without .jsonl/.jsonl.gz/.json>.scores.jsonl``: the whole stem, dots included."""
    name = Path(data).name
    for suffix in (".jsonl.gz", ".json.gz", ".jsonl", ".json", ".gz"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return f"{name}.scores.jsonl"


def tokenize_texts(tokenizer, texts: list[tuple[str, str]], max_length: int | None) -> list[tuple[torch.Tensor, int]]:
    """``(ids, prompt length)`` of each (prompt, response), tokenised and truncated as training does for each
    sequence of a pair (:func:`litcpt.data.preference.pair_tokens.encode_group` /
    :func:`~litcpt.data.preference.pair_tokens.fit_group`,
    ``truncation="left"``: the prompt loses its start after BOS, a response still too long loses its end)."""
    from litcpt.data.preference.pair_tokens import encode_group, fit_group

    out = []
    for prompt, response in texts:
        prompt_ids, keep_first, responses = encode_group(tokenizer, prompt, [response])
        ((p, r),) = fit_group(prompt_ids, responses, max_length, "left", keep_first)
        out.append((torch.tensor(p + r, dtype=torch.long), len(p)))
    return out


@torch.no_grad()
def score_texts(model, tokenizer, texts: list[tuple[str, str]], *, batch_size: int = 8,
                max_length: int | None = None) -> list[float]:
    """Reward of each (prompt, response), read at the last real token: tokenised by :func:`tokenize_texts`, batched
    as the Preference DataModule's evaluation batches
    (:class:`~litcpt.data.preference.batching.LengthBucketBatchSampler`
    unshuffled, :func:`~litcpt.data.preference.batching.pad_rows` right-padded with
    :func:`~litcpt.data.preference.batching.pad_id_of`)."""
    from litcpt.data.preference.batching import LengthBucketBatchSampler, pad_id_of, pad_rows

    encoded = tokenize_texts(tokenizer, texts, max_length)
    sampler = LengthBucketBatchSampler(
        batch_size=batch_size, lengths=[len(ids) for ids, _ in encoded], shuffle=False, num_replicas=1, rank=0
    )
    scores = [0.0] * len(encoded)
    device = next(model.parameters()).device
    for chunk in sampler.global_batches():
        batch = pad_rows([encoded[i][0] for i in chunk], [encoded[i][1] for i in chunk], pad_id=pad_id_of(tokenizer))
        for i, value in zip(chunk, model(batch["input_ids"].to(device), batch["last_index"].to(device)).tolist()):
            scores[i] = float(value)
    return scores


def score_file(
    *,
    checkpoint_dir: Path,
    data: Path,
    out_dir: Path | None,
    out_file: Path | None,
    batch_size: int,
    max_length: int | None,
    device: str,
    encoding: str,
) -> dict:
    """Score the jsonl file ``data`` with the reward model of ``checkpoint_dir``: one score per
    ``{"prompt", "response"}`` row, or both responses of each preference pair and the pairwise accuracy (ties count
    half); the scores go to ``out_file`` (default ``<out_dir or out/score>/<data name>.scores.jsonl``, see
    :func:`scores_file_name`), the summary as JSON beside them (:func:`summary_file_name`); a table is printed.

    The arguments are ``litcpt score``'s (:func:`litcpt.commands.score.main`: its signature holds their defaults, its
    docstring what each means); every one is given, by name.

    Returns: the summary (``checkpoint_dir``, ``data``, ``rows``, ``scores``, ``summary``: the JSON file it is written
    to; for pairs ``accuracy``, ``pairs`` and ``subsets``); a table of it is printed.
    """
    from litgpt import Tokenizer

    from litcpt.data.preference.pair_loading import load_preference_pairs
    from litcpt.models.reward import load_reward_model
    from litcpt.rewardbench import pair_accuracy
    from litcpt.runtime.outputs import check_out_file

    data = Path(data)
    if data.is_dir():
        raise ValueError(f"data: {str(data)!r} is a directory, expected a .jsonl or .jsonl.gz file")
    if not data.is_file():
        raise FileNotFoundError(f"data: {str(data)!r} does not exist")
    field = "out_file" if out_file else "out_dir"
    out_file = Path(out_file) if out_file else Path(out_dir or "out/score") / scores_file_name(data)
    check_out_file(out_file, field=field)  # before the model is loaded
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir, field="checkpoint_dir")
    model = load_reward_model(checkpoint_dir, device=device)
    tokenizer = Tokenizer(checkpoint_dir)
    max_length = max_length or model.config.block_size
    numbered = _rows(data, encoding)
    lines, rows = [n for n, _ in numbered], [row for _, row in numbered]
    summary: dict = {"checkpoint_dir": str(checkpoint_dir), "data": str(data), "rows": len(rows)}
    if all("response" in row for row in rows):
        for line_no, row in enumerate(rows, 1):
            if not isinstance(row.get("prompt", ""), str) or not isinstance(row["response"], str):
                raise ValueError(f"{data}: row {line_no}: fields 'prompt' and 'response' must be strings")
        scores = score_texts(
            model,
            tokenizer,
            [(r.get("prompt", ""), r["response"]) for r in rows],
            batch_size=batch_size,
            max_length=max_length,
        )
        records = [
            {"index": i, "line": line, **row, "score": s} for i, (line, row, s) in enumerate(zip(lines, rows, scores))
        ]
    else:
        from litcpt.rewardbench.engine import score_pairs

        pairs = load_preference_pairs(data, encoding=encoding)
        # the same tokenisation and truncation as training (shared prompt, "left" truncation) and as rewardbench
        scored = score_pairs(model, pairs, tokenizer, batch_size, max_length=max_length, device=device)
        chosen, rejected = [c for c, _ in scored], [r for _, r in scored]
        records = [
            {"index": i, "line": line, "id": p.id, "subset": p.subset, "score_chosen": c, "score_rejected": r}
            for i, (line, p, c, r) in enumerate(zip(lines, pairs, chosen, rejected))
        ]
        summary["accuracy"] = pair_accuracy(chosen, rejected, ties="half")
        summary["pairs"] = len(pairs)
        summary["subsets"] = {name: {"pairs": len(cs), "accuracy": pair_accuracy(cs, rs, ties="half")}
                              for name, (cs, rs) in _by_subset(records).items()}
    write_lines(out_file, [json.dumps(record) for record in records])
    summary["scores"] = str(out_file)
    summary["summary"] = str(summary_file_name(out_file))
    write_json(summary_file_name(out_file), summary)
    print(format_score_table(summary, records))
    return summary


def summary_file_name(out_file: Path) -> Path:
    """``x.scores.jsonl`` -> ``x.scores.summary.json``: the summary, beside the scores."""
    name = out_file.name
    return out_file.with_name(f"{name[:-len('.jsonl')] if name.endswith('.jsonl') else name}.summary.json")


def _by_subset(records: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    out: dict[str, tuple[list[float], list[float]]] = {}
    for record in records:
        chosen, rejected = out.setdefault(str(record.get("subset") or "all"), ([], []))
        chosen.append(record["score_chosen"])
        rejected.append(record["score_rejected"])
    return out


def format_score_table(summary: dict, records: list[dict]) -> str:
    """The terminal table of ``litcpt score``: for pairs, the accuracy per subset and over all pairs (ties count
    half); for rows, the count and the mean, spread and range of the scores; then where the files went."""
    lines = [f"litcpt score: {summary['data']} with {summary['checkpoint_dir']}"]
    if "subsets" in summary:
        width = max([len(name) + 2 for name in summary["subsets"]] + [20])
        rule = "-" * (width + 20)
        lines += [f"{'subset':<{width}}  {'pairs':>7}  {'accuracy':>8}", rule]
        lines += [f"  {name:<{width - 2}}  {v['pairs']:>7}  {v['accuracy']:8.4f}"
                  for name, v in summary["subsets"].items()]
        lines += [rule, f"{'accuracy (all pairs)':<{width}}  {summary['pairs']:>7}  {summary['accuracy']:8.4f}"]
    else:
        scores = [r["score"] for r in records]
        mean = sum(scores) / max(len(scores), 1)
        std = (sum((x - mean) ** 2 for x in scores) / max(len(scores), 1)) ** 0.5
        lines += [f"{'rows':>7}  {'mean':>9}  {'std':>9}  {'min':>9}  {'max':>9}",
                  f"{len(scores):>7}  {mean:9.4f}  {std:9.4f}  {min(scores, default=0.0):9.4f}  "
                  f"{max(scores, default=0.0):9.4f}"]
    lines += [f"scores: {summary['scores']}", f"summary: {summary['summary']}"]
    return "\n".join(lines)
