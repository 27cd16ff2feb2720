"""`litcpt merge`: the average of LitGPT checkpoints is the exact parameter mean; mismatches end in one line."""

from __future__ import annotations

import json

import pytest
import torch

from litcpt.averaging.merge import average_checkpoints, weighted_mean
from litcpt.cli.main import main
from tests.conftest import make_checkpoint, tiny_config


def load(path):
    return torch.load(path / "lit_model.pth", weights_only=True)


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    return exc.value.code, capsys.readouterr().err


def test_merge_of_two_is_their_exact_mean(tmp_path, capsys):
    a, b = make_checkpoint(tmp_path / "a", seed=1), make_checkpoint(tmp_path / "b", seed=2)
    main(["merge", str(a), str(b), "--out_dir", str(tmp_path / "soup")])
    soup, sa, sb = load(tmp_path / "soup"), load(a), load(b)
    assert soup.keys() == sa.keys()
    for key in sa:
        assert soup[key].dtype == sa[key].dtype
        assert torch.equal(soup[key], (sa[key] + sb[key]) / 2), key
    # a complete LitGPT dir: loads into litgpt.GPT with the same config and tokenizer
    from litgpt import GPT, Config

    GPT(Config.from_file(tmp_path / "soup" / "model_config.yaml")).load_state_dict(soup)
    assert (tmp_path / "soup" / "tokenizer.json").read_bytes() == (a / "tokenizer.json").read_bytes()
    record = json.loads((tmp_path / "soup" / "merge.json").read_text())
    assert record["weights"] == [0.5, 0.5] and len(record["sources"]) == 2
    assert "litcpt merge: 2 checkpoints" in capsys.readouterr().out


def test_weighted_merge_matches_float64_reference(tmp_path):
    dirs = [make_checkpoint(tmp_path / f"c{i}", seed=i) for i in range(3)]
    weights = [0.5, 0.3, 0.2]
    main(["merge", *map(str, dirs), "--weights", "[0.5, 0.3, 0.2]", "--out_dir", str(tmp_path / "soup")])
    soup = load(tmp_path / "soup")
    states = [load(d) for d in dirs]
    for key in soup:
        ref = sum(w * s[key].double() for w, s in zip(weights, states)) / sum(weights)
        assert torch.equal(soup[key], ref.float()), key
    # a zero weight drops a checkpoint: the mean of the other two
    out = average_checkpoints(dirs, [1.0, 0.0, 1.0])
    for key in out:
        assert torch.equal(out[key], (states[0][key] + states[2][key]) / 2)


def test_weighted_mean_rounds_once_in_bf16():
    a = torch.randn(1000).bfloat16()
    b = torch.randn(1000).bfloat16()
    got = weighted_mean([a, b], [1.0, 3.0])
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, ((a.double() + 3 * b.double()) / 4).bfloat16())


def test_last_k_checkpoints_of_a_run(tmp_path):
    run = tmp_path / "run"
    for step, seed in ((10, 1), (20, 2), (30, 3)):
        make_checkpoint(run / f"step-{step:08d}", seed=seed)
    make_checkpoint(run / "final", seed=3)
    main(["merge", str(run), "--last", "2", "--out_dir", str(tmp_path / "pma")])
    s20, s30, soup = load(run / "step-00000020"), load(run / "step-00000030"), load(tmp_path / "pma")
    for key in soup:
        assert torch.equal(soup[key], (s20[key] + s30[key]) / 2)
    record = json.loads((tmp_path / "pma" / "merge.json").read_text())
    assert [p.rsplit("/", 1)[1] for p in record["sources"]] == ["step-00000020", "step-00000030"]


def test_mismatched_config_is_one_line(tmp_path, capsys):
    a = make_checkpoint(tmp_path / "a")
    b = make_checkpoint(tmp_path / "b", config=tiny_config(n_layer=3))
    code, err = run_cli(capsys, "merge", str(a), str(b), "--out_dir", str(tmp_path / "soup"))
    assert code == 1
    assert err.count("\n") == 1 and "model_config.yaml differs" in err and "n_layer: 2 vs 3" in err
    assert not (tmp_path / "soup" / "lit_model.pth").exists()


def test_mismatched_tokenizer_is_one_line(tmp_path, capsys):
    a, b = make_checkpoint(tmp_path / "a"), make_checkpoint(tmp_path / "b")
    tok = json.loads((b / "tokenizer.json").read_text())
    tok["added_tokens"] = tok.get("added_tokens", []) + [{"id": 4095, "content": "<x>", "single_word": False,
                                                           "lstrip": False, "rstrip": False, "normalized": False,
                                                           "special": True}]
    (b / "tokenizer.json").write_text(json.dumps(tok))
    code, err = run_cli(capsys, "merge", str(a), str(b), "--out_dir", str(tmp_path / "soup"))
    assert code == 1 and err.count("\n") == 1 and "tokenizer.json differs" in err


@pytest.mark.parametrize("case, expected", [
    ("one", "at least two checkpoints"),
    ("weights", "got 1 weights for 2 checkpoints"),
    ("negative", "weights[1]=-1.0 must be a non-negative"),
    ("missing", "is not a directory"),
    ("shape", "lm_head.weight is (4095, 32)"),
    ("into_input", "is one of the checkpoints being averaged"),
    ("into_run", "exists and holds"),
])
def test_bad_input_is_one_line(tmp_path, capsys, case, expected):
    a, b = make_checkpoint(tmp_path / "a", seed=1), make_checkpoint(tmp_path / "b", seed=2)
    out = tmp_path / "soup"
    args = {"one": [str(a)], "weights": [str(a), str(b), "--weights", "[1.0]"],
            "negative": [str(a), str(b), "--weights", "[1.0, -1.0]"],
            "missing": [str(a), str(tmp_path / "nope")], "shape": [str(a), str(b)],
            "into_input": [str(a), str(b)], "into_run": [str(a), str(b)]}[case]
    if case == "shape":  # same config file, different tensors: caught at the tensor
        sd = load(b)
        sd["lm_head.weight"] = sd["lm_head.weight"][:-1]
        torch.save(sd, b / "lit_model.pth")
    if case == "into_input":
        out = b
    if case == "into_run":
        (out / "logs").mkdir(parents=True)
    code, err = run_cli(capsys, "merge", *args, "--out_dir", str(out))
    assert code in (1, 2) and expected in err and err.count("\n") == 1, err
    if case == "into_run":
        assert (out / "logs").is_dir()  # nothing of the existing dir was removed
