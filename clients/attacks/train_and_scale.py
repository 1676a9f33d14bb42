"""``attack=train-and-scale``: targeted flipping, then the update shrunk to a norm bound.

Bagdasaryan et al.'s "train and scale" as the ADA paper uses it (Sun et al.
§III-C2): the attacker trains on its flipped data, then multiplies its update
(local - global) by 1, 0.9, 0.8, ... until the norm is within ``scale-bound``,
so a norm-based defense such as NDC keeps it.

``scale-bound = auto`` follows the paper's estimate: the attacker first trains
*legitimately* (its own clean local data, the same received model, the same
seed) and takes that honest update's norm as the bound ("the average norm of
the collected legitimate updates", here from this attacker alone). The
authors' code instead uses the median of the norms of the *other* clients'
updates already collected in the round -- knowledge a real client does not
have; we do not reproduce that.

ADA (``clients/attacks/ada.py``) subclasses this and only changes how the
target is chosen.
"""

from __future__ import annotations

import copy
from typing import Any


from clients.attacks.label_flip import INJECTION_RATE, flip_to
from clients.behaviour import Behaviour, LocalResult, RoundInput
from clients.model_poisoning import shrink_to_bound, update_norm
from fl_poison.config import Key, check_class_pair
from fl_poison.training import get_state, train_local


def _bound_ok(v: str) -> bool:
    if v == "auto":
        return True
    try:
        f = float(v)
    except ValueError:
        return False
    return f > 0 and f != float("inf")


SCALE_BOUND = Key("scale-bound", str, "auto",
                  "norm bound train-and-scale / ADA shrink their update to (auto = the norm of an honest update "
                  "on the attacker's own clean data this round)", check=_bound_ok, allowed="a number > 0, or auto")


class TrainAndScale(Behaviour):
    """Flip source -> target, train, shrink the update into the bound."""

    name = "train-and-scale"
    keys = (INJECTION_RATE, SCALE_BOUND)
    help = "targeted flipping, then the update shrunk by 1, 0.9, ... to scale-bound (Bagdasaryan et al.; ADA §III-C2)"
    malicious = True

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        check_class_pair(config, spec, cls.name)

    def target_for(self, r: RoundInput) -> tuple[int, dict[str, float]]:
        """The class to flip the source onto this round, and extra reply metrics (-1 = none: train honestly)."""
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
        target, extra = self.target_for(r)
        if target < 0:
            result = Behaviour.local_work(self, r)
            result.metrics.update(extra)
            return result
        bound = self.bound_for(r)
        c = self.config
        x, y = flip_to(r, c["source-class"], target, c["injection-rate"])
        result = self.train_and_reply(r, x, y)
        raw = result.state
        result.state, factor, norm = shrink_to_bound(raw, r.global_state, bound)
        result.metrics.update({"scale-bound": float(bound), "shrink-factor": float(factor),
                               "unscaled-norm": update_norm(raw, r.global_state), **extra})
        return result


