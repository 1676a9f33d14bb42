"""The train-and-scale attack (clients/attacks/train_and_scale.py): the auto bound, the flipped round, its window."""

from __future__ import annotations

import copy
import numpy as np
import pytest
import torch
from torch import nn
from clients.attacks.train_and_scale import TrainAndScale
from clients.behaviour import RoundInput
from clients.model_poisoning import scale_update, update_norm
from fl_poison.config import resolve
from fl_poison.training import get_state, train_local
from attack_helpers import client_round as _round


# --- train-and-scale / ADA: one round on a tiny model --------------------------------------------
TS = {"dataset": "digits", "attack": "train-and-scale", "source-class": 3, "target-class": 0, "seed": 2,
      "batch-size": 16, "lr": 0.02}


def _digit_round(cfg, **kw) -> RoundInput:
    """60 random 8x8 'digits' of classes 0..5 and a seeded linear model over 10 classes."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 1, 8, 8, generator=gen), torch.arange(60) % 6
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    return _round(cfg, model, x, y, **kw)


def _trained(r: RoundInput, y: torch.Tensor, augment=None) -> dict[str, np.ndarray]:
    """The state of a fresh copy of the received model trained on (r.x, y) with the round's seed."""
    model = copy.deepcopy(r.model)
    train_local(model, r.x, y, r.settings, seed=r.seed, augment=augment)
    return get_state(model)


def test_auto_bound_is_the_norm_of_an_honest_update_and_leaves_the_received_model_alone():
    cfg = resolve(TS)
    flip = lambda xb, gen: torch.flip(xb, dims=[3])  # noqa: E731 -- an augmentation that changes the update
    for augment in (None, flip):
        r = _digit_round(cfg)
        r.augment = augment
        want = update_norm(_trained(r, r.y, augment), r.global_state)
        assert 0 < want < 1
        assert TrainAndScale(0, cfg).bound_for(r) == pytest.approx(want, rel=1e-6)
        assert all(np.array_equal(v, r.global_state[k]) for k, v in get_state(r.model).items())
    assert TrainAndScale(0, resolve({**TS, "scale-bound": "0.25"})).bound_for(r) == 0.25
    assert TrainAndScale(0, cfg).local_work(r).metrics["scale-bound"] == pytest.approx(want, rel=1e-6)


def test_train_and_scale_round_flips_onto_class_0_and_shrinks_into_the_bound():
    """Source 3 -> target 0 on all local data, then g + f * (raw - g) with the first f of 1, 0.9, ... that fits."""
    cfg = resolve({**TS, "scale-bound": "0.2"})
    r = _digit_round(cfg)
    flipped = r.y.clone()
    flipped[r.y == 3] = 0
    raw = _trained(r, flipped)
    res = TrainAndScale(0, cfg).local_work(r)
    m = res.metrics
    assert m["scale-bound"] == 0.2 and m["unscaled-norm"] == pytest.approx(update_norm(raw, r.global_state), rel=1e-5)
    f = m["shrink-factor"]
    assert 0 < f < 1 and f * m["unscaled-norm"] <= 0.2 < (f + 0.1) * m["unscaled-norm"]
    want = scale_update(raw, r.global_state, f)
    assert all(np.allclose(res.state[k], want[k], atol=1e-6) for k in want)
    assert res.num_examples == 60


def test_train_and_scale_outside_the_attack_window_trains_honestly():
    cfg = resolve({**TS, "attack-start-round": 2, "scale-bound": "0.2"})
    r = _digit_round(cfg, server_round=1)
    honest = _trained(r, r.y)
    res = TrainAndScale(0, cfg).local_work(r)
    assert "shrink-factor" not in res.metrics
    assert all(np.allclose(res.state[k], honest[k]) for k in honest)
