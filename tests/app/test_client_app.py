"""The ClientApp: received-model accuracy on a subsample, the injection subset's seed, captured updates."""

from __future__ import annotations

from client_replies import SMALL, constant_state, reply_metrics, train_reply

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord
from torch import nn
from clients.behaviour import received_model_accuracy
from fl_poison.app import client_app as real
from fl_poison.config import resolve
from fl_poison.federation import federation_for, new_model
from strategies.registry import build_strategy
from flower_replies import make_reply




# --- 6. the received-model accuracy subsample keeps (x, y) pairs together --------------------------------
class _Echo(nn.Module):
    """Predicts the class written in the input's first feature."""

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0].long(), 10).float()


def test_received_accuracy_subsample_keeps_pairs():
    y = torch.arange(100) % 10
    x = y.float().unsqueeze(1)
    assert received_model_accuracy(_Echo(), x, y, 30, seed=1) == 1.0  # a perfect model, any subsample
    y_bad = y.clone()
    y_bad[:50] = (y_bad[:50] + 1) % 10  # the first half is labelled wrong
    acc = received_model_accuracy(_Echo(), x, y_bad, 40, seed=2)
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(2))[:40]
    assert acc == pytest.approx(float((perm >= 50).float().mean()))
    assert received_model_accuracy(_Echo(), x, y_bad, -1, seed=2) == 0.5
    assert received_model_accuracy(_Echo(), x, y_bad, 500, seed=2) == 0.5


def test_client_app_received_accuracy_on_a_subsample():
    cfg = resolve({**SMALL, "received-eval-samples": 40})
    _, y = federation_for(cfg).client_data(1)
    assert len(y) > 40
    m = reply_metrics(train_reply(cfg, 1, constant_state(cfg, 4)))
    seed = real.client_seed(cfg, 1, 1)
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:40]
    assert m["received-model-accuracy"] == pytest.approx(float((y[idx] == 4).float().mean()))


# --- 7. the injection subset is a function of the run seed ----------------------------------------------
def test_injection_subset_is_reproducible_through_the_client_app():
    cfg = resolve({**SMALL, "attack": "label-flip", "source-class": 7, "target-class": 1, "num-malicious": 4,
                   "injection-rate": 0.3})
    state = {k: v.detach().numpy() for k, v in new_model(cfg).state_dict().items()}
    a, b = train_reply(cfg, 0, state), train_reply(cfg, 0, state)
    for k in a.content["arrays"].keys():
        assert np.array_equal(a.content["arrays"][k].numpy(), b.content["arrays"][k].numpy()), k
    _, y = federation_for(cfg).client_data(0)
    assert reply_metrics(a)["num-examples"] == len(y)  # the injected set keeps the local set size


# --- 10. capture-updates stores updates, not local models -----------------------------------------------
def test_capture_updates_stores_output_rows_of_updates():
    cfg = resolve({**SMALL, "defense": "fedavg", "capture-updates": True})
    strat = build_strategy(cfg)
    g = [np.full((3, 2), 5.0), np.full(3, -2.0)]  # output layer [C=3, H=2] + bias
    strat._global = ArrayRecord([np.asarray(a) for a in g])
    rng = np.random.default_rng(0)
    deltas = [[rng.normal(size=(3, 2)), rng.normal(size=3)] for _ in range(3)]
    replies = [make_reply([g[0] + d[0], g[1] + d[1]], 10, 100 + k) for k, d in enumerate(deltas)]
    strat.aggregate_train(1, replies)
    rows = strat.last_report.output_rows
    assert rows.shape == (3, 3, 3)
    for k, d in enumerate(deltas):
        assert np.allclose(rows[k], np.hstack([d[0], d[1][:, None]]))


def test_capture_updates_off_stores_nothing():
    strat = build_strategy(resolve({**SMALL, "defense": "fedavg"}))
    g = [np.zeros((3, 2)), np.zeros(3)]
    strat._global = ArrayRecord([np.asarray(a) for a in g])
    strat.aggregate_train(1, [make_reply([a + 1 for a in g], 10, 100)])
    assert strat.last_report.output_rows is None
