"""The untargeted label flip (clients/attacks/untargeted_flip.py): reverse and random maps, its key checks."""

from __future__ import annotations

from client_replies import SMALL, constant_state, reply_metrics, train_reply

import numpy as np
import pytest
import torch
from torch import nn
from clients.attacks.untargeted_flip import UntargetedFlip
from clients.behaviour import RoundInput
from clients.store import NodeStore
from fl_poison.config import ConfigError, resolve
from fl_poison.data.datasets import get_spec
from fl_poison.training import TrainSettings, get_state
from fl_poison.federation import federation_for


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


def test_untargeted_flip_check_needs_injection_rate_only_when_it_is_set():
    """A config without injection-rate (a plug-in set that does not declare it) or with -1 (off) is fine;
    any other rate is refused naming the key."""
    spec = get_spec("digits")
    UntargetedFlip.check_config({"attack": "untargeted-flip"}, spec)
    UntargetedFlip.check_config({"attack": "untargeted-flip", "injection-rate": -1.0}, spec)
    with pytest.raises(ConfigError, match="'injection-rate'"):
        UntargetedFlip.check_config({"attack": "untargeted-flip", "injection-rate": 1.0}, spec)




def test_client_app_untargeted_flip_relabels_every_sample():
    cfg = resolve({**SMALL, "attack": "untargeted-flip", "num-malicious": 4, "received-eval-samples": -1})
    _, y = federation_for(cfg).client_data(2)
    m = reply_metrics(train_reply(cfg, 2, constant_state(cfg, 9)))
    assert m["received-model-accuracy"] == pytest.approx((9 - y.numpy() == 9).mean())  # reverse map: 0 -> 9
