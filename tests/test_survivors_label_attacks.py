"""Mutation-survivor tests for the label attacks: ADA's target choice
(``clients.target_choice``), the shared label-poisoning helpers (``clients.poisoning``) and the
label-flip / untargeted-flip attacks.

Every expected value is computed by hand here (numpy formulas for the last-layer gradients, label
maps written out) or is a property (NaN for "no data", bad options named in the error).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from clients.attacks.label_flip import LabelFlip
from clients.attacks.untargeted_flip import UntargetedFlip
from clients.behaviour import RoundInput
from clients.poisoning import (
    attack_active, flip_map, flip_untargeted, injection_indices, targeted_flip_set, untargeted_flip_set,
)
from clients.store import NodeStore
from clients.target_choice import choose_target, flame_gradient_norms, nearest_target
from fl_poison.config import ConfigError, resolve
from fl_poison.data.datasets import get_spec
from fl_poison.training import TrainSettings, get_state


# ---------------------------------------------------------------- clients.target_choice


class Linear(nn.Module):
    """penultimate = the flattened input; one linear output layer ``fc`` (with or without bias)."""

    output_layer = "fc"

    def __init__(self, w: np.ndarray, b: np.ndarray | None) -> None:
        super().__init__()
        self.fc = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(w))
            if b is not None:
                self.fc.bias.copy_(torch.from_numpy(b))

    def penultimate(self, x):
        return torch.flatten(x, 1)

    def forward(self, x):
        return self.fc(self.penultimate(x))


def _softmax(z: np.ndarray) -> np.ndarray:
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _paper_norm(w, b, h, t) -> float:
    """eq. (12)-(13): ||d/d(W,b) sum_i CE(softmax(W h_i + b), t)|| = ||(sum_i (p_i - e_t) h_i^T, sum_i (p_i - e_t))||;
    without a bias only the weight gradient counts."""
    p = _softmax(h @ w.T + (0 if b is None else b))
    p[:, t] -= 1
    sq = ((p.T @ h) ** 2).sum() + (0 if b is None else (p.sum(axis=0) ** 2).sum())
    return float(np.sqrt(sq))


def _code_norms(w, b, h_row, t) -> tuple[float, float]:
    """Authors' rule for ONE sample: BCE(softmax(z), e_t) averaged over the C outputs; chain rule by hand:
    dL/dp_j = -(y_j/p_j - (1-y_j)/(1-p_j))/C, dL/dz = J_softmax^T dL/dp, dL/dW = dL/dz h^T, dL/db = dL/dz."""
    p = _softmax((w @ h_row + b)[None, :])[0]
    y = np.eye(len(p))[t]
    dp = -(y / p - (1 - y) / (1 - p)) / len(p)
    dz = (np.diag(p) - np.outer(p, p)) @ dp
    return float(np.linalg.norm(np.outer(dz, h_row))), float(np.linalg.norm(dz))


def _model(c: int, d: int, bias: bool = True, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None, Linear]:
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=(c, d)), (rng.normal(size=c) if bias else None)
    return w, b, Linear(w, b)


def test_flame_default_rule_is_the_papers_equation():
    """Called without a rule, FLAME is eq. (12)-(13) (the module docstring's default), not the authors' variant."""
    w, b, model = _model(3, 2)
    h = np.random.default_rng(1).normal(size=(7, 2))
    got = flame_gradient_norms(model, torch.from_numpy(h).float(), 3)
    assert got == pytest.approx([_paper_norm(w, b, h, t) for t in range(3)], rel=1e-4)


def test_flame_on_a_bias_free_output_layer_uses_the_weight_gradient_only():
    """An output layer built with bias=False has no bias gradient to add (and no None to differentiate)."""
    w, _, model = _model(4, 3, bias=False)
    h = np.random.default_rng(2).normal(size=(5, 3))
    got = flame_gradient_norms(model, torch.from_numpy(h).float(), 4, "paper")
    assert got == pytest.approx([_paper_norm(w, None, h, t) for t in range(4)], rel=1e-4)


def test_flame_without_source_samples_is_all_nan_and_one_sample_is_enough():
    """No local source sample: every score is unavailable (float NaN), so no target; a single sample scores."""
    w, b, model = _model(3, 2)
    empty = flame_gradient_norms(model, torch.zeros(0, 2), 3, "paper")
    assert empty.dtype == np.float64 and np.isnan(empty).all()
    h = np.array([[0.5, -1.0]])
    one = flame_gradient_norms(model, torch.from_numpy(h).float(), 3, "paper")
    assert one == pytest.approx([_paper_norm(w, b, h, t) for t in range(3)], rel=1e-4)


def test_flame_code_rule_averages_over_the_first_500_source_samples_only():
    """The authors' code looks at no more than 500 source samples: 500 copies of sample A then 100 of a
    very different B score exactly as A alone (mean of A's weight and bias gradient norms)."""
    w, b, model = _model(2, 2, seed=3)
    a, far = np.array([0.3, -0.2]), np.array([40.0, -25.0])
    h = np.vstack([np.tile(a, (500, 1)), np.tile(far, (100, 1))])
    got = flame_gradient_norms(model, torch.from_numpy(h).float(), 2, "code")
    assert got == pytest.approx([np.mean(_code_norms(w, b, a, t)) for t in range(2)], rel=1e-4)


def test_partial_knowledge_passes_the_flame_rule_through():
    """choose_target's flame_rule reaches FLAME: the authors' rule gives its (different) scores, and an
    unknown rule is refused naming it."""
    w, b, model = _model(3, 2, seed=4)
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.normal(size=(9, 2))).float()
    y = torch.tensor([0, 1, 2] * 3)
    src = x[y == 1].double().numpy()
    _, scores = choose_target(model, x, y, 1, 3, "partial", flame_rule="code")
    want = [np.mean([_code_norms(w, b, r, t) for r in src]) for t in range(3)]
    assert scores == pytest.approx(want, rel=1e-4)
    with pytest.raises(ValueError, match="'eq12'"):
        choose_target(model, x, y, 1, 3, "partial", flame_rule="eq12")


def test_unknown_knowledge_is_named_in_the_error():
    _, _, model = _model(3, 2)
    with pytest.raises(ValueError, match="knowledge 'none'"):
        choose_target(model, torch.zeros(3, 2), torch.tensor([0, 1, 2]), 0, 3, "none")


def test_nearest_target_accepts_integer_scores_and_leaves_them_untouched():
    """Integer distances (e.g. counts) are valid scores: the source is masked in a float copy."""
    scores = np.array([0, 4, 2, 7])
    assert nearest_target(scores, 2) == 0
    assert nearest_target(scores, 0) == 2
    assert scores.tolist() == [0, 4, 2, 7]


# ---------------------------------------------------------------- clients.poisoning


def test_random_flip_map_refuses_a_negative_seed_naming_it():
    with pytest.raises(ValueError, match=r"seed must be >= 0, got -3"):
        flip_map("random", 10, -3)


@pytest.mark.parametrize("bad", [[0, 10], [-1, 2]])
def test_out_of_range_labels_are_refused_with_the_valid_range(bad):
    """A 10-class map accepts labels 0..9: the error states that range and the offending one."""
    with pytest.raises(ValueError) as e:
        flip_untargeted(np.array(bad), flip_map("reverse", 10, 0))
    msg = str(e.value)
    assert "0..9 " in msg and "10 classes" in msg and f"{min(bad)}..{max(bad)}" in msg


@pytest.mark.parametrize("seed", range(3))
def test_injection_draws_the_source_without_replacement_when_enough(seed):
    """15 source + 5 clean at rate 0.4 of 20: round(8) = 8 *distinct* source examples (a draw with replacement
    would almost surely repeat one of 15 in 8 draws) and 12 clean slots from 5 (all 5, twice, plus 2)."""
    y = np.array([3] * 15 + [1] * 5)
    idx = injection_indices(y, 3, 0.4, np.random.default_rng(seed))
    src = idx[y[idx] == 3]
    assert len(idx) == 20 and len(np.unique(src)) == len(src) == 8
    assert np.array_equal(np.bincount(idx[y[idx] == 1], minlength=20)[15:] >= 2, np.ones(5, bool))


def test_attack_window_from_round_zero_and_ending_at_round_zero():
    """start=0 is a valid start ("from the beginning"); end=0 is a real end (only round 0, so never in a
    run whose rounds start at 1), not "no end" - only end < 0 means that."""
    assert attack_active(1, 0, -1) and attack_active(0, 0, 0)
    assert not attack_active(1, 0, 0)


@pytest.mark.parametrize("start,end,message", [
    (-1, 5, "attack-start-round must be >= 0, got -1"),
    (1, 0, "attack-end-round=0 is before attack-start-round=1; "
           "allowed: attack-end-round >= attack-start-round, or < 0 for no end"),
])
def test_attack_window_errors_name_the_keys_and_what_is_allowed(start, end, message):
    with pytest.raises(ValueError) as e:
        attack_active(1, start, end)
    assert str(e.value) == message


def _poison(attack: str, *, source=None, target=None, mapping=None, rate=-1.0):
    y = np.array([0, 1, 2])
    if attack == "label-flip":
        return targeted_flip_set(y, source=source, target=target, injection_rate=rate, rng=np.random.default_rng(0))
    return untargeted_flip_set(y, mapping=mapping, injection_rate=rate)


@pytest.mark.parametrize("kwargs,message", [
    (dict(attack="label-flip", source=1), "attack=label-flip needs source-class and target-class to be set"),
    (dict(attack="untargeted-flip"), "attack=untargeted-flip needs a flip-map (reverse | random)"),
    # injection-rate 0 is not "off" (off is < 0): refused like any other rate
    (dict(attack="untargeted-flip", mapping=np.arange(3)[::-1], rate=0.0),
     "injection-rate=0.0 applies only to attack=label-flip; set it < 0 (off) for attack=untargeted-flip"),
])
def test_flip_set_refusals_name_the_keys_and_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError) as e:
        _poison(**kwargs)
    assert str(e.value) == message


# ---------------------------------------------------------------- the attacks' training sets


def _round(cfg, y: torch.Tensor, *, cid: int = 0, server_round: int = 1, num_classes: int = 10) -> RoundInput:
    """One client's round as the ClientApp builds it; features are the row index so a subset is traceable."""
    model = nn.Linear(1, num_classes)
    x = torch.arange(len(y), dtype=torch.float32)[:, None]
    return RoundInput(cid=cid, server_round=server_round, config=cfg, model=model, global_state=get_state(model),
                      x=x, y=y, settings=TrainSettings.from_config(cfg), num_classes=num_classes, seed=1,
                      rng=np.random.default_rng(1), store=NodeStore())


def _untargeted_labels(flip: str, seed: int, y: torch.Tensor) -> torch.Tensor:
    cfg = resolve({"dataset": "digits", "attack": "untargeted-flip", "flip-map": flip, "seed": seed})
    x, new = UntargetedFlip(0, cfg).training_set(_round(cfg, y))
    assert torch.equal(x[:, 0].long(), torch.arange(len(y)))  # all local data, in order, features untouched
    assert new.dtype == torch.long
    return new


def test_untargeted_random_flip_is_a_seeded_derangement_of_the_labels():
    """flip-map=random: every class goes to another class, one-to-one, fixed by the run seed."""
    y = torch.arange(10).repeat(3)
    new = _untargeted_labels("random", 4, y)
    perm = new[:10]
    assert torch.equal(new, perm.repeat(3))  # one map for every example of a class
    assert sorted(perm.tolist()) == list(range(10)) and not (perm == torch.arange(10)).any()
    assert torch.equal(_untargeted_labels("random", 4, y), new)
    assert not all(torch.equal(_untargeted_labels("random", s, y), new) for s in (5, 6, 7))


def test_untargeted_reverse_flip_maps_y_to_c_minus_1_minus_y():
    y = torch.tensor([0, 9, 3, 3, 5])
    assert _untargeted_labels("reverse", 0, y).tolist() == [9, 0, 6, 6, 4]


def _refusal(**over) -> ConfigError:
    """The ConfigError a digits run with these keys raises (before any data loads)."""
    with pytest.raises(ConfigError) as e:
        resolve({"dataset": "digits", **over})
    return e.value


@pytest.mark.parametrize("over,key,value,allowed", [
    # label-flip needs its classes: the message names the attack and the data set's class range
    ({"attack": "label-flip"}, "source-class", -1, "attack=label-flip needs a class 0..9"),
    # untargeted flipping has no source class to dilute: injection-rate must stay off, and -1 leads the message
    ({"attack": "untargeted-flip", "injection-rate": 0.5}, "injection-rate", 0.5,
     "-1 with attack=untargeted-flip (dilution needs a source class)"),
])
def test_bad_flip_config_names_key_value_and_allowed(over, key, value, allowed):
    e = _refusal(**over)
    assert (e.key, e.value, e.allowed) == (key, value, allowed)


def test_untargeted_flip_check_needs_injection_rate_only_when_it_is_set():
    """A config without injection-rate (a plug-in set that does not declare it) or with -1 (off) is fine;
    any other rate is refused naming the key."""
    spec = get_spec("digits")
    UntargetedFlip.check_config({"attack": "untargeted-flip"}, spec)
    UntargetedFlip.check_config({"attack": "untargeted-flip", "injection-rate": -1.0}, spec)
    with pytest.raises(ConfigError, match="'injection-rate'"):
        UntargetedFlip.check_config({"attack": "untargeted-flip", "injection-rate": 1.0}, spec)


def _label_flip(y: torch.Tensor, rate: float, *, seed: int = 0, cid: int = 0,
                server_round: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """LabelFlip 3 -> 8 on labels ``y``: (row indices trained on, their labels)."""
    cfg = resolve({"dataset": "digits", "attack": "label-flip", "source-class": 3, "target-class": 8,
                   "injection-rate": rate, "seed": seed})
    x, new = LabelFlip(cid, cfg).training_set(_round(cfg, y, cid=cid, server_round=server_round))
    assert new.dtype == torch.long and len(x) == len(new)
    return x[:, 0].long(), new


def _expected_flip(y: torch.Tensor, rows: torch.Tensor) -> list[int]:
    return [8 if v == 3 else v for v in y[rows].tolist()]


def test_label_flip_without_injection_relabels_the_source_in_all_local_data():
    y = torch.tensor([3, 0, 8, 3, 5, 3, 1])
    rows, new = _label_flip(y, -1.0)
    assert rows.tolist() == list(range(7))
    assert new.tolist() == [8, 0, 8, 8, 5, 8, 1]


def test_label_flip_injection_keeps_the_local_set_size_at_the_chosen_share():
    """20 source + 40 clean at rate 0.25 of 60: 15 distinct source examples (relabelled 8) plus 45 clean ones
    (all 40, 5 repeated), drawn reproducibly per (seed, round, client) and differently for another round or client."""
    y = torch.tensor([3] * 20 + [0, 1, 2, 4] * 10)
    rows, new = _label_flip(y, 0.25)
    assert len(rows) == 60 and set(range(20, 60)) <= set(rows.tolist())
    assert new.tolist() == _expected_flip(y, rows) and (new == 8).sum() == 15
    assert torch.equal(_label_flip(y, 0.25)[0], rows)
    assert not torch.equal(_label_flip(y, 0.25, server_round=2)[0], rows)
    assert not torch.equal(_label_flip(y, 0.25, cid=1)[0], rows)


def test_label_flip_injection_with_a_single_source_example_repeats_it_to_the_local_size():
    """rate 1 = the source examples only, at the local set size, even when there is just one of them."""
    y = torch.tensor([0, 3, 5, 1])
    rows, new = _label_flip(y, 1.0)
    assert rows.tolist() == [1, 1, 1, 1] and new.tolist() == [8, 8, 8, 8]


def test_label_flip_injection_without_source_examples_trains_on_the_data_unchanged():
    """No source example: nothing to inject, the client trains honestly on all its data."""
    y = torch.tensor([0, 1, 5, 1])
    rows, new = _label_flip(y, 0.5)
    assert rows.tolist() == [0, 1, 2, 3] and new.tolist() == y.tolist()
