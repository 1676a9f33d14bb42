"""``attack=label-flip``: targeted flipping of the source class onto the target class.

Tolpegin et al. §2.2 and LFighter: every source-class label becomes the target
and the rest of the local data stays clean; with ``injection-rate`` (ADA,
Sun et al. §III-C1) the attacker trains on a set of its local set's size in
which flipped source samples make up that share and drawn clean ones the rest
(see :func:`clients.poisoning.injection_indices`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from clients.behaviour import Behaviour, RoundInput
from clients.poisoning import INJECTION_RATE_RANGE, flip_targeted, injection_indices
from fl_poison.config import Key, check_class_pair

INJECTION_RATE = Key(
    "injection-rate", float, -1.0, "flipped share of an attacker's training set, which keeps its local set size "
    "(-1 = all local data, source flipped)",
    constraint=replace(INJECTION_RATE_RANGE, off=-1, off_means=" for off"))

#: Salt of the injection subset's random stream, so it is independent of every other use of the seed.
_INJECTION_SALT = 7


def attack_set(r: RoundInput, source: int, injection_rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The attacker's training set this round, true labels (shared with train-and-scale and ADA).

    * ``injection-rate`` off: all local data.
    * ``injection-rate`` in (0, 1]: :func:`clients.poisoning.injection_indices`, ``len(r.y)`` samples
      (the local set size) drawn from the local data, or, under ``honest-holds-source=false``, from
      ``r.pool`` (the samples no honest client holds: the ADA authors' attacker, which draws 225 source
      + 225 clean samples every round).

    Seeded by (run seed, round, client): reproducible, and drawn afresh each round. A set without any
    source example is the local data unchanged (honest training).
    """
    if injection_rate < 0:
        return r.x, r.y
    x, y = r.pool if r.pool is not None else (r.x, r.y)
    rng = np.random.default_rng([r.config["seed"], r.server_round, r.cid, _INJECTION_SALT])
    idx = injection_indices(y.numpy(), source, injection_rate, rng, size=int(r.y.shape[0]))
    if len(idx) == 0:
        return r.x, r.y
    idx_t = torch.from_numpy(idx)
    return x[idx_t], y[idx_t]


def relabel(y: torch.Tensor, source: int, target: int) -> torch.Tensor:
    """``y`` with every ``source`` label replaced by ``target``."""
    return torch.from_numpy(flip_targeted(y.numpy(), source, target).astype(np.int64))


def flip_to(r: RoundInput, source: int, target: int, injection_rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`attack_set` with ``source`` relabelled ``target``."""
    x, y = attack_set(r, source, injection_rate)
    return x, relabel(y, source, target)


class LabelFlip(Behaviour):
    """Source -> target flipping inside the attack window."""

    name = "label-flip"
    keys = (INJECTION_RATE,)
    help = "targeted label flipping source-class -> target-class (Tolpegin et al.; LFighter)"
    malicious = True

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        check_class_pair(config, spec, cls.name)

    def training_set(self, r: RoundInput) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        return flip_to(r, c["source-class"], c["target-class"], c["injection-rate"])
