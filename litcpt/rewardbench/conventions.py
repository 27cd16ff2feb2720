"""Scoring conventions: how a (prompt, response) becomes tokens and a reward, ``litcpt``'s or RewardBench's own.

``convention="rewardbench"`` reproduces allenai/reward-bench (``rewardbench/dpo.py`` ``DPOInference``,
``scripts/run_dpo.py``, ``scripts/run_rm.py``; checked at commit 05a9005) exactly:

* **tokenisation** (:func:`rewardbench_sequences`): the response text is ``(prompt + response).replace(prompt, "")``
  (RewardBench removes the prompt from the whole conversation); ``prompt + response`` is encoded *jointly*, without
  special tokens, and the prompt is its first ``len(enc(prompt))`` tokens, or one fewer when those differ from
  ``enc(prompt)``: a token that merges across the boundary (``": "`` + ``"Sure"`` -> ``":"``, ``" Sure"``) belongs
  to the response (:func:`split_prompt_answer`). DPO: BOS is always prepended (the EOS token when the tokenizer has
  no BOS, as ``run_dpo.py`` sets it) and EOS appended. Reward models: the joint encoding with BOS as the tokenizer
  adds it and EOS appended (``run_rm.py`` sets ``add_eos_token`` for template-formatted text).
* **truncation**: DPO: only when the prompt plus the *longer* response exceeds ``max_length`` (2048) is a prompt cut
  to its last ``max_prompt_length`` (128) tokens (BOS is lost); if it is still too long, each response keeps its
  first ``max_length - max_prompt_length`` tokens. Reward models: the sequence keeps its first ``max_length`` tokens
  (the pipeline's ``truncation=True``).
* **reward**: with a reference, ``Σ log π - Σ log π_ref`` over the response tokens (always summed, no β); without
  one, ``Σ log π`` (``sum``), its mean (``avg``, ``run_dpo.py``'s default) or ``-‖log π‖₂`` over the response
  tokens (``norm``, ``DPOInference``'s own default). Accuracy: ``chosen > rejected`` (a tie is wrong).

``convention="litcpt"`` (the default) scores a sequence exactly as ``litcpt dpo`` / ``litcpt reward`` trained it:
prompt and response encoded separately (the boundary is always a token boundary, so chosen and rejected share every
prompt token and a response is scored on the tokens it was trained on), BOS as the tokenizer's config says, the
prompt cut from the left only as far as ``max_length`` needs, and the DPO reward ``β (log π - log π_ref)`` summed or
averaged as the run's ``dpo.json`` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal

import torch

__all__ = [
    "CONVENTIONS",
    "MAX_LENGTH",
    "MAX_PROMPT_LENGTH",
    "REF_FREE_TYPES",
    "RUN_DPO_REF_FREE_TYPE",
    "encode_plain",
    "rewardbench_scorer",
    "rewardbench_sequences",
    "split_prompt_answer",
    "tokenize_groups_rewardbench",
    "tokenize_pairs_rewardbench",
]

Convention = Literal["litcpt", "rewardbench"]
CONVENTIONS: Final[tuple[str, ...]] = ("litcpt", "rewardbench")
#: ``DPOInference.max_length`` and ``run_rm.py``'s ``--max_length`` default.
MAX_LENGTH: Final[int] = 2048
#: ``DPOInference.max_prompt_length``.
MAX_PROMPT_LENGTH: Final[int] = 128
#: Reference-free reductions of ``DPOInference`` (``ref_free_norm``).
REF_FREE_TYPES: Final[tuple[str, ...]] = ("norm", "avg", "sum")
#: ``scripts/run_dpo.py --ref_free_type`` default (``DPOInference``'s constructor defaults to ``norm``).
RUN_DPO_REF_FREE_TYPE: Final[str] = "avg"


def encode_plain(tokenizer: Any, text: str) -> list[int]:
    """Tokens of ``text`` without special tokens (transformers' ``tokenizer(text, add_special_tokens=False)``)."""
    backend = getattr(tokenizer, "backend", None)
    processor = getattr(tokenizer, "processor", None)
    if backend == "huggingface" and processor is not None:
        return list(processor.encode(text, add_special_tokens=False).ids)
    if backend == "sentencepiece" and processor is not None:
        return list(processor.encode(text))
    return [int(t) for t in tokenizer.encode(text, bos=False, eos=False)]


def split_prompt_answer(tokenizer: Any, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """``(prompt_ids, answer_ids)`` of the joint encoding of ``prompt + answer`` (``build_tokenized_answer``): the
    prompt is the first ``len(enc(prompt))`` tokens, one fewer when they differ from ``enc(prompt)`` (the last prompt
    token merged with the answer's start)."""
    full = encode_plain(tokenizer, prompt + answer)
    alone = encode_plain(tokenizer, prompt)
    if len(full) < len(alone):
        raise ValueError(f"prompt {prompt[:40]!r}...: encodes to more tokens alone ({len(alone)}) than with its "
                         f"response ({len(full)}); RewardBench's boundary rule needs enc(prompt + response) to "
                         "extend enc(prompt)")
    start = len(alone)
    if full[:start] != alone:
        start -= 1
    return full[:start], full[start:]


def _special(tokenizer: Any, name: str) -> int:
    value = getattr(tokenizer, f"{name}_id", None)
    if value is None and name == "bos":
        value = getattr(tokenizer, "eos_id", None)        # run_dpo.py: bos_token_id = eos_token_id
    if value is None:
        raise ValueError(f"tokenizer: convention 'rewardbench' needs a {name.upper()} token; this tokenizer has none")
    return int(value)


def rewardbench_sequences(tokenizer: Any, prompt: str, responses: Sequence[str], *, kind: str = "dpo",
                          max_length: int = MAX_LENGTH,
                          max_prompt_length: int = MAX_PROMPT_LENGTH) -> tuple[list[tuple[list[int], list[int]]],
                                                                                 bool]:
    """RewardBench's ``(prompt_ids, response_ids)`` of each response to ``prompt`` and whether any was truncated.

    ``kind="dpo"``: ``DPOInference.tokenize_row`` (its prompt cut looks at the longest of ``responses``: the chosen
    and the rejected of a pair; all completions of a RewardBench 2 prompt). ``kind="reward"``: the joint encoding
    of each ``prompt + response`` cut to its first ``max_length`` tokens (``prompt_ids`` then only says where the
    response starts: a reward model reads the last token).
    """
    if kind not in ("dpo", "reward"):
        raise ValueError(f"kind: expected 'dpo' or 'reward', got {kind!r}")
    if not 0 < max_prompt_length < max_length:
        raise ValueError(f"max_prompt_length: expected 0 < max_prompt_length < max_length={max_length}, got "
                         f"{max_prompt_length}")
    eos = _special(tokenizer, "eos")
    rows = []
    truncated = False
    if kind == "reward":
        bos = [_special(tokenizer, "bos")] if getattr(tokenizer, "use_bos", False) else []
        for response in responses:
            p, a = split_prompt_answer(tokenizer, prompt, response)
            ids = (bos + p + a + [eos])[:max_length]
            truncated |= len(ids) < len(bos) + len(p) + len(a) + 1
            n_prompt = min(len(bos) + len(p), len(ids) - 1)
            rows.append((ids[:n_prompt], ids[n_prompt:]))
        return rows, truncated
    bos = _special(tokenizer, "bos")
    for response in responses:
        p, a = split_prompt_answer(tokenizer, prompt, (prompt + response).replace(prompt, ""))
        rows.append(([bos] + p, a + [eos]))
    longer = max(len(a) for _, a in rows)
    cut = []
    for p, a in rows:
        if len(p) + longer > max_length:
            p = p[-max_prompt_length:]
        if len(p) + longer > max_length:
            a = a[: max_length - max_prompt_length]
        cut.append((p, a))
    truncated = any(len(p2) + len(a2) < len(p) + len(a) for (p, a), (p2, a2) in zip(rows, cut))
    return cut, truncated


def tokenize_pairs_rewardbench(pairs: Sequence[Any], tokenizer: Any, *, kind: str = "dpo",
                               max_length: int = MAX_LENGTH, max_prompt_length: int = MAX_PROMPT_LENGTH) -> tuple:
    """:func:`~litcpt.data.preference.pair_tokens.tokenize_pairs` under RewardBench's rules
    (:func:`rewardbench_sequences`): ``(items, stats)`` of :class:`~litcpt.data.preference.pair_tokens.TokenizedPair`
    (the chosen and rejected prompts may differ by the merged boundary token) and
    :class:`~litcpt.data.preference.pair_tokens.TokenizationStats`."""
    from litcpt.data.preference.pair_tokens import TokenizationStats, TokenizedPair

    items, truncated = [], 0
    for index, pair in enumerate(pairs):
        rows, cut = rewardbench_sequences(tokenizer, pair.prompt, (pair.chosen, pair.rejected), kind=kind,
                                          max_length=max_length, max_prompt_length=max_prompt_length)
        (cp, ca), (rp, ra) = rows
        truncated += cut
        items.append(TokenizedPair(index=index, chosen_ids=torch.tensor(cp + ca, dtype=torch.long),
                                   rejected_ids=torch.tensor(rp + ra, dtype=torch.long), chosen_prompt_length=len(cp),
                                   rejected_prompt_length=len(rp), margin=pair.margin, subset=pair.subset, id=pair.id))
    lengths = [n for t in items for n in (len(t.chosen_ids), len(t.rejected_ids))]
    stats = TokenizationStats(pairs=len(pairs), kept=len(items), truncated=truncated, dropped=0, max_length=max_length,
                              truncation="rewardbench", longest=max(lengths, default=0),
                              mean_length=sum(lengths) / len(lengths) if lengths else 0.0)
    return items, stats


def rewardbench_scorer(policy: torch.nn.Module, reference: torch.nn.Module | None = None, *,
                       ref_free_type: str = RUN_DPO_REF_FREE_TYPE, share_prompt: bool = True) -> Any:
    """An :class:`~litcpt.rewardbench.scorers.ImplicitRewardScorer` giving RewardBench's DPO rewards: with a
    reference ``Σ log π - Σ log π_ref`` (summed, β = 1); without one ``ref_free_type`` (``avg``, ``sum``, ``norm``)
    of ``log π``. Use with ``score_pairs(..., convention="rewardbench")``."""
    from litcpt.rewardbench.scorers import ImplicitRewardScorer

    if ref_free_type not in REF_FREE_TYPES:
        raise ValueError(f"ref_free_type: expected one of {', '.join(REF_FREE_TYPES)}, got {ref_free_type!r}")
    reduction = "sum" if reference is not None else ref_free_type
    return ImplicitRewardScorer(policy, reference, beta=1.0, reduction=reduction, share_prompt=share_prompt)


def tokenize_groups_rewardbench(rows: Sequence[Any], tokenizer: Any, *, kind: str = "dpo",
                                max_length: int = MAX_LENGTH,
                                max_prompt_length: int = MAX_PROMPT_LENGTH) -> tuple[list[Any], int]:
    """RewardBench 2 rows (:class:`~litcpt.data.preference.best_of_n.BestOfNRow`) under RewardBench's rules
    (:func:`rewardbench_sequences` over all completions of a prompt): the groups and how many were truncated."""
    from litcpt.data.preference.best_of_n import TokenizedGroup

    out, truncated = [], 0
    for index, row in enumerate(rows):
        seqs, cut = rewardbench_sequences(tokenizer, row.prompt, row.completions, kind=kind, max_length=max_length,
                                          max_prompt_length=max_prompt_length)
        truncated += cut
        out.append(TokenizedGroup(index=index, rows=tuple(torch.tensor(p + a, dtype=torch.long) for p, a in seqs),
                                  prompt_lengths=tuple(len(p) for p, _ in seqs), num_correct=row.num_correct,
                                  subset=row.subset, id=row.id))
    return out, truncated
