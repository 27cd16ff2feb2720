"""The script of docs/trainer.md runs as written, on 1 rank and on 2 gloo CPU ranks (DDP), and its logged
``train/loss`` of every optimizer step is the mean of the losses of that step's micro-batches on every rank.

The script runs through a small wrapper that adds a recording callback to every ``lightning.Trainer`` it builds (the
DDP launcher re-runs the wrapper for rank 1, so both ranks record): each rank writes the loss of each micro-batch."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests import forked
from tests.helpers import REPO, read_metrics, series

pytestmark = pytest.mark.slow

WRAPPER = '''
import json, os, sys
import lightning as L

class RecordLosses(L.Callback):
    """Each micro-batch's loss (Lightning divides the returned loss by accumulate_grad_batches: undone here)."""
    def __init__(self):
        self.rows = []
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.step = trainer.global_step
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rows.append([self.step, float(outputs["loss"]) * trainer.accumulate_grad_batches])
    def on_fit_end(self, trainer, pl_module):
        with open(os.path.join(OUT, f"losses-rank{trainer.global_rank}.json"), "w") as f:
            json.dump(self.rows, f)

OUT = sys.argv[sys.argv.index("--out_dir") + 1]
init = L.Trainer.__init__
def patched(self, *args, callbacks=None, **kwargs):
    init(self, *args, callbacks=[*(callbacks or []), RecordLosses()], **kwargs)
L.Trainer.__init__ = patched
path = os.environ["EXAMPLE"]  # exec, not runpy: sys.argv[0] stays this wrapper, which DDP relaunches for rank 1
exec(compile(open(path).read(), path, "exec"), {"__name__": "__main__", "__file__": path})
'''


def doc_script() -> str:
    text = (REPO / "docs/trainer.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "docs/trainer.md: expected exactly one python code block (the runnable example)"
    return blocks[0]


def run_example(tmp_path: Path, devices: int) -> tuple[Path, subprocess.CompletedProcess]:
    example, wrapper, out = tmp_path / "trainer_example.py", tmp_path / "wrapper.py", tmp_path / "out"
    example.write_text(doc_script())
    wrapper.write_text(WRAPPER)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK",
                                "WORLD_SIZE", "MASTER_"))}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", EXAMPLE=str(example))
    # `python wrapper.py ...` in a process forked from this one (tests/forked.py: no second ~6 s of imports); with
    # 2 devices, Lightning starts rank 1 as a new `python wrapper.py ...` process, as for a user
    proc = forked.start([str(wrapper), "--devices", str(devices), "--out_dir", str(out)], env=env, cwd=tmp_path)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-4000:]
    return out, subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("devices", [1, pytest.param(2, marks=pytest.mark.distributed)])
def test_doc_example_logs_the_mean_loss_over_micro_batches_and_ranks(tmp_path, devices):
    out, proc = run_example(tmp_path, devices)
    per_step: dict[int, list[float]] = {}
    for rank in range(devices):
        for step, loss in json.loads((out / f"losses-rank{rank}.json").read_text()):
            per_step.setdefault(step, []).append(loss)
    assert sorted(per_step) == [0, 1, 2, 3] and all(len(v) == 2 * devices for v in per_step.values())
    rows = read_metrics(out)
    logged = dict(series(rows, "train/loss"))
    assert sorted(logged) == [0, 1, 2, 3]
    for step, losses in per_step.items():
        assert logged[step] == pytest.approx(sum(losses) / len(losses), rel=1e-6, abs=0)
        assert logged[step] != pytest.approx(losses[-1], rel=1e-6, abs=0)  # not just one micro-batch's loss
    # tokens_per_step derived from the trainer: 2 sequences x 32 tokens x 2 micro-batches x ranks
    assert f"tokens per step: {2 * 32 * 2 * devices} " in proc.stdout
    assert dict(series(rows, "train/tokens"))[3] == 4 * 2 * 32 * 2 * devices
    # LearningRateMonitor listed before WarmupCosineLR still logs each step's own LR (warmup 1 step, then cosine)
    lrs = dict(series(rows, "lr-AdamW"))
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(1e-3) and lrs[3] < lrs[2] < lrs[1]
    assert [step for step, _ in series(rows, "val/loss")] == [1, 3]  # val_check_interval=4 micro-batches = 2 steps
