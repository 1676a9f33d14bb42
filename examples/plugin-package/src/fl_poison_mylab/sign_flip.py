"""``attack=mylab-sign-flip``: train honestly, then send the update reversed and scaled.

The attacker sends ``global - flip-factor * (local - global)``: it pulls the model away from where the
honest clients push it. It reports the factor as a reply metric, so the run's ``rounds.csv`` has a
``malicious_flip_factor`` column.
"""

from __future__ import annotations

import numpy as np

from clients.behaviour import Behaviour, LocalResult, RoundInput
from fl_poison.config import Key, above

FLIP_FACTOR = Key("flip-factor", float, 4.0, "how far mylab-sign-flip sends its reversed update",
                  constraint=above(0))


class SignFlip(Behaviour):
    """Honest training, then ``global - flip-factor * (local - global)``."""

    name = "mylab-sign-flip"
    keys = (FLIP_FACTOR,)
    help = "model poisoning: the honest update reversed and scaled by flip-factor"
    malicious = True

    def craft(self, r: RoundInput, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        f, g = self.config["flip-factor"], r.global_state
        return {k: (g[k] - f * (v - g[k])).astype(v.dtype) if v.dtype.kind == "f" else v for k, v in state.items()}

    def local_work(self, r: RoundInput) -> LocalResult:
        result = super().local_work(r)
        if self.active(r.server_round):
            result.metrics["flip-factor"] = float(self.config["flip-factor"])
        return result
