"""``defense=fedavg``: plain example-weighted averaging, the no-defense baseline."""

from __future__ import annotations

from strategies.rules.aggregation import Aggregation
from strategies.base import DefenseStrategy
from strategies.rules.fedavg_math import fedavg


class FedAvgDefense(DefenseStrategy):
    """FedAvg (McMahan et al. 2017): the example-weighted mean of the updates."""

    name = "fedavg"
    help = "example-weighted mean (no defense)"

    def aggregate_updates(self, updates, weights, layout, clients, server_round) -> Aggregation:
        return fedavg(updates, weights, layout)
