"""``attack=model-replacement``: Bagdasaryan et al.'s backdoor with the update boosted to replace the model.

"How to backdoor federated learning" (AISTATS 2020), Section 4: the attacker
trains a backdoored model X (the trigger of ``attack=backdoor`` on a
``poison-fraction`` of its data) and sends ``L = gamma (X - G) + G``, so that
averaging ``G + (eta / n) * sum_i (L_i - G)`` over the n clients of the round
lands on X when the honest updates roughly cancel: ``gamma = n / eta``.
Here the server's rule replaces the model by the mean (eta = 1), so the
paper's default is ``gamma = clients-per-round`` (``replacement-gamma = -1``).

Not included: the paper's constrain-and-scale (an anomaly-evading term in
the attacker's loss). With several attackers in one round each boosting by n
overshoots by their number; set ``replacement-gamma`` to n / m for m of them.
Under example-weighted FedAvg with unequal local sets the exact factor is the
round's total examples over the attacker's, which the attacker does not know.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clients.attacks.backdoor import BACKDOOR_BOOST, Backdoor
from clients.behaviour import RoundInput
from clients.model_poisoning import scale_update
from fl_poison.config import Key, above

REPLACEMENT_GAMMA = Key("replacement-gamma", float, -1.0, "model replacement's boost gamma (-1 = the paper's "
                        "n / eta = clients-per-round)", constraint=above(0, off=-1, off_means=" for clients-per-round"))


def replacement_gamma(config: Any) -> float:
    """The factor the attacker scales ``X - G`` by: the key, or n / eta with eta = 1."""
    g = config["replacement-gamma"]
    return float(config["clients-per-round"]) if g == -1 else float(g)


class ModelReplacement(Backdoor):
    """Backdoor training, then the update boosted by gamma so that averaging lands on the backdoored model."""

    name = "model-replacement"
    keys = tuple(k for k in Backdoor.keys if k is not BACKDOOR_BOOST) + (REPLACEMENT_GAMMA,)
    help = "backdoor + model replacement (Bagdasaryan et al. 2020): update scaled by gamma = n / eta"

    def craft(self, r: RoundInput, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return scale_update(state, r.global_state, replacement_gamma(self.config))
