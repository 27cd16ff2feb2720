"""``litcpt demo --part self-replay``: its table math and its argument checks (the part itself runs minutes)."""

from __future__ import annotations

import pytest

from litcpt.demo.self_replay import _markdown, _rows, run_self_replay


def test_gap_closed_is_relative_to_true_replay_per_seed():
    gen = {"tokens": 100, "seconds": 2.0, "dropped": {"repetitive": 1, "duplicate": 0, "short": 0}}
    results = []
    for seed, (none, self_, true) in {1: (6.0, 5.5, 5.0), 2: (6.0, 5.9, 5.0)}.items():
        results += [{"row": "none", "label": "no replay", "seed": seed, "en": none, "fr": 4.0, "true_row": None},
                    {"row": "self5", "label": "self 5%", "seed": seed, "en": self_, "fr": 4.1, "true_row": "true5",
                     "generation": gen},
                    {"row": "true5", "label": "true 5%", "seed": seed, "en": true, "fr": 4.2, "true_row": None}]
    rows = {r["row"]: r for r in _rows(results, [0.05])}
    assert rows["self5"]["gap_closed"] == pytest.approx((0.5 + 0.1) / 2)
    assert rows["self5"]["en"] == pytest.approx(5.7) and rows["none"]["en_sd"] == 0.0
    assert "gap_closed" not in rows["true5"] and rows["self5"]["gen_tokens"] == 100
    table = _markdown({"command": "x", "wall_time_s": 60, "seeds": 2, "d1": {"en": 4.5, "fr": 9.0},
                       "rows": list(rows.values())})
    assert "| self 5% | 5.700 ± 0.283 | 4.100 ± 0.000 | 30% ± 28% | 100 (2.0 s) |" in table


def test_needs_a_replay_share(tmp_path):
    with pytest.raises(ValueError, match="needs a share > 0"):
        run_self_replay(out_dir=tmp_path, d1_tokens=None, d2_tokens=None, replay_fractions=[0.0], lr=1e-3, seed=1,
                        num_threads=1, cache_dir=None, verbose=False)
