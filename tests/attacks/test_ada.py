"""ADA: target choice on constructed models, FLAME against a hand-written gradient, bad input, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clients.target_choice import (
    attacking_distances, choose_target, class_feature_means, flame_gradient_norms, nearest_target,
)
from fl_poison.app.client_app import app
from fl_poison.app.experiment import run_experiment
from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve
from fl_poison.engine.inprocess import inprocess_grid
from fl_poison.metrics.model_poisoning import ata, max_ata, most_common_target, mta
from fl_poison.results import read_rounds
import copy
from clients.attacks.ada import ADA
from clients.behaviour import RoundInput
from fl_poison.training import get_state, train_local
from attack_helpers import client_round as _round


class Toy(nn.Module):
    """penultimate = the 2-D input itself; a linear output layer on top."""

    output_layer = "fc"

    def __init__(self, w: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.fc = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(w)
            self.fc.bias.copy_(b)

    def penultimate(self, x):
        return torch.flatten(x, 1)

    def forward(self, x):
        return self.fc(self.penultimate(x))


def _points():
    # class 0 around (0, 0), class 1 around (1, 0), class 2 around (5, 0), class 3 around (0, -3)
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [0.0, -3.0]])
    g = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat_interleave(20)
    x = centres[y] + 0.05 * torch.randn(80, 2, generator=g)
    return x, y


def test_full_knowledge_picks_the_class_with_the_nearest_mean():
    x, y = _points()
    model = Toy(torch.randn(4, 2), torch.zeros(4))
    means = class_feature_means(model, x, y, 5)  # class 4 has no samples
    assert np.isnan(means[4]).all()
    d = attacking_distances(means, 0)
    assert d[0] == 0 and d[1] == pytest.approx(1.0, abs=0.05) and d[2] == pytest.approx(5.0, abs=0.05)
    assert choose_target(model, x, y, 0, 5, "full")[0] == 1
    assert choose_target(model, x, y, 2, 5, "full")[0] == 1
    assert choose_target(model, x, y, 3, 5, "full")[0] == 0


def _hand_flame(w: np.ndarray, b: np.ndarray, h: np.ndarray, t: int) -> float:
    """d/dW, d/db of sum_i CE(softmax(W h_i + b), t) = sum_i (p_i - e_t) h_i^T, sum_i (p_i - e_t)."""
    z = h @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    e = np.zeros_like(p)
    e[:, t] = 1
    gw, gb = (p - e).T @ h, (p - e).sum(0)
    return float(np.sqrt((gw ** 2).sum() + (gb ** 2).sum()))


def test_flame_norms_match_a_hand_written_gradient():
    torch.manual_seed(1)
    w, b = torch.randn(4, 3), torch.randn(4)
    model = Toy(w, b)
    h = torch.randn(12, 3)
    got = flame_gradient_norms(model, h, 4, "paper")
    want = [_hand_flame(w.double().numpy(), b.double().numpy(), h.double().numpy(), t) for t in range(4)]
    assert got == pytest.approx(want, rel=1e-5)


def test_flame_code_rule_is_the_mean_of_per_sample_bce_gradient_norms():
    torch.manual_seed(2)
    w, b = torch.randn(3, 2), torch.randn(3)
    model = Toy(w, b)
    h = torch.randn(5, 2)
    got = flame_gradient_norms(model, h, 3, "code")
    for t in range(3):
        per = []
        for i in range(5):
            wi, bi = w.clone().requires_grad_(), b.clone().requires_grad_()
            p = F.softmax(h[i:i + 1] @ wi.T + bi, dim=1)
            loss = F.binary_cross_entropy(p, F.one_hot(torch.tensor([t]), 3).float())
            gw, gb = torch.autograd.grad(loss, [wi, bi])
            per.append([float(gw.norm()), float(gb.norm())])
        assert got[t] == pytest.approx(np.mean(per), rel=1e-5)


def test_flame_picks_the_second_most_likely_class_on_a_constructed_model():
    # logits of the source samples: class 0 high, class 2 next, class 1 very low -> relabelling to 2 is cheapest
    w = torch.zeros(3, 2)
    b = torch.tensor([5.0, -5.0, 3.0])
    model = Toy(w, b)
    x = torch.randn(10, 2)
    y = torch.zeros(10, dtype=torch.long)
    target, scores = choose_target(model, x, y, 0, 3, "partial")
    assert target == 2 and scores[0] < scores[2] < scores[1]  # the true label needs the smallest update


def test_nearest_target_excludes_source_and_missing():
    assert nearest_target(np.array([0.0, np.nan, 3.0, 2.0]), 0) == 3
    assert nearest_target(np.array([0.0, np.nan]), 0) == -1


def test_ata_mta_and_most_common_target_by_hand():
    cm = np.array([[8, 2, 0], [1, 9, 0], [0, 5, 5]])
    assert mta(cm, 2) == pytest.approx(17 / 20)
    assert ata(cm[2], 1) == 0.5 and max_ata(cm[2], 2) == 0.5
    assert most_common_target([3, 1, 1, 3, None, -1]) == 1 and most_common_target([None]) == -1


@pytest.mark.parametrize("over,key", [
    ({"attack": "ada", "source-class": 2, "target-class": 3}, "target-class"),
    ({"attack": "ada"}, "source-class"),
    ({"attack": "ada", "source-class": 2, "scale-bound": "-1"}, "scale-bound"),
    ({"attack": "ada", "source-class": 2, "ada-knowledge": "some"}, "ada-knowledge"),
])
def test_bad_ada_config_exit_2_before_data(over, key, capsys):
    args = ["run", "--set", "dataset=mnist", "--set", "data-dir=/nonexistent/data"]
    for k, v in over.items():
        args += ["--set", f"{k}={v}"]
    assert main(args) == 2
    assert f"'{key}'" in capsys.readouterr().err
    with pytest.raises(ConfigError) as e:
        resolve({"dataset": "mnist", "data-dir": "/nonexistent", **over})
    assert e.value.key == key


def test_initial_model_is_checked_against_the_model(tmp_path):
    from fl_poison.federation import new_model

    cfg = resolve({"dataset": "digits"})
    good = {k: v.numpy() for k, v in new_model(cfg).state_dict().items()}
    np.savez(tmp_path / "good.npz", **good)
    np.savez(tmp_path / "bad.npz", **{**good, "fc1.weight": np.zeros((3, 3), np.float32)})
    assert resolve({"dataset": "digits", "initial-model": str(tmp_path / "good.npz")})["initial-model"]
    with pytest.raises(ConfigError, match="initial-model.*fc1.weight has shape"):
        resolve({"dataset": "digits", "initial-model": str(tmp_path / "bad.npz")})
    with pytest.raises(ConfigError, match="initial-model"):
        resolve({"dataset": "digits", "initial-model": str(tmp_path / "missing.npz")})
    assert main(["run", "--set", f"initial-model={tmp_path / 'bad.npz'}"]) == 2


SMALL = {"dataset": "digits", "num-clients": 6, "clients-per-round": 6, "num-rounds": 2, "seed": 3, "figures": False,
         "num-malicious": 2}


@pytest.mark.slow
@pytest.mark.parametrize("knowledge", ["full", "partial"])
def test_ada_end_to_end_reports_its_target(tmp_path, knowledge):
    cfg = resolve({**SMALL, "attack": "ada", "source-class": 3, "ada-knowledge": knowledge, "run-name": knowledge})
    s = run_experiment(inprocess_grid(cfg.to_dict(), cfg["num-clients"], app), cfg, out_dir=tmp_path)
    rows = read_rounds(tmp_path / knowledge)
    assert rows[0].get("ada_target") is None
    targets = [int(r["ada_target"]) for r in rows[1:]]
    assert all(0 <= t < 10 and t != 3 for t in targets)
    assert s["ata_target"] == most_common_target(targets)
    assert s["ata"] == pytest.approx(rows[-1]["ata"]) and 0 <= s["max_ata"] <= 1 and s["mta"] > 0
    assert all(r["malicious_update_norm_max"] <= r["malicious_scale_bound"] + 1e-4 for r in rows[1:])


def test_initial_model_starts_the_run_from_saved_weights(tmp_path):
    first = resolve({**SMALL, "num-rounds": 2, "run-name": "a"})
    run_experiment(inprocess_grid(first.to_dict(), 6, app), first, out_dir=tmp_path)
    cfg = resolve({**SMALL, "num-rounds": 1, "run-name": "b", "initial-model": str(tmp_path / "a" / "model.npz")})
    run_experiment(inprocess_grid(cfg.to_dict(), 6, app), cfg, out_dir=tmp_path)
    assert read_rounds(tmp_path / "b")[0]["accuracy"] == pytest.approx(read_rounds(tmp_path / "a")[-1]["accuracy"])


# --- ADA: the target it picks from the received model ---------------------------------------------
class _Head(nn.Module):
    """penultimate features = the 2-D input; a seeded random linear output layer over 4 classes."""

    output_layer = "fc"

    def __init__(self, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(2, 4)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(4, 2, generator=gen))
            self.fc.bias.copy_(torch.randn(4, generator=gen))

    def penultimate(self, x):
        return torch.flatten(x, 1)

    def forward(self, x):
        return self.fc(self.penultimate(x))


def _clusters() -> tuple[torch.Tensor, torch.Tensor]:
    """10 points per class around (0,0), (1,0), (5,0), (0,-3): class 1's mean is nearest to class 0's."""
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [0.0, -3.0]])
    y = torch.arange(4).repeat_interleave(10)
    return centres[y] + 0.05 * torch.randn(40, 2, generator=torch.Generator().manual_seed(0)), y


def _trained(r: RoundInput, y: torch.Tensor, augment=None) -> dict[str, np.ndarray]:
    """The state of a fresh copy of the received model trained on (r.x, y) with the round's seed."""
    model = copy.deepcopy(r.model)
    train_local(model, r.x, y, r.settings, seed=r.seed, augment=augment)
    return get_state(model)


@pytest.mark.parametrize("knowledge,rule", [("full", "paper"), ("partial", "paper"), ("partial", "code")])
def test_ada_target_follows_the_configured_knowledge_and_flame_rule(knowledge, rule):
    """Head(17) makes the three choices disagree (full -> 1, FLAME paper -> 2, FLAME code -> 3)."""
    x, y = _clusters()
    cfg = resolve({"dataset": "digits", "attack": "ada", "source-class": 0, "ada-knowledge": knowledge,
                   "ada-flame-rule": rule})
    r = _round(cfg, _Head(17), x, y, num_classes=4)
    target, extra = ADA(0, cfg).target_for(r, x, y)
    want = {("full", "paper"): 1, ("partial", "paper"): 2, ("partial", "code"): 3}[(knowledge, rule)]
    assert target == want == choose_target(_Head(17), x, y, 0, 4, knowledge, rule)[0]
    assert extra == {"ada-target": float(want)}


def test_ada_without_source_samples_trains_honestly_and_reports_no_target():
    """No sample of the source class: no attacking distance, target -1, the honest update, ada-target -1."""
    x, y = _clusters()
    keep = y != 0
    cfg = resolve({"dataset": "digits", "attack": "ada", "source-class": 0, "scale-bound": "0.01", "seed": 2})
    r = _round(cfg, _Head(17), x[keep], y[keep], num_classes=4)
    want = _trained(r, r.y)
    res = ADA(0, cfg).local_work(r)
    assert res.metrics["ada-target"] == -1.0 and "shrink-factor" not in res.metrics
    assert all(np.allclose(res.state[k], want[k]) for k in want)
