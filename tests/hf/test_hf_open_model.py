"""The open-model continual-pretraining path, offline: a Hugging Face Llama-style checkpoint (a tiny random
``LlamaForCausalLM`` saved with ``save_pretrained``) -> LitGPT's own ``litgpt convert_to_litgpt`` -> ``litcpt
pretrain`` with replay (``recipes/gpu/continue-open-model.yaml`` shrunk by command-line overrides: CPU, a few steps,
the bundled data) -> ``litcpt export`` -> ``transformers`` loads it and its logits equal litcpt's (float32)."""

from __future__ import annotations

import shutil

import pytest
import torch

from tests.helpers import REPO, read_metrics, run_litcpt, run_litgpt, series

transformers = pytest.importorskip("transformers")

TOL = 1e-4
NAME = "litcpt-test-open-llama"  # a LitGPT config name registered for this test only
LIT_CONFIG = dict(name=NAME, hf_config={"org": "litcpt-test", "name": NAME}, block_size=128, vocab_size=4096,
                  padded_vocab_size=4096, n_layer=2, n_head=4, n_embd=64, n_query_groups=2, rotary_percentage=1.0,
                  parallel_residual=False, bias=False, norm_class_name="RMSNorm", norm_eps=1e-5,
                  mlp_class_name="LLaMAMLP", intermediate_size=96, rope_base=10000)


def hf_llama(path):
    """A random ``LlamaForCausalLM`` in the Hugging Face layout (``save_pretrained``) with the bundled tokenizer."""
    from litcpt.assets import tokenizer_dir

    config = transformers.LlamaConfig(vocab_size=4096, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                      rms_norm_eps=1e-5, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # norms off 1, larger weights: a weight copied to the wrong place shows
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tokenizer_dir() / name, path / name)
    return model


def lit_logits(checkpoint_dir, ids):
    from litgpt import GPT, Config

    from litcpt.runtime.checkpoint import load_state_dict

    gpt = GPT(Config.from_file(checkpoint_dir / "model_config.yaml"))
    gpt.load_state_dict(load_state_dict(checkpoint_dir / "lit_model.pth"))
    with torch.no_grad():
        return gpt.eval()(ids)


@pytest.mark.slow
def test_open_model_continual_pretraining_exports_to_transformers(tmp_path, monkeypatch):
    import litgpt.config

    hf_dir = tmp_path / "checkpoints" / "hf-llama"
    original = hf_llama(hf_dir)
    # LitGPT's converter takes its architecture from a registered config name (Config.from_name), as for any hub
    # model: a tiny Llama-style one is registered for this test only.
    monkeypatch.setitem(litgpt.config.name_to_config, NAME, LIT_CONFIG)
    run_litgpt("convert_to_litgpt", str(hf_dir), "--model_name", NAME)
    ids = torch.randint(1, 4000, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        start = original(input_ids=ids).logits
    assert torch.allclose(lit_logits(hf_dir, ids), start, atol=TOL, rtol=0)  # the converted checkpoint is the model

    # the domain corpus and the "pretraining sample" replayed: the smaller bundled book of each language
    pretrain, out = REPO / "litcpt/assets/data/pretrain", tmp_path / "cpt"
    run_litcpt(
        "pretrain", "--config", str(REPO / "recipes/gpu/continue-open-model.yaml"),
        "--initial_checkpoint_dir", str(hf_dir), "--out_dir", str(out),
        "--data.init_args.new.init_args.train_data_path", str(pretrain / "fr" / "notre-dame-de-paris.txt"),
        "--data.init_args.new.init_args.num_workers", "0",
        "--data.init_args.new.init_args.cache_dir", str(tmp_path / "cache"),
        "--data.init_args.replay.init_args.train_data_path", str(pretrain / "en" / "wonderland.txt"),
        "--data.init_args.replay.init_args.num_workers", "0",
        "--data.init_args.replay.init_args.cache_dir", str(tmp_path / "cache"),
        "--data.init_args.fraction", "0.25",
        "--train.compile", "false", "--train.global_batch_size", "4", "--train.micro_batch_size", "4",
        "--train.max_seq_length", "64", "--train.max_tokens", "null", "--train.max_steps", "4",
        "--train.log_interval", "1", "--train.save_interval", "1", "--eval.interval", "4", "--eval.max_iters", "1",
        "--precision", "32-true", "--strategy", "auto", "--accelerator", "cpu", "--devices", "1",
        "--optimizer.init_args.lr", "1e-3",
    )
    rows = read_metrics(out)
    assert len(series(rows, "train/loss")) == 4
    for corpus in ("domain", "pile"):  # the recipe's initial validation, then the last step's, on both corpora
        assert len(series(rows, f"val/loss/{corpus}")) >= 2, corpus
    # the recipe's keep_checkpoints: 3 keeps the latest three step checkpoints (and last.ckpt)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "last.ckpt", "step-00000002.ckpt", "step-00000003.ckpt", "step-00000004.ckpt"]
    final = out / "final"
    ours = lit_logits(final, ids)
    assert not torch.allclose(ours, start, atol=1e-3)  # it trained

    run_litcpt("export", "--checkpoint_dir", str(final), "--out_dir", str(tmp_path / "hf-out"))
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf-out", dtype=torch.float32).eval()
    assert type(model).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        theirs = model(input_ids=ids).logits
    assert torch.allclose(theirs, ours, atol=TOL, rtol=0), (theirs - ours).abs().max()
