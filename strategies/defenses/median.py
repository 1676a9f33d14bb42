"""``defense=median``: coordinate-wise median (Yin et al. 2018), as Flower's FedMedian."""

from __future__ import annotations

from strategies.rules import robust
from strategies.base import DefenseStrategy


class Median(DefenseStrategy):
    """Coordinate-wise median of the updates; no client gets a single share (weights NaN)."""

    name = "median"
    help = "coordinate-wise median (Yin et al. 2018)"
    averages = False

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return robust.median(updates, weights, layout)
