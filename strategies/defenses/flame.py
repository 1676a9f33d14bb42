"""``defense=flame``: FLAME (Nguyen et al., USENIX Security 2022)."""

from __future__ import annotations

from typing import Any

from fl_poison.config import Key
from strategies.rules import flame
from strategies.defenses._seeded import SeededDefense

FLAME_NOISE = Key("flame-noise", float, flame.DEFAULT_NOISE,
                  "FLAME's noise level lambda: sigma = lambda * median update norm (paper: 0.001 for images; 0 = off)",
                  constraint=flame.NOISE, param="noise")


class Flame(SeededDefense):
    """HDBSCAN majority cluster on cosine distances, median-norm clipping, Gaussian noise."""

    name = "flame"
    keys = (FLAME_NOISE,)
    help = "FLAME (Nguyen et al. 2022): HDBSCAN on cosine distances, clipping, noise"
    min_clients = 3  # fewer cannot form a majority cluster apart from an outlier

    def __init__(self, *, noise: float = FLAME_NOISE.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.noise = noise

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return flame.flame(updates, weights, layout, noise=self.noise,
                           rng=self.round_rng(server_round))
