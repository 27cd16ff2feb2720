"""z-loss and skip-step: closed forms, a true skip (parameters and optimizer state untouched), logging, and a run
killed with SIGKILL that resumes bit-exactly with both on."""

from __future__ import annotations

import math
import signal

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from litcpt.callbacks import SkipSpikes
from litcpt.losses.stability import default_min_history, is_spike, spike_zscore, z_loss
from tests.helpers import child_env, read_metrics, run_litcpt, series, start_paused_at_save, tiny_recipe, wait_for


# --------------------------------------------------------------------------------------------------- pure functions
def test_z_loss_closed_form_and_mask():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])  # logsumexp: log 2, log 4
    expected = (math.log(2) ** 2 + math.log(4) ** 2) / 2
    assert z_loss(logits).item() == pytest.approx(expected, rel=1e-6)
    targets = torch.tensor([[1, -100]])  # the second position is ignored
    assert z_loss(logits, targets).item() == pytest.approx(math.log(2) ** 2, rel=1e-6)
    # a normalized softmax (logsumexp 0) has no z-loss; the gradient pushes logsumexp to 0
    x = torch.randn(4, 7).log_softmax(-1).requires_grad_()
    assert z_loss(x).item() == pytest.approx(0.0, abs=1e-10)
    y = (torch.randn(3, 5) + 2).requires_grad_()
    z_loss(y).backward()
    assert (y.grad.sum(-1) > 0).all()  # d/dlogits of lse^2 = 2 lse softmax: positive mass where lse > 0


def test_spike_rule():
    history = [1.0, 2.0, 3.0, 4.0, 5.0]  # mean 3, sample std sqrt(2.5)
    assert spike_zscore(history, 3.0 + 2 * math.sqrt(2.5)) == pytest.approx(2.0)
    assert is_spike(history, 3.0 + 2.01 * math.sqrt(2.5), sigma=2, min_history=5)
    assert not is_spike(history, 3.0 + 1.99 * math.sqrt(2.5), sigma=2, min_history=5)
    assert not is_spike(history, -100.0, sigma=2, min_history=5)  # only spikes above count
    assert not is_spike(history, 1e9, sigma=2, min_history=6)  # not enough history yet
    assert is_spike(history, float("nan"), sigma=2, min_history=5)
    assert is_spike([1.0, 1.0, 1.0], 1.5, sigma=6, min_history=3)  # constant window: anything above is a spike
    assert default_min_history(128) == 64 and default_min_history(8) == 8 and default_min_history(1000) == 500


def test_skip_spikes_window_and_arguments():
    cb = SkipSpikes(sigma=3, window=4, min_history=3)
    assert [cb.decide(v, 1.0) for v in (1.0, 1.1, 0.9)] == [False, False, False]
    assert cb.decide(10.0, 1.0)  # loss spike
    assert cb.losses == [1.0, 1.1, 0.9, 10.0]  # skipped values enter the window too (as OLMo-core)
    cb.decide(1.0, 1.0)
    assert cb.losses == [1.1, 0.9, 10.0, 1.0]  # the window keeps the last 4
    only_loss = SkipSpikes(sigma=3, window=4, min_history=3, watch="loss")
    for v in (1.0, 1.1, 0.9):
        only_loss.decide(1.0, v)
    assert not only_loss.decide(1.0, 50.0)  # grad-norm spike ignored
    for bad, match in (({"sigma": 0}, "sigma=0"), ({"window": 1}, "window=1"),
                       ({"window": 8, "min_history": 9}, "min_history=9"), ({"watch": "lr"}, "watch='lr'")):
        with pytest.raises(ValueError, match=match):
            SkipSpikes(**bad)


# ---------------------------------------------------------------------------------------- a true skip, in process
class SpikyModel(LightningModule):
    """Least squares on fixed data; the loss of optimizer step ``spike_step`` is multiplied by 1000."""

    spike_step = 8

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)
        self.x, self.y = torch.randn(64, 4, generator=gen), torch.randn(64, 1, generator=gen)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x, self.y), batch_size=16)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        return loss * 1000 if self.global_step == self.spike_step else loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=0.1)


class Record(Callback):
    def __init__(self):
        self.params, self.steps = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.params.append([p.detach().clone() for p in pl_module.parameters()])
        state = trainer.optimizers[0].state
        self.steps.append(max((int(s["step"]) for s in state.values()), default=0))


def test_a_spike_is_skipped_exactly(tmp_path):
    torch.manual_seed(0)
    record, skip = Record(), SkipSpikes(sigma=6, window=8, min_history=4, watch="loss")
    trainer = Trainer(max_steps=12, accelerator="cpu", devices=1, callbacks=[skip, record], logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path, gradient_clip_val=1.0)
    trainer.fit(SpikyModel())
    k = SpikyModel.spike_step
    assert skip.skipped_steps == 1 and skip.skipped_at == [k], (skip.skipped_at, skip.losses)
    assert all(torch.equal(a, b) for a, b in zip(record.params[k - 1], record.params[k]))  # no update
    assert record.steps[k] == record.steps[k - 1] == k  # AdamW's step count did not advance
    assert not all(torch.equal(a, b) for a, b in zip(record.params[k], record.params[k + 1]))  # next step updates
    assert record.steps[-1] == 11


# ------------------------------------------------------------------------------------------ end to end (subprocess)
STABLE = {"train.z_loss": 1e-4, "callbacks": [{"class_path": "litcpt.callbacks.SkipSpikes",
                                               "init_args": {"sigma": 0.5, "window": 8, "min_history": 4}},
                                              {"class_path": "litcpt.callbacks.EMA", "init_args": {"decay": 0.9}}]}


@pytest.mark.slow
def test_killed_run_with_z_loss_skip_step_and_ema_resumes_exactly(tmp_path):
    """A run with z-loss, skip-step and an EMA of the weights, killed with SIGKILL after its first checkpoint and
    resumed, ends with bitwise the raw weights, the EMA weights and the skipped steps of an uninterrupted run.
    Also: z-loss and skip counts are logged every step; the EMA is its own LitGPT dir; .ckpt files hold raw weights."""
    straight = tiny_recipe(tmp_path / "a", **{**STABLE, "train.max_steps": 20, "eval.interval": 100})
    run_litcpt("pretrain", "--config", str(straight))
    rows = read_metrics(tmp_path / "a" / "out")
    z = [v for _, v in series(rows, "train/z_loss")]
    assert len(z) == 20 and all(0 < v < 1e-2 for v in z)  # 1e-4 x logsumexp^2 (~ ln(4096)^2 = 69 at init)
    skipped = [v for _, v in series(rows, "train/skipped_steps")]
    assert skipped == sorted(skipped) and skipped[-1] >= 1  # sigma 0.5 skips some steps
    assert len(series(rows, "train/grad_norm")) == 20

    killed = tiny_recipe(tmp_path / "b", **{**STABLE, "train.max_steps": 20, "eval.interval": 100})
    env = child_env()
    # killed once last.ckpt exists (step 10), at the latest paused in the step-20 saves (the 3rd .ckpt save)
    proc = start_paused_at_save(3, tmp_path / "paused", "pretrain", "--config", str(killed), env=env)
    ckpt = tmp_path / "b" / "out" / "checkpoints" / "last.ckpt"  # first written at step 10
    wait_for(ckpt, proc, or_marker=tmp_path / "paused")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (tmp_path / "b" / "out" / "final").exists(), "killed too late to test resume"
    run_litcpt("pretrain", "--config", str(killed), "--resume", "true")

    for name in ("final", "final-ema", "step-00000020", "step-00000020-ema"):
        a = torch.load(tmp_path / "a" / "out" / name / "lit_model.pth", weights_only=True)
        b = torch.load(tmp_path / "b" / "out" / name / "lit_model.pth", weights_only=True)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    out = tmp_path / "a" / "out"
    raw, ema = (torch.load(out / n / "lit_model.pth", weights_only=True) for n in ("final", "final-ema"))
    assert not all(torch.equal(raw[k], ema[k]) for k in raw)  # the EMA is not the raw model
    for f in ("model_config.yaml", "tokenizer.json", "config.yaml"):
        assert (out / "final-ema" / f).is_file()
    # the Lightning checkpoint keeps the raw weights as the model; the average rides along
    ckpt = torch.load(out / "checkpoints" / "step-00000010.ckpt", weights_only=True)
    step10 = torch.load(out / "step-00000010" / "lit_model.pth", weights_only=True)
    assert all(torch.equal(ckpt["state_dict"]["model." + k], v) for k, v in step10.items())
    ema10 = torch.load(out / "step-00000010-ema" / "lit_model.pth", weights_only=True)
    assert all(torch.equal(ckpt["averaged_state_dict"]["module.model." + k], v) for k, v in ema10.items())

    def skip_state(run):
        ckpt = torch.load(tmp_path / run / "out" / "checkpoints" / "last.ckpt", weights_only=True)
        return next(v for k, v in ckpt["callbacks"].items() if k.startswith("SkipSpikes"))

    sa, sb = skip_state("a"), skip_state("b")
    assert sa["skipped_steps"] >= 1 and any(s >= 10 for s in sa["skipped_at"])  # skips after the kill point too
    assert sa == sb
