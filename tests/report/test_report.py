"""``litcpt.report.runs`` / ``litcpt report``: table values, chaining, resumed runs, JSON shape and plots, from
synthetic
metrics CSVs (fast, no training)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from litcpt.commands.report import main as report_main
from litcpt.report.runs import load_run, load_runs, markdown_table, read_rows, table_rows, to_json
from tests.helpers import run_litcpt

COLUMNS = ["epoch", "lr", "lr-AdamW", "step", "train/loss", "train/tokens", "train/time", "val/loss", "val/loss/en",
           "val/loss/fr", "val/tokens"]
TPS = 100  # tokens per optimizer step


def write_version(run: Path, version: int, steps: range, val: dict[int, tuple[float, float]],
                  lr: float = 1e-3) -> None:
    """One logger version like the real ones: a train row per step, val rows at ``val`` steps (after that step)."""
    path = run / "logs" / f"version_{version}" / "metrics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for step in steps:
        rows.append({"step": step, "lr-AdamW": lr})
        rows.append({"step": step, "epoch": 0, "lr": lr, "train/loss": 5.0, "train/tokens": (step + 1) * TPS,
                     "train/time": float(step - steps.start + 1)})
    for step, (en, fr) in val.items():
        rows.append({"step": step, "epoch": 0, "val/loss/en": en, "val/loss/fr": fr, "val/loss": (en + fr) / 2,
                     "val/tokens": (step + 1) * TPS if step else 0.0})
    rows.sort(key=lambda r: r["step"])
    with open(path, "w", newline="") as fp:
        writer = csv.DictWriter(fp, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def write_config(run: Path, parent: Path | None) -> None:
    run.mkdir(parents=True, exist_ok=True)
    cfg = {"out_dir": str(run)}
    if parent is not None:
        cfg["initial_checkpoint_dir"] = str(parent / "final")
        (parent / "final").mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture()
def runs(tmp_path: Path) -> dict[str, Path]:
    d1, d2, union = tmp_path / "d1", tmp_path / "d2", tmp_path / "union"
    write_config(d1, None)
    write_version(d1, 0, range(10), {0: (8.0, 8.0), 4: (5.0, 7.5), 9: (4.0, 7.0)})
    write_config(d2, d1)
    write_version(d2, 0, range(10), {0: (4.0, 7.0), 4: (5.5, 5.0), 9: (5.0, 4.0)}, lr=2e-3)
    write_config(union, None)
    write_version(union, 0, range(20), {0: (8.0, 8.0), 9: (5.0, 5.0), 19: (4.2, 4.1)})
    return {"d1": d1, "d2": d2, "union": union}


def test_single_run_values(runs):
    run = load_run(runs["d1"])
    assert run.label == "d1" and run.versions == 1
    assert run.tokens == 10 * TPS and run.steps == 10 and run.tokens_per_step == TPS
    assert run.final("en") == 4.0 and run.final("fr") == 7.0 and run.initial("en") == 8.0
    assert [x for x, _ in run.val["en"]] == [0.0, 500.0, 1000.0]
    assert run.lr[0] == (0.0, 1e-3) and len(run.lr) == 10  # "lr" wins over the duplicate "lr-AdamW"
    assert run.train_time_s == 10.0
    assert run.parent is None


def test_chain_and_table(runs):
    d1, d2, union = load_runs([runs["d1"], runs["d2"], runs["union"]], ["D1", "D1->D2", "union"])
    assert d2.parent == runs["d1"].resolve()
    assert d2.tokens_before == 1000 and d2.tokens_total == 2000 and union.tokens_total == 2000
    assert d2.parent_final == {"en": 4.0, "fr": 7.0}
    rows = table_rows([d1, d2, union])
    assert [r.label for r in rows] == ["D1", "D1->D2", "union"]
    assert rows[1].final == {"en": 5.0, "fr": 4.0} and rows[1].average == pytest.approx(4.5)
    assert rows[1].change == {"en": pytest.approx(1.0), "fr": pytest.approx(-3.0)}  # forgetting on en
    assert rows[0].change == {"en": None, "fr": None}
    table = markdown_table(rows, {"en": "D1 (en)"})
    assert "val loss D1 (en)" in table and "| D1->D2 | 2K | 5.000 | **4.000** | 4.500 |" in table
    assert "**4.150**" in table  # union has the best average


def test_parent_found_even_if_not_listed(runs):
    (d2,) = load_runs([runs["d2"]])
    assert d2.tokens_before == 1000
    (d2,) = load_runs([runs["d2"]], chain=False)
    assert d2.tokens_before == 0


def test_resumed_run_merges_versions(tmp_path):
    run = tmp_path / "resumed"
    # version 0 crashed after step 7 but its last checkpoint was at step 5: version 1 re-does steps 5.. 11
    write_version(run, 0, range(8), {0: (8.0, 8.0), 3: (6.0, 7.0), 6: (9.9, 9.9)})
    write_version(run, 1, range(5, 12), {8: (5.0, 6.0), 11: (4.5, 5.5)})
    rows, versions = read_rows(run)
    assert versions == 2
    assert max(int(r["step"]) for r in rows) == 11
    loaded = load_run(run)
    assert loaded.versions == 2 and loaded.tokens == 12 * TPS and loaded.steps == 12
    assert [y for _, y in loaded.val["en"]] == [8.0, 6.0, 5.0, 4.5]  # the stale step-6 point is dropped
    assert loaded.final("fr") == 5.5
    assert loaded.train_time_s == 5.0 + 7.0  # the throughput clock restarts per version


def test_json_shape_and_files(runs, tmp_path, capsys):
    out = tmp_path / "report"
    summary = report_main([runs["d1"], runs["d2"]], out_dir=out, format="json", titles=["en=D1", "fr=D2"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(summary))
    assert printed["sources"] == ["en", "fr"]
    entry = printed["runs"][1]
    for key in ("label", "run_dir", "parent", "versions", "steps", "tokens", "tokens_before", "tokens_total", "final",
                "average", "initial", "parent_final", "change", "train_time_s"):
        assert key in entry
    assert entry["final"] == {"en": 5.0, "fr": 4.0} and entry["tokens_total"] == 2000
    for name in ("report.md", "report.json", "val_loss.png", "lr.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "val_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "![" in md and "val_loss.png" in md and "Δ D1" in md
    assert json.loads((out / "report.json").read_text())["runs"][0]["final"]["en"] == 4.0


def test_markdown_format_prints_table(runs, tmp_path, capsys):
    report_main([runs["union"]], out_dir=tmp_path / "r", sources=["fr"])
    text = capsys.readouterr().out
    assert "| union | 2K | 4.100 | 4.100 |" in text


def test_missing_values_and_bad_input(runs, tmp_path):
    only_en = tmp_path / "only-en"
    write_version(only_en, 0, range(4), {3: (4.0, math.nan)})
    rows = table_rows(load_runs([only_en, runs["d1"]]))
    assert rows[0].final == {"en": 4.0, "fr": None} and rows[0].average is None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no logs/version_"):
        load_run(tmp_path / "empty")
    with pytest.raises(ValueError, match="labels"):
        load_runs([runs["d1"]], ["a", "b"])
    with pytest.raises(ValueError, match="sources"):
        report_main([runs["d1"]], out_dir=tmp_path / "r", sources=["de"])
    with pytest.raises(ValueError, match="NAME=TITLE"):
        report_main([runs["d1"]], out_dir=tmp_path / "r", titles=["en"])


def test_to_json_is_strict_json(runs):
    text = json.dumps(to_json(load_runs([runs["d1"], runs["d2"]])), allow_nan=False)
    assert json.loads(text)["runs"][1]["parent"].endswith("d1")


def test_cli_json(runs):
    proc = run_litcpt("report", "--runs", f"[{runs['d1']}, {runs['d2']}]", "--out_dir", str(runs["d1"].parent / "cli"),
                      "--format", "json", timeout=120)
    data = json.loads(proc.stdout)
    assert [r["label"] for r in data["runs"]] == ["d1", "d2"]
    bad = run_litcpt("report", "--runs", "[/nonexistent/run]", "--out_dir", str(runs["d1"].parent / "bad"),
                     check=False, timeout=120)
    assert bad.returncode != 0 and "does not exist" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_cli_positional_run_dirs(runs):
    """`litcpt report RUN_DIR RUN_DIR --format json`, the documented form."""
    proc = run_litcpt("report", str(runs["d1"]), str(runs["d2"]), "--out_dir", str(runs["d1"].parent / "pos"),
                      "--format", "json", timeout=120)
    assert [r["label"] for r in json.loads(proc.stdout)["runs"]] == ["d1", "d2"]


def test_tokens_are_the_tokens_trained_not_the_last_logged(tmp_path):
    """Issue 27: a run that logged ``train/tokens`` every 4 steps (an older litcpt, log_interval 4) reported the last
    logged value (800 of the 1200 tokens trained); the final validation's ``val/tokens`` says what was trained."""
    run = tmp_path / "run"
    write_config(run, None)
    path = run / "logs" / "version_0" / "metrics.csv"
    path.parent.mkdir(parents=True)
    rows = [{"step": s, "epoch": 0, "lr": 1e-3, "train/loss": 5.0, "train/tokens": (s + 1) * TPS} for s in (3, 7)]
    rows.append({"step": 11, "epoch": 0, "val/loss/en": 4.0, "val/loss": 4.0, "val/tokens": 12 * TPS})
    with open(path, "w", newline="") as fp:
        writer = csv.DictWriter(fp, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    loaded = load_run(run)
    assert loaded.tokens == 12 * TPS and loaded.steps == 12
