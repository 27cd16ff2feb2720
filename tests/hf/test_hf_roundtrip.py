"""Hugging Face interchange, offline: tiny random models of every family built with ``transformers`` (config objects,
no download), imported with ``litcpt import-reward-model``, exported with ``litcpt export``, and ``transformers``'
rewards / logits compared with litcpt's (float32, <= 1e-4)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from litcpt.hf.families import FAMILIES
from tests.conftest import make_checkpoint, tiny_config
from tests.helpers import run_litcpt

transformers = pytest.importorskip("transformers")

TOL = 1e-4
SIZE = dict(vocab_size=4096, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=128,
            num_labels=1)


def hf_config(family: str):
    """A tiny ``transformers`` config of ``family`` (one label)."""
    if family in ("llama", "mistral", "qwen2"):
        cls = {"llama": "LlamaConfig", "mistral": "MistralConfig", "qwen2": "Qwen2Config"}[family]
        return getattr(transformers, cls)(**SIZE, intermediate_size=96, num_key_value_heads=2)
    if family == "qwen3":
        return transformers.Qwen3Config(**SIZE, intermediate_size=96, num_key_value_heads=2, head_dim=32)
    if family == "gemma":
        return transformers.GemmaConfig(**SIZE, intermediate_size=96, num_key_value_heads=1, head_dim=16)
    if family == "gpt_neox":
        return transformers.GPTNeoXConfig(**SIZE, intermediate_size=128, rotary_pct=0.25)
    return transformers.PhiConfig(**SIZE, intermediate_size=128, partial_rotary_factor=0.5)


def make_hf_reward_model(path: Path, family: str, seed: int = 0) -> Path:
    """A random ``<Family>ForSequenceClassification`` saved with the bundled tokenizer (norms and biases perturbed,
    so that a weight copied to the wrong place shows)."""
    from litcpt.assets import tokenizer_dir

    torch.manual_seed(seed)
    model = transformers.AutoModelForSequenceClassification.from_config(hf_config(family)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.5 if name.startswith("score") else 0.05))
    model.save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tokenizer_dir() / name, path / name)
    return path


def export(checkpoint_dir: Path, out_dir: Path) -> Path:
    """``litcpt export`` (the command's function: the CLI's parse is tested once, in
    :func:`test_cli_export_and_import_keep_config_yaml_and_fail_in_one_line`)."""
    from litcpt.commands.export import main

    return main(checkpoint_dir=checkpoint_dir, out_dir=out_dir)


def import_reward_model(hf_dir: Path, out_dir: Path) -> Path:
    """``litcpt import-reward-model`` (the command's function)."""
    from litcpt.commands.import_reward_model import main

    return main(hf_dir=hf_dir, out_dir=out_dir)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """``imported(family)``: a random HF classifier of ``family`` and its ``litcpt import-reward-model`` dir, made once
    per module (the round trip and the training test share them; neither changes them)."""
    made: dict[str, tuple[Path, Path]] = {}

    def get(family: str) -> tuple[Path, Path]:
        if family not in made:
            root = tmp_path_factory.mktemp(f"imported-{family}")
            hf = make_hf_reward_model(root / "hf", family)
            made[family] = hf, import_reward_model(hf, root / "lit")
        return made[family]

    return get


def sequences(n: int = 4, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 4000, (int(length),), generator=g) for length in torch.randint(3, 17, (n,), generator=g)]


def litcpt_rewards(checkpoint: Path, seqs: list[torch.Tensor]) -> torch.Tensor:
    from litcpt.models.reward import load_reward_model

    rm = load_reward_model(checkpoint)
    ids = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    with torch.no_grad():
        return rm(ids, torch.tensor([len(s) - 1 for s in seqs]))


def hf_rewards(hf_dir: Path, seqs: list[torch.Tensor]) -> torch.Tensor:
    """``transformers``' rewards of ``seqs``, one padded batch (right padding with the config's pad token)."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(hf_dir, dtype=torch.float32).eval()
    pad = model.config.pad_token_id
    if pad is None:  # one row at a time
        with torch.no_grad():
            return torch.stack([model(input_ids=s[None]).logits[0, 0] for s in seqs])
    ids = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=pad)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=(ids != pad).long()).logits[:, 0]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_import_then_export_matches_transformers(tmp_path, imported, family):
    """HF classifier -> litcpt (rewards equal transformers') -> HF again (loads with AutoModelForSequenceClassification,
    batched with its pad token, rewards equal litcpt's and the original's)."""
    hf, lit = imported(family)
    seqs = sequences()
    ours, theirs = litcpt_rewards(lit, seqs), hf_rewards(hf, seqs)
    assert theirs.abs().max() > 0.05  # rewards worth comparing
    assert torch.allclose(ours, theirs, atol=TOL, rtol=0), (ours, theirs)

    export(lit, tmp_path / "hf2")
    config = json.loads((tmp_path / "hf2" / "config.json").read_text())
    assert config["num_labels"] == 1 and config["architectures"][0].endswith("ForSequenceClassification")
    assert config["pad_token_id"] not in (None, config["eos_token_id"])
    back = hf_rewards(tmp_path / "hf2", seqs)
    assert torch.allclose(back, ours, atol=TOL, rtol=0), (back, ours)


LIT_FAMILIES = {
    "llama": dict(name="Llama-tiny"),
    "qwen3": dict(name="Qwen3-tiny", norm_qk=True, head_size=32),
    "gpt_neox": dict(name="pythia-tiny", mlp_class_name="GptNeoxMLP", norm_class_name="LayerNorm", bias=True,
                     parallel_residual=True, rotary_percentage=0.25),
    "phi": dict(name="phi-tiny", mlp_class_name="GptNeoxMLP", norm_class_name="LayerNorm", bias=True,
                parallel_residual=True, shared_attention_norm=True, lm_head_bias=True, rotary_percentage=0.5,
                gelu_approximate="tanh"),
}


@pytest.mark.parametrize("family", list(LIT_FAMILIES))
@pytest.mark.parametrize("head", ["linear", "logit"])
def test_litcpt_reward_model_exports_with_its_rewards(tmp_path, family, head):
    """A litcpt reward model (either head, a non-zero head bias) exports as a classifier with litcpt's rewards: the
    repurposed logit as its LM-head row; the bias folded into a LayerNorm's bias, else recorded."""
    from litcpt.assets import tokenizer_dir
    from litcpt.models.reward import RewardModel
    from litcpt.runtime.checkpoint import save_litgpt_dir

    config = tiny_config(**LIT_FAMILIES[family], n_embd=64, n_head=4, n_query_groups=4)
    torch.manual_seed(0)
    rm = RewardModel(config, head=head, token_id=0 if head == "logit" else None)
    with torch.no_grad():
        for p in rm.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        rm.head.bias.fill_(0.25)
    weights, extra = rm.litgpt_export(rm.state_dict())
    save_litgpt_dir(weights, config, tmp_path / "rm", tokenizer_dir=tokenizer_dir(), extra_objects=extra)
    export(tmp_path / "rm", tmp_path / "hf")
    seqs = sequences()
    ours = litcpt_rewards(tmp_path / "rm", seqs)
    config_json = json.loads((tmp_path / "hf" / "config.json").read_text())
    bias = config_json.get("litcpt_reward_bias", 0.0)
    assert bias == (0.0 if family in ("gpt_neox", "phi") else pytest.approx(0.25))
    theirs = hf_rewards(tmp_path / "hf", seqs)
    assert torch.allclose(theirs + bias, ours, atol=TOL, rtol=0), (theirs + bias, ours)
    import_reward_model(tmp_path / "hf", tmp_path / "back")
    assert torch.allclose(litcpt_rewards(tmp_path / "back", seqs), ours, atol=TOL, rtol=0)


@pytest.mark.parametrize("family", ["llama", "gpt_neox", "phi"])
def test_language_model_exports_for_causal_lm(tmp_path, family):
    """A LitGPT checkpoint without a reward head (pretrain / DPO output) exports as ``<Family>ForCausalLM``: same
    logits."""
    from litgpt import GPT

    from litcpt.runtime.checkpoint import load_state_dict

    config = tiny_config(**LIT_FAMILIES[family], n_embd=64, n_head=4, n_query_groups=4)
    ckpt = make_checkpoint(tmp_path / "lm", config)
    export(ckpt, tmp_path / "hf")
    gpt = GPT(config)
    gpt.load_state_dict(load_state_dict(ckpt / "lit_model.pth"))
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    ids = torch.randint(1, 4000, (2, 12))
    with torch.no_grad():
        ours, theirs = gpt.eval()(ids), model(input_ids=ids).logits
    assert torch.allclose(ours, theirs, atol=TOL, rtol=0), (ours - theirs).abs().max()


def test_cli_export_and_import_keep_config_yaml_and_fail_in_one_line(tmp_path, tiny_checkpoint):
    """Through the CLI: the run's ``config.yaml`` (written into ``out_dir`` first) is kept beside the export; an
    ``out_dir`` with anything else and a dir that is no HF model are one-line errors."""
    run_litcpt("export", "--checkpoint_dir", str(tiny_checkpoint), "--out_dir", str(tmp_path / "lm"))
    assert {"config.yaml", "config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in (tmp_path / "lm").iterdir()}
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    proc = run_litcpt("export", "--checkpoint_dir", str(tiny_checkpoint), "--out_dir", str(tmp_path / "full"),
                      check=False)
    assert proc.returncode != 0 and "out_dir:" in proc.stderr and "not an empty directory" in proc.stderr
    proc = run_litcpt("import-reward-model", "--hf_dir", str(tiny_checkpoint), "--out_dir", str(tmp_path / "x"),
                      check=False)
    assert proc.returncode != 0 and "config.json" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_imported_model_trains_in_litcpt_and_exports(tmp_path, imported, family):
    """HF classifier -> litcpt -> a few ``litcpt reward`` steps -> export: transformers' rewards equal litcpt's."""
    from litcpt.assets import preference_file
    from litcpt.commands.reward import setup
    from litcpt.data import Preference
    from litcpt.data.preference.pair_loading import load_preference_pairs
    from litcpt.training.args import EvalArgs, TrainArgs

    _, lit = imported(family)
    pairs = load_preference_pairs(preference_file())[:8]
    data_file = tmp_path / "pairs.jsonl"
    data_file.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                                 for p in pairs))
    out = setup(lit, out_dir=tmp_path / "rm", data=Preference(train_data_path=data_file,
                                                                             val_data_path=data_file, max_length=64),
                train=TrainArgs(global_batch_size=4, micro_batch_size=4, max_steps=3, save_interval=None),
                eval=EvalArgs(interval=3, max_iters=1), accelerator="cpu",
                optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}})
    export(out, tmp_path / "hf2")
    seqs = sequences()
    ours = litcpt_rewards(out, seqs)
    assert not torch.allclose(ours, litcpt_rewards(lit, seqs), atol=1e-3)  # it trained
    assert torch.allclose(hf_rewards(tmp_path / "hf2", seqs), ours, atol=TOL, rtol=0)


@pytest.mark.slow
def test_litcpt_reward_continues_an_imported_models_head(tmp_path, imported):
    """``litcpt reward --checkpoint_dir <imported>`` fine-tunes the imported classifier, head included: its step-0
    validation (rewards, margin, loss) equals a scoring pass of the imported model (whose rewards equal
    transformers', test_import_then_export_matches_transformers)."""
    from litcpt.commands.reward import setup
    from litcpt.data import Preference
    from litcpt.training.args import EvalArgs, TrainArgs
    from tests.helpers import initial_val_and_scored, write_pairs

    hf, lit = imported("llama")
    train_file, val_file = write_pairs(tmp_path / "train.jsonl", 8), write_pairs(tmp_path / "val.jsonl", 4)
    data = Preference(train_data_path=train_file, val_data_path=val_file, max_length=64)
    out = setup(lit, out_dir=tmp_path / "rm", data=data,
                train=TrainArgs(global_batch_size=4, micro_batch_size=4, max_steps=2, save_interval=None),
                eval=EvalArgs(interval=2, max_iters=1, initial_validation=True), accelerator="cpu",
                optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}})
    at_start, imported_scores = initial_val_and_scored(tmp_path / "rm", data, lit)
    assert abs(imported_scores[1]) > 1e-3  # the imported head separates the pairs: a fresh head would not match
    assert at_start == pytest.approx(imported_scores, abs=1e-5, rel=0)
    assert json.loads((out / "reward_model.json").read_text())["head"] == "linear"
    seqs = sequences()
    assert not torch.allclose(litcpt_rewards(out, seqs), litcpt_rewards(lit, seqs), atol=1e-3)  # it trained
