"""``defense=foolsgold`` (Fung et al. 2020): down-weight clients whose update histories look alike."""

from __future__ import annotations

from typing import Any

import numpy as np

from fl_poison.config import Key
from strategies import foolsgold as fg
from strategies.base import DefenseStrategy

FEATURES = Key("foolsgold-features", str, "output-layer", "what FoolsGold accumulates per client",
               ("output-layer", "all"), param="features")


class FoolsGold(DefenseStrategy):
    """FoolsGold with a per-client accumulated history across rounds (the math: ``strategies.foolsgold``)."""

    name = "foolsgold"
    keys = (FEATURES,)
    help = "FoolsGold (Fung et al. 2020)"

    def __init__(self, *, features: str = FEATURES.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.features = features
        self.history: dict[int, np.ndarray] = {}

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        feats = fg.foolsgold_features(updates, layout, self.features)
        for c, row in zip(clients, feats):
            self.history[c] = self.history.get(c, 0.0) + row
        hist = np.stack([self.history[c] for c in clients])
        return fg.foolsgold(updates, weights, layout, history=hist, features=self.features)
