"""Model replacement (Bagdasaryan et al. 2020): gamma = n / eta, the boosted update, averaging lands on X."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from clients.attacks.model_replacement import ModelReplacement, replacement_gamma
from config_errors import assert_refused
from fl_poison.app.client_app import app
from fl_poison.app.experiment import run_experiment
from fl_poison.config import resolve
from fl_poison.engine.inprocess import inprocess_grid
from fl_poison.paper_comparison import metric_requirement
from strategies.rules.fedavg_math import fedavg


def _cfg(**over):
    return resolve({"dataset": "digits", "attack": "model-replacement", "target-class": 0, **over})


def test_gamma_is_clients_per_round_unless_set():
    assert replacement_gamma(_cfg(**{"clients-per-round": 7, "num-clients": 10})) == 7.0
    assert replacement_gamma(_cfg(**{"replacement-gamma": 2.5})) == 2.5


def test_the_boosted_update_by_hand():
    """L = gamma (X - G) + G with gamma = 4: G = [1, 2], X = [2, 0] -> [5, -6]; integer buffers untouched."""
    cfg = _cfg(**{"clients-per-round": 4, "num-clients": 4})
    attacker = ModelReplacement(0, cfg)
    r = SimpleNamespace(global_state={"w": np.array([1.0, 2.0]), "n": np.array([3])})
    out = attacker.craft(r, {"w": np.array([2.0, 0.0]), "n": np.array([5])})
    np.testing.assert_allclose(out["w"], [5.0, -6.0])
    assert out["n"].tolist() == [5]


def test_averaging_with_unchanged_honest_clients_lands_on_the_backdoored_model():
    """The paper's premise: honest updates ~ 0, n clients of equal size, eta = 1 -> the mean is X itself."""
    n, rng = 5, np.random.default_rng(0)
    g, x = rng.normal(size=8), rng.normal(size=8)
    attacker = ModelReplacement(0, _cfg(**{"clients-per-round": n, "num-clients": n}))
    sent = attacker.craft(SimpleNamespace(global_state={"w": g}), {"w": x})["w"]
    updates = np.stack([sent - g] + [np.zeros(8)] * (n - 1))
    agg = fedavg(updates, np.full(n, 100.0))
    np.testing.assert_allclose(g + agg.update, x, atol=1e-12)


def test_gamma_replaces_the_backdoor_boost_key():
    names = [k.name for k in ModelReplacement.keys]
    assert "replacement-gamma" in names and "backdoor-boost" not in names and "poison-fraction" in names


def test_backdoor_accuracy_cells_read_model_replacement_runs_too():
    need, ok = metric_requirement("max_over_rounds.backdoor_accuracy")
    assert "attack = backdoor" in need and "attack = model-replacement" in need
    assert ok({"attack": "model-replacement"}) and ok({"attack": "backdoor"}) and not ok({"attack": "scale"})


@pytest.mark.parametrize("over,key", [({"replacement-gamma": 0}, "replacement-gamma"),
                                      ({"replacement-gamma": -2}, "replacement-gamma"),
                                      ({"target-class": -1}, "target-class")])
def test_bad_model_replacement_config(over, key, capsys):
    base = {"dataset": "mnist", "data-dir": "/nonexistent", "attack": "model-replacement", "target-class": 0}
    assert_refused({**base, **over}, key, capsys)


@pytest.mark.slow
def test_one_replacing_attacker_plants_the_backdoor_faster_than_plain_backdoor(tmp_path):
    """digits, 6 clients, 1 attacker, 3 rounds: the boosted backdoor reaches a higher backdoor accuracy."""
    base = {"dataset": "digits", "num-clients": 6, "clients-per-round": 6, "num-rounds": 3, "seed": 3,
            "num-malicious": 1, "target-class": 0, "poison-fraction": 0.5, "trigger-size": 2}
    out = {}
    for attack in ("backdoor", "model-replacement"):
        cfg = resolve({**base, "attack": attack, "run-name": attack})
        out[attack] = run_experiment(inprocess_grid(cfg.to_dict(), 6, app), cfg, out_dir=tmp_path)
    assert out["model-replacement"]["backdoor_accuracy"] is not None
    assert (out["model-replacement"]["max_over_rounds"]["backdoor_accuracy"]
            > out["backdoor"]["max_over_rounds"]["backdoor_accuracy"] + 0.1)
