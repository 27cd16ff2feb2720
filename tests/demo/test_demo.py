"""``litcpt demo`` (reduced, slow) and the continual-pretraining recipes (parse + instantiate, fast)."""

from __future__ import annotations

import json

import pytest

from litcpt.demo.runtime import instantiate
from litcpt.demo.scenarios import build_scenarios
from litcpt.training.recipe import pretrain_parser
from tests.helpers import REPO, run_litcpt

RECIPES = [
    "recipes/tiny/pretrain.yaml",
    "recipes/tiny/d1-pretrain.yaml",
    "recipes/tiny/d2-continue.yaml",
    "recipes/tiny/d2-self-replay.yaml",
    "recipes/tiny/union-retrain.yaml",
    "recipes/tiny/infinite-d1.yaml",
    "recipes/tiny/infinite-d2.yaml",
    "recipes/tiny/infinite-anneal.yaml",
    "recipes/gpu/pretrain-405m.yaml",
    "recipes/gpu/continue-405m.yaml",
    "recipes/gpu/union-405m.yaml",
    "recipes/gpu/continue-open-model.yaml",
    "recipes/gpu/continue-self-replay.yaml",
]


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_parses_and_instantiates(recipe):
    """Every key is known to ``litcpt pretrain`` and every class (data modules, LR callbacks) imports and builds."""
    parser = pretrain_parser()  # built once per test process
    cfg = parser.parse_args(["--config", str(REPO / recipe)])
    init = parser.instantiate_classes(cfg)
    assert init.data is not None and init.lr_schedule is not None
    if "continue" in recipe or "infinite-d2" in recipe or "anneal" in recipe:
        assert init.initial_checkpoint_dir is not None and init.eval.initial_validation


def test_recipe_print_config_cli():
    proc = run_litcpt("pretrain", "--config", "recipes/gpu/continue-405m.yaml", "--print_config", timeout=120)
    assert "litcpt.data.Replay" in proc.stdout and "fraction: 0.05" in proc.stdout


def test_demo_scenarios_are_valid_recipes(tmp_path):
    """The demo's runs are plain ``litcpt pretrain`` recipes: their data and schedule build without training."""
    scenarios, tps = build_scenarios(d1_tokens=40_000, d2_tokens=40_000, replay_fractions=[0.0, 0.05],
                                     infinite=True, infinite_replay=0.05, anneal_fraction=0.2, seed=1, quick=True,
                                     lr=1e-3, cache_dir=tmp_path)
    names = [s.name for s in scenarios]
    assert names == ["d1", "d2-replay0", "d2-replay5", "union", "inf-d1", "inf-d2", "inf-anneal"]
    by_name = {s.name: s for s in scenarios}
    assert by_name["union"].recipe["train"]["max_tokens"] == 2 * by_name["d1"].recipe["train"]["max_tokens"]
    inf_d2 = by_name["inf-d2"].recipe["train"]["max_tokens"] + by_name["inf-anneal"].recipe["train"]["max_tokens"]
    assert inf_d2 == by_name["d2-replay5"].recipe["train"]["max_tokens"]
    for s in scenarios:
        data = instantiate(s.recipe["data"])
        assert data.val_names[:1] in (["en"], ["fr"]) and sorted(data.val_names) == ["en", "fr"]
        instantiate(s.recipe["lr_schedule"])
        assert s.recipe["train"]["max_tokens"] % tps == 0
    with pytest.raises(ValueError, match="replay fractions"):
        build_scenarios(d1_tokens=40_000, d2_tokens=40_000, replay_fractions=[1.0], infinite=False,
                        infinite_replay=0.05, anneal_fraction=0.2, seed=1, quick=True, lr=1e-3)


@pytest.mark.slow
def test_demo_quick(tmp_path):
    """A reduced demo: the qualitative ordering that holds by construction, and the report files."""
    from litcpt.commands.demo import main

    out = tmp_path / "demo"
    summary = main(out_dir=out, quick=True, replay_fractions=[0.0, 0.25], seed=0, cache_dir=tmp_path / "cache",
                   d1_tokens=32_768, d2_tokens=32_768)  # half the quick demo's tokens: the orderings hold with margin
    runs = {r["scenario"]: r for r in summary["runs"]}
    assert list(runs) == ["d1", "d2-replay0", "d2-replay25", "union", "inf-d1", "inf-d2", "inf-anneal"]
    d1_en = runs["d1"]["final"]["en"]
    # the continued run's first validation is the D1 model on the same held-out blocks
    assert runs["d2-replay0"]["initial"]["en"] == pytest.approx(d1_en, abs=1e-4)
    # forgetting: no replay ends higher on D1 than before continuing; 25% replay forgets less
    assert runs["d2-replay0"]["final"]["en"] > d1_en
    assert runs["d2-replay25"]["final"]["en"] < runs["d2-replay0"]["final"]["en"]
    # learning D2: every continuation improves on D2
    assert runs["d2-replay0"]["final"]["fr"] < runs["d1"]["final"]["fr"]
    # tokens: a continuation spends D1 + D2, the union the same in one run, the infinite chain too
    assert runs["d2-replay0"]["tokens_total"] == runs["union"]["tokens_total"] == 2 * runs["d1"]["tokens"]
    assert runs["inf-anneal"]["tokens_total"] == runs["union"]["tokens_total"]
    for name in ("report.md", "report.json", "val_loss.png", "lr.png"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "val_loss.png" in report and "D1 (en)" in report and "wall time" in report
    assert json.loads((out / "report.json").read_text())["sources"] == ["en", "fr"]
    assert (out / "runs" / "d2-replay0" / "final" / "lit_model.pth").is_file()
    assert (out / "runs" / "d2-replay0" / "config.yaml").is_file()
    assert summary["wall_time_s"] < 600
