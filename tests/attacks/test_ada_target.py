"""ADA's target: chosen every round or once (``ada-target``), and reported per round as a class, never a mean."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from clients.attacks.ada import ADA
from clients.behaviour import RoundInput
from clients.store import NodeStore
from fl_poison.app.experiment import _extra_metrics
from fl_poison.config import resolve
from fl_poison.training import TrainSettings
import pytest
from clients.target_choice import choose_target, flame_gradient_norms, nearest_target


class Identity(nn.Module):
    """Penultimate features = the 2-D input, so the nearest class mean is set by the data alone."""

    output_layer = "fc"

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 4)

    def penultimate(self, x):
        return x

    def forward(self, x):
        return self.fc(x)


def _data(nearest: int):
    """Class 0 at the origin, class ``nearest`` at (1, 0), the other two classes far away."""
    far = iter([(5.0, 0.0), (0.0, 7.0)])
    centres = [(0.0, 0.0)] + [(1.0, 0.0) if c == nearest else next(far) for c in (1, 2, 3)]
    y = torch.arange(4).repeat_interleave(5)
    return torch.tensor(centres)[y], y


def _target(cfg, store: NodeStore, nearest: int, server_round: int) -> int:
    x, y = _data(nearest)
    r = RoundInput(cid=0, server_round=server_round, config=cfg, model=Identity(), global_state={}, x=x, y=y,
                   settings=TrainSettings.from_config(cfg), num_classes=4, seed=0, rng=np.random.default_rng(0),
                   store=store)
    target, extra = ADA(0, cfg).target_for(r, x, y)
    assert extra == {"ada-target": float(target)}
    return target


def test_ada_target_first_keeps_the_choice_of_the_first_active_round():
    cfg = resolve({"dataset": "digits", "attack": "ada", "source-class": 0, "ada-target": "first"})
    store = NodeStore(prefix="ada")
    assert _target(cfg, store, nearest=2, server_round=1) == 2
    assert _target(cfg, store, nearest=3, server_round=2) == 2  # the data now point to 3: the choice stays
    assert store.get_values("target") == {"target": 2, "round": 1}


def test_ada_target_per_round_chooses_again_each_round():
    cfg = resolve({"dataset": "digits", "attack": "ada", "source-class": 0})
    store = NodeStore(prefix="ada")
    assert [_target(cfg, store, nearest=n, server_round=i + 1) for i, n in enumerate((2, 3, 1))] == [2, 3, 1]
    assert store.get_values("target") is None


def test_malicious_ada_target_is_the_most_common_class_never_a_mean():
    """Targets 3, 7, 7 -> 7 (a mean would say 5.67); a tie 3, 8 -> 3, the lower class; other metrics stay means."""
    metrics = [{"ada-target": 3.0, "shrink-factor": 0.5}, {"ada-target": 7.0, "shrink-factor": 1.0},
               {"ada-target": 7.0, "shrink-factor": 0.9}, {"train-extra": 1.0}]
    out = _extra_metrics([1, 2, 3, 4], metrics, mal={1, 2, 3})
    assert out["malicious_ada_target"] == 7 and isinstance(out["malicious_ada_target"], int)
    assert out["malicious_shrink_factor"] == np.mean([0.5, 1.0, 0.9]) and out["honest_ada_target"] is None
    tie = _extra_metrics([1, 2], [{"ada-target": 8.0}, {"ada-target": 3.0}], mal={1, 2})
    assert tie["malicious_ada_target"] == 3


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
