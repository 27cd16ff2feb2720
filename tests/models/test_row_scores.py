"""Row scores over groups of completions that share a prompt (litcpt.models.row_scores): prompt sharing with
``groups`` equals plain forwards and a one-sequence loop, for sum / avg / norm log-probs and reward heads."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from litgpt import GPT

from litcpt.data.preference.best_of_n import TokenizedGroup, collate_groups, group_shared_lengths
from litcpt.models.reward import RewardModel
from litcpt.models.row_scores import reduce_logps, row_logps, row_rewards
from tests.conftest import tiny_config


def groups_of(seed=0):
    """Three prompts with 3, 2 and 4 completions of different lengths (one completion repeated)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for index, (prompt_len, lengths) in enumerate([(5, [3, 6, 2]), (9, [4, 1]), (2, [7, 3, 3, 5])]):
        prompt = torch.randint(1, 4000, (prompt_len,), generator=g)
        rows = [torch.cat([prompt, torch.randint(1, 4000, (n,), generator=g)]) for n in lengths]
        if index == 2:
            rows[2] = rows[1].clone()
        out.append(TokenizedGroup(index=index, rows=tuple(rows), prompt_lengths=(prompt_len,) * len(rows),
                                  num_correct=1))
    return out


def loop_logps(model, ids, prompt_length, how):
    with torch.no_grad():
        logits = model(ids.view(1, -1))[0].double()
    terms = [F.log_softmax(logits[t - 1], -1)[int(ids[t])].item() for t in range(prompt_length, len(ids))]
    return {"sum": sum(terms), "avg": sum(terms) / len(terms), "norm": -math.sqrt(sum(t * t for t in terms))}[how]


@pytest.mark.parametrize("how", ["sum", "avg", "norm"])
def test_row_logps_shared_plain_and_loop_agree(how):
    torch.manual_seed(0)
    model = GPT(tiny_config()).eval()
    groups = groups_of()
    batch = collate_groups(groups)
    assert batch["shared"].tolist() == [5, 9, 2]
    with torch.inference_mode():
        shared = row_logps(model, batch, reduction=how, share_prompt=True, rows_per_forward=2)
        plain = row_logps(model, batch, reduction=how, share_prompt=False)
    want = [loop_logps(model, r, n, how) for g in groups for r, n in zip(g.rows, g.prompt_lengths)]
    assert shared.tolist() == pytest.approx(want, abs=1e-4)
    assert plain.tolist() == pytest.approx(want, abs=1e-4)


def test_row_rewards_shared_equals_plain():
    torch.manual_seed(0)
    rm = RewardModel(tiny_config()).eval()
    batch = collate_groups(groups_of(1))
    with torch.inference_mode():
        shared = row_rewards(rm, batch, share_prompt=True, rows_per_forward=3)
        plain = row_rewards(rm, batch, share_prompt=False)
        loop = [rm(r.view(1, -1), torch.tensor([len(r) - 1])).item() for g in groups_of(1) for r in g.rows]
    assert shared.tolist() == pytest.approx(loop, abs=1e-5) and plain.tolist() == pytest.approx(loop, abs=1e-5)


def test_reduce_and_shared_lengths():
    values, rows = torch.tensor([-1.0, -2.0, -3.0, -4.0]), torch.tensor([0, 0, 2, 2])
    assert reduce_logps(values, rows, 3, "sum").tolist() == [-3.0, 0.0, -7.0]
    assert reduce_logps(values, rows, 3, "avg").tolist() == [-1.5, 0.0, -3.5]
    assert reduce_logps(values, rows, 3, "norm").tolist() == pytest.approx([-math.sqrt(5), 0.0, -5.0])
    with pytest.raises(ValueError, match="reduction"):
        reduce_logps(values, rows, 3, "mean")
    assert group_shared_lengths([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]], [3, 3, 3]) == 2     # common prefix
    assert group_shared_lengths([[1, 2, 3], [1, 2, 3, 4]], [3, 3]) == 2                   # a token of its own
