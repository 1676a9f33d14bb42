"""The label-flip attack (clients/attacks/label_flip.py): which labels flip, with and without an injection rate."""

from __future__ import annotations

from client_replies import SMALL, constant_state, reply_metrics, train_reply

import numpy as np
import torch
from torch import nn
from clients.attacks.label_flip import LabelFlip
from clients.behaviour import RoundInput
from clients.store import NodeStore
from fl_poison.config import resolve
from fl_poison.training import TrainSettings, get_state
import pytest
from clients.poisoning import targeted_flip_set
from fl_poison.federation import federation_for


def _round(cfg, y: torch.Tensor, *, cid: int = 0, server_round: int = 1, num_classes: int = 10) -> RoundInput:
    """One client's round as the ClientApp builds it; features are the row index so a subset is traceable."""
    model = nn.Linear(1, num_classes)
    x = torch.arange(len(y), dtype=torch.float32)[:, None]
    return RoundInput(cid=cid, server_round=server_round, config=cfg, model=model, global_state=get_state(model),
                      x=x, y=y, settings=TrainSettings.from_config(cfg), num_classes=num_classes, seed=1,
                      rng=np.random.default_rng(1), store=NodeStore())


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




# --- 2. a label flipper flips EVERY source sample -----------------------------------------------------
def test_label_flip_flips_every_source_label_and_nothing_else():
    y = np.array([7, 1, 7, 7, 3, 7, 7, 0, 7])
    idx, new = targeted_flip_set(y, source=7, target=1, injection_rate=-1.0, rng=np.random.default_rng(0))
    assert idx.tolist() == list(range(9))
    assert new.tolist() == [1, 1, 1, 1, 3, 1, 1, 0, 1]


def test_client_app_flipper_trains_on_every_source_sample_flipped():
    """Received-model accuracy on all local samples of a model that always says 1 = share of labels 1.

    The ClientApp scores the received model on the data it trains on, so with a
    model predicting the target class this metric counts flipped labels exactly.
    """
    cfg = resolve({**SMALL, "attack": "label-flip", "source-class": 7, "target-class": 1, "num-malicious": 4,
                   "received-eval-samples": -1})
    fed = federation_for(cfg)
    _, y = fed.client_data(0)
    y = y.numpy()
    assert (y == 7).sum() > 2
    m = reply_metrics(train_reply(cfg, 0, constant_state(cfg, 1)))
    assert m["num-examples"] == len(y)
    assert m["received-model-accuracy"] == pytest.approx(((y == 7) | (y == 1)).mean())


def test_client_app_honest_client_keeps_its_labels():
    cfg = resolve({**SMALL, "attack": "label-flip", "source-class": 7, "target-class": 1, "num-malicious": 0,
                   "received-eval-samples": -1})
    _, y = federation_for(cfg).client_data(0)
    m = reply_metrics(train_reply(cfg, 0, constant_state(cfg, 1)))
    assert m["received-model-accuracy"] == pytest.approx((y.numpy() == 1).mean())
