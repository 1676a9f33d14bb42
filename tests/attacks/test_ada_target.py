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
