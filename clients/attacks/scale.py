"""``attack=scale``: update inflation / gradient divergence.

The attacker trains honestly and sends ``global + scale-factor * (local -
global)`` (a negative factor sends the update the other way), optionally plus
Gaussian noise of std ``scale-noise`` on every weight: the untargeted
model-poisoning attack that plain averaging cannot absorb and robust
aggregation (median, Krum) is built for.
"""

from __future__ import annotations

import numpy as np

from clients.behaviour import Behaviour, RoundInput
from clients.model_poisoning import scale_update
from fl_poison.config import Key, at_least

SCALE_FACTOR = Key("scale-factor", float, 10.0, "factor the scale attack multiplies its update by (< 0 flips its sign)",
                   check=lambda v: v != 0 and abs(v) != float("inf"), allowed="a finite number other than 0")
SCALE_NOISE = Key("scale-noise", float, 0.0, "std of Gaussian noise the scale attack adds to every weight",
                  constraint=at_least(0, float))


class Scale(Behaviour):
    """Train honestly, send the update times ``scale-factor`` (+ noise)."""

    name = "scale"
    keys = (SCALE_FACTOR, SCALE_NOISE)
    help = "model poisoning: the update multiplied by scale-factor, optional Gaussian noise"
    malicious = True

    def craft(self, r: RoundInput, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        c = self.config
        return scale_update(state, r.global_state, c["scale-factor"], c["scale-noise"], r.rng)
