"""RewardBench v1 section scores from per-subset accuracies.

The subset → section map, the example counts used as weights and the source
they were taken from live in ``sections.json`` next to this module; see
``docs/rewardbench.md`` ("How scoring works") for the formulas.

In short, for accuracies ``acc[s]`` in ``[0, 1]``:

* core section (Chat, Chat Hard, Safety, Reasoning):
  ``Σ acc[s]·n[s] / Σ n[s]`` over the section's subsets that are present, with
  ``n`` the example counts of RewardBench's ``EXAMPLE_COUNTS`` — where
  ``math-prm`` counts 984 (= 6 × 164) instead of its real 447 prompts, so math
  weighs as much as the six ``hep-*`` code subsets together;
* "Prior Sets": unweighted mean of ``anthropic_helpful``, ``anthropic_hhh``,
  ``shp`` and ``summarize`` (those present);
* "Score": weighted mean of the sections present, weight 1 for the core
  sections and ``prior_sets_weight`` (0.5, as in RewardBench's
  ``analysis/get_benchmark_results.py``) for Prior Sets.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from numbers import Real
from typing import Any, Final

__all__ = [
    "CORE_SECTIONS",
    "OTHER",
    "PRIOR_SETS",
    "SCORE",
    "SectionSpec",
    "edit_distance",
    "group_subsets",
    "load_spec",
    "section_scores",
    "subset_name_warnings",
]

#: The four core RewardBench sections, in leaderboard order.
CORE_SECTIONS: Final[tuple[str, ...]] = ("Chat", "Chat Hard", "Safety", "Reasoning")
#: Name of the prior-preference-sets section.
PRIOR_SETS: Final[str] = "Prior Sets"
#: Key of the overall score in :func:`section_scores`' result.
SCORE: Final[str] = "Score"
#: Group that :func:`group_subsets` gives to names that count towards no section.
OTHER: Final[str] = "other"

_SPEC_FILE: Final[str] = "sections.json"


@dataclass(frozen=True)
class SectionSpec:
    """The scoring data of ``sections.json``.

    Attributes:
        example_counts: weight of every core subset (RewardBench's ``EXAMPLE_COUNTS``).
        sections: core section name → its subset names.
        prior_sets: subsets averaged (unweighted) into "Prior Sets".
        score_weights: section name → weight in the overall Score.
        source: where the data comes from (repository, commit, files).
    """

    example_counts: Mapping[str, int]
    sections: Mapping[str, tuple[str, ...]]
    prior_sets: tuple[str, ...]
    score_weights: Mapping[str, float]
    source: Mapping[str, Any] = field(default_factory=dict)

    def section_of(self, subset: str) -> str | None:
        """Section that ``subset`` counts towards, or ``None`` if it counts towards none."""
        for section, subsets in self.sections.items():
            if subset in subsets:
                return section
        if subset in self.prior_sets:
            return PRIOR_SETS
        return None


def load_spec() -> SectionSpec:
    """Read ``litcpt/rewardbench/sections.json`` (packaged data) into a :class:`SectionSpec`."""
    text = resources.files(__package__).joinpath(_SPEC_FILE).read_text(encoding="utf-8")
    raw = json.loads(text)
    return SectionSpec(
        example_counts={k: int(v) for k, v in raw["example_counts"].items()},
        sections={k: tuple(v) for k, v in raw["sections"].items()},
        prior_sets=tuple(raw["prior_sets"]["subsets"]),
        score_weights={k: float(v) for k, v in raw["score_weights"].items()},
        source=raw["source"],
    )


def group_subsets(subsets: Iterable[str], spec: SectionSpec | None = None) -> dict[str, list[str]]:
    """Group subset names by the section they count towards.

    Returns a dict whose keys are, in order, the core sections, ``"Prior Sets"``
    and ``"other"`` — each only if it gets at least one name. Names are kept in
    input order (duplicates dropped). ``"other"`` holds the names that count
    towards no section: unknown names, and prior-set splits that RewardBench
    does not score (e.g. ``anthropic_harmless``, ``mtbench_human``).
    """
    spec = spec or load_spec()
    order = (*spec.sections, PRIOR_SETS, OTHER)
    groups: dict[str, list[str]] = {name: [] for name in order}
    seen: set[str] = set()
    for name in subsets:
        if name in seen:
            continue
        seen.add(name)
        groups[spec.section_of(name) or OTHER].append(name)
    return {name: members for name, members in groups.items() if members}


def _accuracy(subset: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"subset {subset!r}: expected an accuracy in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"subset {subset!r}: expected an accuracy in [0, 1], got {value!r}")
    return value


def section_scores(
    subset_accuracy: Mapping[str, object],
    *,
    prior_sets_weight: float | None = None,
    spec: SectionSpec | None = None,
) -> dict[str, float]:
    """Section scores and overall Score from per-subset accuracies, as RewardBench computes them.

    Args:
        subset_accuracy: RewardBench subset name → accuracy in ``[0, 1]``. Keys that count
            towards no section are ignored (values not checked), as in RewardBench's own
            ``calculate_scores_per_section``; use :func:`group_subsets` to report them.
        prior_sets_weight: weight of "Prior Sets" in Score relative to a core section;
            ``None`` uses the value of ``sections.json`` (0.5). ``0`` keeps the
            "Prior Sets" entry but leaves it out of Score.
        spec: scoring data; defaults to :func:`load_spec`.

    Returns:
        ``{"Chat", "Chat Hard", "Safety", "Reasoning", "Prior Sets", "Score"}`` restricted to
        the sections with at least one subset present (Score present iff some section with a
        positive weight is). Values are in ``[0, 1]``.

    Raises:
        ValueError: a scored subset's accuracy is not a finite number in ``[0, 1]``, or
            ``prior_sets_weight`` is negative.
    """
    spec = spec or load_spec()
    weights = dict(spec.score_weights)
    if prior_sets_weight is not None:
        prior_sets_weight = float(prior_sets_weight)
        if not (prior_sets_weight >= 0.0 and math.isfinite(prior_sets_weight)):
            raise ValueError(f"prior_sets_weight: expected a finite number >= 0, got {prior_sets_weight}")
        weights[PRIOR_SETS] = prior_sets_weight

    result: dict[str, float] = {}
    for section, subsets in spec.sections.items():
        present = [s for s in subsets if s in subset_accuracy]
        if not present:
            continue
        total = sum(spec.example_counts[s] for s in present)
        result[section] = sum(_accuracy(s, subset_accuracy[s]) * spec.example_counts[s] for s in present) / total

    prior = [_accuracy(s, subset_accuracy[s]) for s in spec.prior_sets if s in subset_accuracy]
    if prior:
        result[PRIOR_SETS] = sum(prior) / len(prior)

    total_weight = sum(weights.get(name, 1.0) for name in result)
    if total_weight > 0:
        result[SCORE] = sum(weights.get(name, 1.0) * value for name, value in result.items()) / total_weight
    return result


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions) between ``a`` and ``b``."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def subset_name_warnings(subsets: Iterable[str], spec: SectionSpec | None = None, max_distance: int = 2) -> list[str]:
    """One line per subset name that counts towards no section but looks like a mistake: a near miss of a known
    subset (edit distance <= ``max_distance``, case ignored) or the name of a section or of the Score; and one line
    listing the other unknown names when the data has RewardBench subsets too (they are scored as "other")."""
    spec = spec or load_spec()
    known = sorted({*spec.example_counts, *spec.prior_sets, *(s for v in spec.sections.values() for s in v)})
    reserved = {*spec.sections, PRIOR_SETS, SCORE, OTHER}
    subsets = list(dict.fromkeys(subsets))
    out, unknown = [], []
    for name in subsets:
        if spec.section_of(name) is not None:
            continue
        if name in reserved:
            out.append(f"subset {name!r} has the name of a section; it counts towards no section (scored as 'other')")
            continue
        best = min(known, key=lambda k: (edit_distance(name.lower(), k.lower()), k), default=None)
        if best is not None and edit_distance(name.lower(), best.lower()) <= max_distance:
            out.append(f"subset {name!r} is not a RewardBench subset and counts towards no section; did you mean "
                       f"{best!r}?")
        elif name not in known:
            unknown.append(name)
    if unknown and any(spec.section_of(name) is not None for name in subsets):  # RewardBench data with strangers
        out.append(f"subsets {unknown} are not RewardBench subsets: they count towards no section (scored as "
                   "'other', left out of the Score)")
    return out
