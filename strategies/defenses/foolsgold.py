"""``defense=foolsgold`` (Fung et al. 2020): down-weight clients whose update histories look alike."""

from __future__ import annotations

from typing import Any

import numpy as np

from fl_poison.config import Key
from strategies.rules import foolsgold as fg
from strategies.base import DefenseStrategy

FEATURES = Key("foolsgold-features", str, "output-layer", "what FoolsGold accumulates per client",
               ("output-layer", "all"), param="features")

SCOPE = Key("foolsgold-scope", str, "all-seen", "FoolsGold compares the histories of every client seen so far "
            "(FoolsGold, LFighter's code) or of this round's clients only", fg.SCOPES, param="scope")


class FoolsGold(DefenseStrategy):
    """FoolsGold with a per-client accumulated history across rounds (the math: ``strategies.rules.foolsgold``).

    ``scope``: "all-seen" (original FoolsGold, LFighter's baseline: similarity over every client seen so
    far, then the sampled clients' weights) | "round" (only this round's clients). History: ``[clients seen, F]``.
    """

    name = "foolsgold"
    keys = (FEATURES, SCOPE)
    help = "FoolsGold (Fung et al. 2020)"

    def __init__(self, *, features: str = FEATURES.default, scope: str = SCOPE.default, **kw: Any) -> None:
        super().__init__(**kw)
        if scope not in fg.SCOPES:
            raise ValueError(f"scope must be one of {fg.SCOPES}, got {scope!r}")
        self.features, self.scope = features, scope
        self.history: dict[int, np.ndarray] = {}

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        feats = fg.foolsgold_features(updates, layout, self.features)
        for c, row in zip(clients, feats):
            self.history[c] = self.history.get(c, 0.0) + row
        if self.scope == "round":
            hist = np.stack([self.history[c] for c in clients])
            return fg.foolsgold(updates, weights, layout, history=hist, features=self.features)
        order = {c: i for i, c in enumerate(self.history)}
        hist = np.stack(list(self.history.values()))
        return fg.foolsgold(updates, weights, layout, history=hist, features=self.features,
                            sampled=np.array([order[c] for c in clients]))
