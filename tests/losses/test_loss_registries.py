"""The loss registries are the one list of the loss names (the CLI's choices are read off them, no other list of
the names exists in litcpt/), and DPOLoss validates once, at construction, with one-line errors naming the field."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing
from pathlib import Path

import pytest
import torch

from litcpt.losses import preference
from litcpt.losses.preference import DPO_LOSSES, F_DIVERGENCES, DPOLoss, dpo, dpo_terms
from litcpt.losses.reward import REWARD_LOSSES

PACKAGE = Path(preference.__file__).resolve().parents[1]


def _literal_choices(annotation) -> set[str]:
    """The strings of every ``Literal`` inside a (possibly ``Union``/``list``) annotation."""
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    return set().union(*(_literal_choices(arg) for arg in typing.get_args(annotation)))


def _annotation(fn, name: str):
    return typing.get_type_hints(fn)[name]


# ----------------------------------------------------------------------------------------------- the one list
def test_cli_and_module_choices_are_the_registry_keys():
    from litcpt.commands.dpo import setup
    from litcpt.models.dpo import DPOModel
    from litcpt.models.reward import RewardModel

    assert _literal_choices(_annotation(setup, "loss_type")) == set(DPO_LOSSES)
    assert _literal_choices(_annotation(DPOModel.__init__, "loss_type")) == set(DPO_LOSSES)
    assert _literal_choices(_annotation(setup, "f_divergence_type")) == set(F_DIVERGENCES)
    assert _literal_choices(_annotation(DPOModel.__init__, "f_divergence_type")) == set(F_DIVERGENCES)
    assert _literal_choices(_annotation(RewardModel.__init__, "loss_type")) == set(REWARD_LOSSES)
    # the order the errors and --help show is the registry's
    assert typing.get_args(preference.DPOLossName) == tuple(DPO_LOSSES)


def _name_lists(source: str, names: set[str]) -> list[int]:
    """Lines of the list/tuple/set literals (``Literal[...]``'s too) holding two or more of ``names`` as strings
    (``__all__`` aside: ``bradley_terry`` and ``logistic`` are also the functions' names)."""
    tree = ast.parse(source)
    exports = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.List, ast.Tuple, ast.Set)) or id(node) in exports:
            continue
        strings = {item.value for item in node.elts if isinstance(item, ast.Constant) and isinstance(item.value, str)}
        if len(strings & names) >= 2:
            found.append(node.lineno)
    return found


# Files another change is rewriting, which still spell the names out: their annotation is to import the registry's
# Literal (litcpt.losses.reward.RewardLossName). Remove an entry once its file does.


@pytest.mark.parametrize("registry", [DPO_LOSSES, F_DIVERGENCES, REWARD_LOSSES], ids=["dpo", "f_div", "reward"])
def test_no_other_list_of_the_names_in_the_package(registry):
    names = set(registry)
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
             for line in _name_lists(path.read_text(encoding="utf-8"), names)]
    assert not found, f"a second list of the loss names (use the registry): {found}"


def test_the_list_check_can_fail():
    assert _name_lists('X = Literal["sigmoid", "ipo"]\n', set(DPO_LOSSES)) == [1]
    assert _name_lists('X = ("bradley_terry", "logistic")\n', set(REWARD_LOSSES)) == [1]
    assert _name_lists('if t in ("sigmoid",): pass\n', set(DPO_LOSSES)) == []


def test_registry_facts():
    """The properties of each type live on its entry; these are the sets the losses had before the registry."""
    def having(attribute):
        return {name for name, term in DPO_LOSSES.items() if getattr(term, attribute)}

    assert having("label_smoothing") == {"sigmoid", "robust", "exo_pair", "aot", "aot_unpaired", "simpo"}
    assert having("f_divergence") == {"sigmoid", "sigmoid_norm", "hinge", "exo_pair", "robust", "discopop", "sft"}
    assert set(DPO_LOSSES) - having("reads_reference") == {"simpo", "sft"}
    assert having("refuses_reference") == having("length_averaged") == {"simpo"}
    assert having("needs_lengths") == {"sigmoid_norm"}
    assert having("needs_sft_nll") == {"sft"}
    assert having("running_mean") == {"bco_pair"}
    assert having("sorts_batch") == {"aot", "aot_unpaired"}
    assert all(name == term.name for name, term in DPO_LOSSES.items())
    assert {name for name, loss in REWARD_LOSSES.items() if loss.ranked} == {"plackett_luce"}


def test_reward_registry_calls_the_pure_functions():
    from litcpt.losses.listwise import plackett_luce, to_matrix
    from litcpt.losses.preference import bradley_terry, logistic

    rc, rr = torch.tensor([1.0, -0.5, 2.0]), torch.tensor([0.0, 0.5, 2.5])
    margin = torch.tensor([0.1, 0.0, 0.2])
    torch.testing.assert_close(REWARD_LOSSES["bradley_terry"].pairs(rc, rr, margin, 0.3),
                               bradley_terry(rc, rr, margin=margin, center_coefficient=0.3))
    torch.testing.assert_close(REWARD_LOSSES["logistic"].pairs(rc, rr, margin, 0.3),
                               logistic(torch.cat([rc, rr]), torch.tensor([1.0, 1, 1, 0, 0, 0])))
    scores, mask = to_matrix(torch.tensor([2.0, 1.0, -1.0, 0.5, 0.0]), [3, 2])
    torch.testing.assert_close(REWARD_LOSSES["plackett_luce"].lists(scores, mask, 0.0), plackett_luce(scores, mask))
    # on pairs (lists of two) every listwise loss is its pairwise loss (Bradley-Terry's centering too)
    pairs, pair_mask = to_matrix(torch.stack([rc, rr], 1).flatten(), [2, 2, 2])
    for name, loss in REWARD_LOSSES.items():
        torch.testing.assert_close(loss.lists(pairs, pair_mask, 0.0), loss.pairs(rc, rr, None, 0.0), msg=name)
    bt = REWARD_LOSSES["bradley_terry"]
    torch.testing.assert_close(bt.lists(pairs, pair_mask, 0.3), bt.pairs(rc, rr, None, 0.3))


# ------------------------------------------------------------------------------------------------ the spec
SPEC_ERRORS = [
    (dict(loss_type=[]), r"^loss_type: expected a loss name or a non-empty list of them, got an empty list$"),
    (dict(loss_type="kto"), r"^loss_type: expected one of 'sigmoid', 'ipo', .*'simpo', 'sft', got 'kto'$"),
    (dict(loss_type=["sigmoid", "sigmoid"]), r"^loss_type: each loss may appear once, got \['sigmoid', 'sigmoid'\]$"),
    (dict(loss_type=["simpo", "sigmoid"]),
     r"^loss_type: 'simpo' is reference-free and combines only with 'sft', got \['simpo', 'sigmoid'\]$"),
    (dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0]),
     r"^loss_weights: expected one weight per loss_type \(2: \['sigmoid', 'sft'\]\), got 1$"),
    (dict(loss_weights=[float("nan")]), r"^loss_weights: expected finite numbers, got \[nan\]$"),
    (dict(beta=0.0), r"^beta: expected a finite number > 0, got 0.0$"),
    (dict(beta=float("inf")), r"^beta: expected a finite number > 0, got inf$"),
    (dict(label_smoothing=0.7), r"^label_smoothing: expected a number in \[0, 0.5\], got 0.7$"),
    (dict(loss_type="ipo", label_smoothing=0.1),
     r"^label_smoothing: only used by loss_type='sigmoid', 'robust', 'exo_pair', 'aot', 'aot_unpaired', 'simpo', "
     r"got 0.1 with loss_type='ipo'$"),
    (dict(loss_type="robust", label_smoothing=0.5),
     r"^label_smoothing: 'robust' divides by 1 - 2ε and needs ε in \[0, 0.5\), got 0.5$"),
    (dict(f_divergence_type="kl"),
     r"^f_divergence_type: expected one of 'reverse_kl', 'forward_kl', 'js_divergence', 'alpha_divergence', "
     r"got 'kl'$"),
    (dict(loss_type=["sigmoid", "bco_pair"], f_divergence_type="js_divergence"),
     r"^f_divergence_type='js_divergence': only for loss_type in \['discopop', .*'sigmoid_norm'\], "
     r"got \['sigmoid', 'bco_pair'\]$"),
    (dict(loss_type="discopop", discopop_tau=0.0), r"^discopop_tau: expected a number > 0, got 0.0$"),
    (dict(loss_type="aot_unpaired", use_weighting=True),
     r"^use_weighting \(WPO pair_weights\): not defined for 'aot'/'aot_unpaired', which sort the pairs of the "
     r"batch$"),
    (dict(ld_alpha=1.5), r"^ld_alpha: expected a number in \[0, 1\], got 1.5$"),
    (dict(ld_alpha=0.5, average_logps=True),
     r"^ld_alpha: LD-DPO reweights summed log-probs; it cannot be combined with average_logps: true$"),
    (dict(loss_type="sigmoid_norm", average_logps=True),
     r"^loss_type 'sigmoid_norm' divides by the response lengths itself; set average_logps: false$"),
]


@pytest.mark.parametrize(("kwargs", "message"), SPEC_ERRORS, ids=[m[1:30] for _, m in SPEC_ERRORS])
def test_each_bad_spec_is_one_line_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        DPOLoss(**kwargs)
    assert "\n" not in str(err.value)


def test_spec_is_frozen_normalised_and_rebuilds_from_its_arguments():
    mpo = DPOLoss(loss_type=["sigmoid", "bco_pair", "sft"], loss_weights=[0.8, 0.2, 1.0], beta=1)
    assert mpo.loss_type == ("sigmoid", "bco_pair", "sft") and mpo.loss_weights == (0.8, 0.2, 1.0)
    assert isinstance(mpo.beta, float) and mpo.names == mpo.loss_type and not mpo.reference_free
    assert mpo.needs_sft_nll and mpo.running_mean and mpo.needs_token_logps and not mpo.needs_lengths
    assert DPOLoss(**mpo.arguments()) == mpo
    with pytest.raises(dataclasses.FrozenInstanceError):
        mpo.beta = 0.5  # type: ignore[misc]
    simpo = DPOLoss(loss_type="simpo")
    assert simpo.average_logps and simpo.reference_free and simpo.loss_weights == (1.0,)
    assert DPOLoss(loss_type="sft").reference_free and not DPOLoss().reference_free
    # the fields are the recipe keys of `litcpt dpo`, with the same defaults
    from litcpt.commands.dpo import setup

    params = inspect.signature(setup).parameters
    for name, value in DPOLoss().arguments().items():
        default = params[name].default
        assert default == (value if name != "loss_weights" else None), name


def test_metadata_keeps_the_dpo_json_keys_and_the_form_of_loss_type():
    keys = ["beta", "loss_type", "label_smoothing", "loss_weights", "average_logps", "reference_free"]
    assert list(DPOLoss().metadata()) == keys
    assert DPOLoss().metadata()["loss_type"] == "sigmoid"
    assert DPOLoss(loss_type=["sigmoid"]).metadata()["loss_type"] == ["sigmoid"]
    assert DPOLoss(loss_type="simpo").metadata()["average_logps"] is True


def test_the_per_step_call_does_not_validate_the_spec(monkeypatch):
    """dpo_terms reads a built DPOLoss: none of the spec checks runs again, for any type."""
    losses = {name: DPOLoss(loss_type=name) for name in DPO_LOSSES}

    def boom(*args, **kwargs):
        raise AssertionError("spec validated again")

    for check in ("_parse_terms", "_parse_weights", "_check_beta", "_check_label_smoothing", "_check_f_divergence",
                  "_check_ld_alpha", "_check_sequence_options", "_check_robust", "_check_discopop"):
        monkeypatch.setattr(preference, check, boom)
    x = torch.tensor([-1.0, -2.0], dtype=torch.float64)
    for name, loss in losses.items():
        ref = (None, None) if DPO_LOSSES[name].refuses_reference else (x - 0.5, x + 0.5)
        terms, _, _ = dpo_terms(loss, x, x - 1.0, *ref, chosen_lengths=torch.ones(2, dtype=torch.float64),
                                rejected_lengths=torch.ones(2, dtype=torch.float64), sft_nll=torch.tensor(0.5))
        assert set(terms) == {name}
    with pytest.raises(AssertionError, match="validated again"):
        DPOLoss()  # the patch is live: building a spec does run the checks


def test_pair_weights_go_with_use_weighting():
    x = torch.tensor([-1.0, -2.0])
    with pytest.raises(ValueError, match="pair_weights: expected per-pair weights exactly when use_weighting"):
        dpo_terms(DPOLoss(use_weighting=True), x, x, x, x)
    with pytest.raises(ValueError, match="pair_weights: expected per-pair weights exactly when use_weighting"):
        dpo_terms(DPOLoss(), x, x, x, x, pair_weights=torch.ones(2))
    weighted = dpo(x, x - 1, x, x, pair_weights=torch.tensor([2.0, 0.5]))[0]
    torch.testing.assert_close(weighted, dpo(x, x - 1, x, x)[0] * torch.tensor([2.0, 0.5]))
