"""``defense=trimmed-mean``: coordinate-wise trimmed mean (Yin et al. 2018), as Flower's FedTrimmedAvg."""

from __future__ import annotations

from typing import Any

from fl_poison.config import Key
from strategies import defaults
from strategies.rules import robust
from strategies.base import DefenseStrategy

TRIM_BETA = Key("trim-beta", float, defaults.TRIM_BETA, "fraction trimmed from each end (trimmed-mean)",
                constraint=robust.TRIM_BETA_RANGE, param="beta")


class TrimmedMean(DefenseStrategy):
    """Drops the ``beta`` share of largest and smallest values per coordinate, averages the rest."""

    name = "trimmed-mean"
    keys = (TRIM_BETA,)
    help = "coordinate-wise trimmed mean (Yin et al. 2018)"

    def __init__(self, *, beta: float = TRIM_BETA.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.beta = beta

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return robust.trimmed_mean(updates, weights, layout, beta=self.beta)
