"""``attack=train-and-scale``: targeted flipping, then the update shrunk to a norm bound.

Bagdasaryan et al.'s "train and scale" as the ADA paper uses it (Sun et al.
§III-C2): the attacker trains on its flipped data, then multiplies its update
(local - global) by 1, 0.9, 0.8, ... until the norm is within ``scale-bound``,
so a norm-based defense such as NDC keeps it.

``scale-bound = auto`` follows the paper's estimate: the attacker first trains
*legitimately* (its own clean local data, the same received model, the same
seed) and takes that honest update's norm as the bound ("the average norm of
the collected legitimate updates", here from this attacker alone).
``scale-bound = median-honest`` is the authors' code: the bound is the median
of the norms of this round's honest updates -- knowledge no client has, so
the client sends its unscaled update (reply metric
``fl_poison.adversary.MARKER``) and the adversary's seat on the server
(:class:`fl_poison.adversary.AdversarySeat` with :class:`MedianHonestScaling`)
shrinks it once the round's replies are in. A number is a fixed bound.

ADA (``clients/attacks/ada.py``) subclasses this and only changes how the
target is chosen.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from clients.attacks.label_flip import INJECTION_RATE, attack_set, relabel
from clients.behaviour import Behaviour, LocalResult, RoundInput
from clients.model_poisoning import shrink_to_bound, update_norm
from fl_poison.adversary import MARKER
from fl_poison.config import Key, NumberOrWord, above, check_class_pair
from fl_poison.training import get_state, train_local


#: ``scale-bound`` value of the authors' code: the median of this round's honest update norms.
MEDIAN_HONEST = "median-honest"

SCALE_BOUND = Key("scale-bound", str, "auto",
                  "norm bound train-and-scale / ADA shrink their update to (auto = the norm of an honest update "
                  "on the attacker's own clean data this round, the paper; median-honest = the median of this "
                  "round's honest update norms, the authors' code, applied by the adversary's seat on the server)",
                  constraint=NumberOrWord(above(0, noun="a finite number"), ("auto", MEDIAN_HONEST)))


class MedianHonestScaling:
    """The seat's half of ``scale-bound=median-honest``: shrink to the median of this round's honest norms.

    Each malicious update is shrunk by 1, 0.9, 0.8, ... until its norm is at
    most ``median_k ||honest_k - global||`` over the round's benign replies
    (:func:`clients.model_poisoning.shrink_to_bound`). The authors' loop takes
    the median of the norms collected *so far* in the round, which after their
    sort of client ids is the honest ones plus the earlier attackers'; here it
    is the honest norms alone. With no benign reply the update goes unscaled.
    """

    def replace(self, server_round: int, global_state: dict[str, np.ndarray],
                malicious: list[tuple[dict[str, np.ndarray], dict]],
                benign: list[dict[str, np.ndarray]]) -> list[tuple[dict[str, np.ndarray], dict]]:
        if not benign:
            return malicious
        bound = max(float(np.median([update_norm(s, global_state) for s in benign])), 1e-12)
        out = []
        for state, metrics in malicious:
            new, factor, _ = shrink_to_bound(state, global_state, bound)
            out.append((new, {**metrics, "scale-bound": bound, "shrink-factor": float(factor)}))
        return out


class TrainAndScale(Behaviour):
    """Flip source -> target, train, shrink the update into the bound."""

    name = "train-and-scale"
    keys = (INJECTION_RATE, SCALE_BOUND)
    help = "targeted flipping, then the update shrunk by 1, 0.9, ... to scale-bound (Bagdasaryan et al.; ADA §III-C2)"
    malicious = True

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        check_class_pair(config, spec, cls.name)

    @classmethod
    def colluder(cls, config: Any) -> MedianHonestScaling | None:
        return MedianHonestScaling() if config["scale-bound"] == MEDIAN_HONEST else None

    def target_for(self, r: RoundInput, x: torch.Tensor, y: torch.Tensor) -> tuple[int, dict[str, float]]:
        """The class to flip the source onto this round (given the training set ``x, y`` with true labels),
        and extra reply metrics (-1 = none: train honestly)."""
        return int(self.config["target-class"]), {}

    def bound_for(self, r: RoundInput) -> float:
        """``scale-bound``, or the norm of an honest update trained from the received model (``auto``)."""
        b = self.config["scale-bound"]
        if b != "auto":
            return float(b)
        honest = copy.deepcopy(r.model)
        train_local(honest, r.x, r.y, r.settings, seed=r.seed, augment=r.augment)
        return max(update_norm(get_state(honest), r.global_state), 1e-12)

    def local_work(self, r: RoundInput) -> LocalResult:
        if not self.active(r.server_round):
            return super().local_work(r)
        c = self.config
        x, y = attack_set(r, c["source-class"], c["injection-rate"])
        target, extra = self.target_for(r, x, y)
        if target < 0:
            result = Behaviour.local_work(self, r)
            result.metrics.update(extra)
            return result
        seat = c["scale-bound"] == MEDIAN_HONEST
        bound = None if seat else self.bound_for(r)
        result = self.train_and_reply(r, x, relabel(y, c["source-class"], target))
        raw = result.state
        result.metrics.update({"unscaled-norm": update_norm(raw, r.global_state), **extra})
        if seat:  # the adversary's seat shrinks it once the round's honest norms are known
            result.metrics[MARKER] = 1.0
            return result
        result.state, factor, _ = shrink_to_bound(raw, r.global_state, bound)
        result.metrics.update({"scale-bound": float(bound), "shrink-factor": float(factor)})
        return result


