"""``attack=label-flip``: targeted flipping of the source class onto the target class.

Tolpegin et al. §2.2 and LFighter: every source-class label becomes the target
and the rest of the local data stays clean; with ``injection-rate`` (ADA,
Sun et al. §III-C1) the attacker trains on its flipped source samples mixed
with a drawn share of clean ones (see :func:`clients.poisoning.injection_indices`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clients.behaviour import Behaviour, RoundInput
from clients.poisoning import poison_labels
from fl_poison.config import Key, check_class_pair

INJECTION_RATE = Key(
    "injection-rate", float, -1.0, "poisoned share of an attacker's local set (-1 = all local data, source flipped)",
    check=lambda v: v == -1 or 0 < v <= 1, allowed="a number in (0, 1], or -1 for off")

#: Salt of the injection subset's random stream, so it is independent of every other use of the seed.
_INJECTION_SALT = 7


def flip_to(r: RoundInput, source: int, target: int, injection_rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The local set with ``source`` relabelled ``target`` (at ``injection_rate``); shared with ADA.

    Seeded by (run seed, round, client) so the injection subset is reproducible.
    A client without any source example trains on its data unchanged.
    """
    c = r.config
    rng = np.random.default_rng([c["seed"], r.server_round, r.cid, _INJECTION_SALT])
    idx, labels = poison_labels(r.y.numpy(), attack="label-flip", source=source, target=target, mapping=None,
                                injection_rate=injection_rate, rng=rng)
    if len(idx) == 0:
        return r.x, r.y
    idx_t = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    return r.x[idx_t], torch.from_numpy(np.asarray(labels, dtype=np.int64))


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
