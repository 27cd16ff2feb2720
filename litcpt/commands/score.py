"""``litcpt score``: score prompt/response rows or preference pairs with a reward model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from litcpt.checkpoint import check_checkpoint_dir


def _rows(path: Path, encoding: str = "utf-8") -> list[tuple[int, dict]]:
    """``(line number, row)`` of a jsonl file, with the line of each bad row (bad JSON or bytes) in the error."""
    from litcpt.data.textio import iter_lines

    rows = []
    for line_no, line in iter_lines(path, encoding):
        if not line.strip():
            continue
        try:
            rows.append((line_no, json.loads(line)))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
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


@torch.no_grad()
def score_texts(model, tokenizer, texts: list[tuple[str, str]], *, batch_size: int = 8,
                max_length: int | None = None) -> list[float]:
    """Reward of each (prompt, response): batched by length, right-padded, read at the last real token."""
    encoded = []
    for prompt, response in texts:
        ids = torch.cat([tokenizer.encode(prompt), tokenizer.encode(response, bos=False, eos=True)])
        if max_length is not None and len(ids) > max_length:
            ids = ids[-max_length:]
        encoded.append(ids)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    scores = [0.0] * len(encoded)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in chunk)
        input_ids = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, :len(encoded[i])] = encoded[i]
        last = torch.tensor([len(encoded[i]) - 1 for i in chunk])
        for i, value in zip(chunk, model(input_ids.to(device), last.to(device)).tolist()):
            scores[i] = float(value)
    return scores


def main(checkpoint_dir: Path, data: Path, out_dir: Path | None = None, out_file: Path | None = None,
         batch_size: int = 8, max_length: int | None = None, device: str = "cpu", encoding: str = "utf-8") -> dict:
    """Score a jsonl file with a reward model trained by ``litcpt reward``.

    Rows are either ``{"prompt", "response"}`` (one score each) or preference pairs in any format
    ``litcpt.data.Preference`` reads (``prompt``/``chosen``/``rejected`` or whole HH-RLHF conversations): then both
    responses are scored and the pairwise accuracy (ties count half) is printed.

    Args:
        checkpoint_dir: a reward checkpoint dir (``out/reward/final``).
        data: a ``.jsonl`` / ``.jsonl.gz`` file.
        out_dir: where the scores go: ``<out_dir>/<data name>.scores.jsonl`` (the data's full name without
            ``.jsonl``/``.jsonl.gz``), plus the run's ``config.yaml``; default ``out/score`` (never the data's dir).
        out_file: write the scores to this file instead.
        batch_size: sequences per forward pass.
        max_length: tokens per sequence (default: the model's block size). Pairs are truncated as in training
            (the prompt is cut from the left, both responses keep the same prompt); single rows keep their last
            ``max_length`` tokens.
        device: ``cpu`` or ``cuda``.
        encoding: text encoding of ``data`` (``utf-8``, ``latin-1``, ``cp1252``, ...).

    Every output row carries ``index`` (0-based position among the data rows) and ``line`` (its line in ``data``).
    """
    from litgpt import Tokenizer

    from litcpt.data.preference import load_preference_pairs
    from litcpt.models.reward import load_reward_model
    from litcpt.rewardbench import pair_accuracy

    checkpoint_dir = check_checkpoint_dir(checkpoint_dir, field="checkpoint_dir")
    data = Path(data)
    if not data.is_file():
        raise FileNotFoundError(f"data: {str(data)!r} does not exist")
    model = load_reward_model(checkpoint_dir, device=device)
    tokenizer = Tokenizer(checkpoint_dir)
    max_length = max_length or model.config.block_size
    numbered = _rows(data, encoding)
    lines, rows = [n for n, _ in numbered], [row for _, row in numbered]
    out_file = Path(out_file) if out_file else Path(out_dir or "out/score") / scores_file_name(data)
    summary: dict = {"checkpoint_dir": str(checkpoint_dir), "data": str(data), "rows": len(rows)}
    if all("response" in row for row in rows):
        for line_no, row in enumerate(rows, 1):
            if not isinstance(row.get("prompt", ""), str) or not isinstance(row["response"], str):
                raise ValueError(f"{data}: row {line_no}: fields 'prompt' and 'response' must be strings")
        scores = score_texts(model, tokenizer, [(r.get("prompt", ""), r["response"]) for r in rows],
                             batch_size=batch_size, max_length=max_length)
        records = [{"index": i, "line": line, **row, "score": s}
                   for i, (line, row, s) in enumerate(zip(lines, rows, scores))]
    else:
        from litcpt.rewardbench.evaluate import score_pairs

        pairs = load_preference_pairs(data, encoding=encoding)
        # the same tokenisation and truncation as training (shared prompt, "left" truncation) and as rewardbench
        scored = score_pairs(model, pairs, tokenizer, batch_size, max_length=max_length, device=device)
        chosen, rejected = [c for c, _ in scored], [r for _, r in scored]
        records = [{"index": i, "line": line, "id": p.id, "subset": p.subset, "score_chosen": c, "score_rejected": r}
                   for i, (line, p, c, r) in enumerate(zip(lines, pairs, chosen, rejected))]
        summary["accuracy"] = pair_accuracy(chosen, rejected, ties="half")
        summary["pairs"] = len(pairs)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fp:
        for record in records:
            fp.write(json.dumps(record) + "\n")
    os.replace(tmp, out_file)
    summary["scores"] = str(out_file)
    print(json.dumps(summary, indent=2))
    return summary
