"""Tokenisation and truncation of preference pairs (:func:`tokenize_pairs`, :func:`truncate_sequence`): the one
place that decides which tokens a pair keeps, for training, ``litcpt score`` and RewardBench alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from litgpt.tokenizer import Tokenizer
from torch import Tensor

from litcpt.data.preference.pair_rows import PreferencePair
from litcpt.data.rows import check_choice

__all__ = ["TRUNCATIONS", "TokenizationStats", "TokenizedPair", "Truncation", "encode", "encode_group", "fit_group",
           "length_limit", "tokenize_pairs",
           "truncate_sequence", "was_truncated"]

Truncation = Literal["left", "keep_end", "drop"]
TRUNCATIONS = ("left", "keep_end", "drop")


@dataclass(frozen=True, eq=False)
class TokenizedPair:
    """A tokenised pair. ``*_ids`` hold prompt + response (int64); the first
    ``*_prompt_length`` tokens are the prompt, the rest the response."""

    index: int
    """Position of the pair in the list given to :func:`tokenize_pairs`."""
    chosen_ids: Tensor
    rejected_ids: Tensor
    chosen_prompt_length: int
    rejected_prompt_length: int
    margin: float | None = None
    subset: str | None = None
    id: str | None = None
    is_duplicate: bool = False
    """Set by :class:`PreferenceDataset` for padding items added to even out ranks."""

    @property
    def length(self) -> int:
        """``max(len(chosen_ids), len(rejected_ids))``: the bucketing key."""
        return max(len(self.chosen_ids), len(self.rejected_ids))


@dataclass(frozen=True)
class TokenizationStats:
    """Counts from :func:`tokenize_pairs`."""

    pairs: int
    kept: int
    truncated: int
    """Kept pairs with at least one sequence shortened."""
    dropped: int
    """Pairs dropped because a sequence was longer than ``max_length`` (``truncation="drop"``)."""
    max_length: int | None
    truncation: str
    longest: int
    """Longest sequence (tokens) after truncation."""
    mean_length: float
    """Mean sequence length (tokens, chosen and rejected) after truncation."""

    def summary(self) -> str:
        """One human-readable line."""
        limit = "no limit" if self.max_length is None else f"max_length={self.max_length}, truncation={self.truncation}"
        return (
            f"{self.kept}/{self.pairs} pairs tokenised ({limit}): {self.truncated} truncated, "
            f"{self.dropped} dropped; longest {self.longest} tokens, mean {self.mean_length:.1f}"
        )


def truncate_sequence(
    prompt_ids: Sequence[int],
    response_ids: Sequence[int],
    max_length: int,
    truncation: Truncation = "left",
    keep_first: int = 0,
) -> tuple[list[int], list[int]] | None:
    """Fit ``prompt_ids + response_ids`` into ``max_length`` tokens.

    Nothing changes when it already fits. Otherwise the first ``keep_first`` prompt tokens
    (the BOS token, when there is one) are always kept, and:

    * ``"left"``: drop prompt tokens from the left (just after the protected ones) until the
      pair fits; if the response alone is still too long, drop response tokens from the
      right (its end, including EOS, is lost).
    * ``"keep_end"``: keep the last ``max_length - keep_first`` tokens of the whole sequence
      (cut from the left, through the prompt and then into the response).
    * ``"drop"``: return ``None``.

    Returns the new ``(prompt_ids, response_ids)``. Because ``max_length >= keep_first + 1``
    is required, at least one response token always survives.
    """
    check_choice("truncation", truncation, TRUNCATIONS)
    if max_length < keep_first + 1:
        raise ValueError(f"max_length must be >= {keep_first + 1}, got {max_length}")
    prompt, response = list(prompt_ids), list(response_ids)
    if len(prompt) + len(response) <= max_length:
        return prompt, response
    if truncation == "drop":
        return None
    head, body = prompt[:keep_first], prompt[keep_first:]
    room = max_length - keep_first
    if truncation == "left":
        prompt_room = room - len(response)
        if prompt_room >= 0:
            return head + body[len(body) - prompt_room :], response
        return head, response[:room]
    rest = (body + response)[-room:]
    n_prompt = max(0, len(body) - (len(body) + len(response) - room))
    return head + rest[:n_prompt], rest[n_prompt:]


def length_limit(*limits: int | None) -> int | None:
    """The smallest of the limits that are set (``None`` and values ``<= 0`` mean unset), or ``None``: a data
    module's ``max_length`` against the model's ``max_seq_length``."""
    set_ = [x for x in limits if x is not None and x > 0]
    return min(set_) if set_ else None


def encode(tokenizer: Tokenizer, text: str, *, bos: bool | None, eos: bool) -> list[int]:
    """Token ids of ``text`` (EOS only when asked for and the tokenizer has one)."""
    if eos and getattr(tokenizer, "eos_id", None) is None:
        eos = False
    ids = tokenizer.encode(text, bos=bos, eos=eos)
    return ids.tolist() if hasattr(ids, "tolist") else [int(t) for t in ids]


def encode_group(tokenizer: Tokenizer, prompt: str, responses: Sequence[str]) -> tuple[list[int], int, list[list[int]]]:
    """``(prompt ids, keep_first, response ids)``: litcpt's convention for a prompt and its responses. The prompt has
    BOS as the tokenizer wants it (``use_bos``), each response is encoded on its own with ``bos=False`` and EOS, so
    the boundary is a token boundary; ``keep_first`` is 1 when the prompt starts with a BOS to protect."""
    prompt_ids = encode(tokenizer, prompt, bos=None, eos=False)
    keep_first = int(bool(getattr(tokenizer, "use_bos", False) and prompt_ids
                          and prompt_ids[0] == tokenizer.bos_id))
    return prompt_ids, keep_first, [encode(tokenizer, text, bos=False, eos=True) for text in responses]


def fit_group(prompt: list[int], responses: Sequence[list[int]], max_length: int | None,
              truncation: Truncation = "left", keep_first: int = 0) -> list[tuple[list[int], list[int]]] | None:
    """``(prompt, response)`` ids of each response fitted into ``max_length`` by :func:`truncate_sequence`; ``None``
    when one is too long under ``"drop"``. With ``"left"`` the longest response decides how much of the prompt is
    cut and the others reuse that prompt: all responses keep the *same* prompt tokens (as TRL does), which DPO, RM
    scoring and prompt sharing assume."""
    if max_length is None:
        return [(prompt, response) for response in responses]
    if truncation == "left" and responses:
        prompt = truncate_sequence(prompt, max(responses, key=len), max_length, truncation, keep_first)[0]
    fitted = [truncate_sequence(prompt, response, max_length, truncation, keep_first) for response in responses]
    return None if any(f is None for f in fitted) else fitted  # type: ignore[return-value]


def was_truncated(prompt: list[int], responses: Sequence[list[int]],
                  fitted: Sequence[tuple[list[int], list[int]]]) -> bool:
    """Whether :func:`fit_group` shortened any sequence."""
    return any(len(p) + len(r) < len(prompt) + len(response) for (p, r), response in zip(fitted, responses))


def tokenize_pairs(
    pairs: Sequence[PreferencePair],
    tokenizer: Tokenizer,
    *,
    max_length: int | None = None,
    truncation: Truncation = "left",
) -> tuple[list[TokenizedPair], TokenizationStats]:
    """Tokenise pairs: ``prompt`` with BOS as the tokenizer wants it (``tokenizer.use_bos``),
    each response with ``bos=False`` and EOS appended (when the tokenizer has one).

    Prompt and responses are encoded separately and concatenated, so the boundary is
    always a token boundary. With ``max_length``, each of the two sequences is fitted by
    :func:`truncate_sequence` (a leading BOS is protected; with ``"left"`` the longer response fixes the prompt cut
    and the shorter reuses it, so both keep identical prompt tokens); with ``"drop"`` the whole pair
    is dropped if either sequence is too long. ``TokenizedPair.index`` is the pair's
    position in ``pairs``.
    """
    check_choice("truncation", truncation, TRUNCATIONS)
    if max_length is not None and max_length < 2:
        raise ValueError(f"max_length must be >= 2 or None, got {max_length}")
    out: list[TokenizedPair] = []
    truncated = dropped = 0
    for index, pair in enumerate(pairs):
        prompt, keep_first, responses = encode_group(tokenizer, pair.prompt, (pair.chosen, pair.rejected))
        sequences = fit_group(prompt, responses, max_length, truncation, keep_first)
        if sequences is None:
            dropped += 1
            continue
        truncated += was_truncated(prompt, responses, sequences)
        (cp, cr), (rp, rr) = sequences
        out.append(
            TokenizedPair(
                index=index,
                chosen_ids=torch.tensor(cp + cr, dtype=torch.long),
                rejected_ids=torch.tensor(rp + rr, dtype=torch.long),
                chosen_prompt_length=len(cp),
                rejected_prompt_length=len(rp),
                margin=pair.margin,
                subset=pair.subset,
                id=pair.id,
            )
        )
    lengths = [n for t in out for n in (len(t.chosen_ids), len(t.rejected_ids))]
    stats = TokenizationStats(
        pairs=len(pairs),
        kept=len(out),
        truncated=truncated,
        dropped=dropped,
        max_length=max_length,
        truncation=truncation,
        longest=max(lengths, default=0),
        mean_length=sum(lengths) / len(lengths) if lengths else 0.0,
    )
    return out, stats
