"""``defense=dnc``: Divide-and-Conquer (Shejwalkar & Houmansadr, NDSS 2021), f from ``num-byzantine``."""

from __future__ import annotations

from typing import Any

from fl_poison.config import Key, above, at_least
from strategies.rules import dnc
from strategies.defenses._seeded import SeededDefense
from strategies.defenses.krum import NUM_BYZANTINE, _ByzantineBudget, check_budget

DNC_ITERATIONS = Key("dnc-iterations", int, dnc.DEFAULT_ITERATIONS, "DnC iterations (random coordinate subsets)",
                     constraint=at_least(1), param="iterations")
DNC_SUBSAMPLE = Key("dnc-subsample", int, dnc.DEFAULT_SUBSAMPLE, "coordinates DnC samples per iteration (b)",
                    constraint=at_least(1), param="subsample")
DNC_FILTER_FRACTION = Key("dnc-filter-fraction", float, dnc.DEFAULT_FILTER_FRACTION,
                          "DnC removes floor(c * num-byzantine) clients per iteration (c)",
                          constraint=above(0), param="filter_fraction")


class DivideAndConquer(SeededDefense, _ByzantineBudget):
    """SVD outlier scores on random coordinate subsets; the clients every iteration keeps are averaged."""

    name = "dnc"
    keys = (NUM_BYZANTINE, DNC_ITERATIONS, DNC_SUBSAMPLE, DNC_FILTER_FRACTION)
    help = "Divide-and-Conquer (Shejwalkar & Houmansadr 2021)"

    def __init__(self, *, iterations: int = DNC_ITERATIONS.default, subsample: int = DNC_SUBSAMPLE.default,
                 filter_fraction: float = DNC_FILTER_FRACTION.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.iterations, self.subsample, self.filter_fraction = iterations, subsample, filter_fraction

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        check_budget(config, cls, dnc.dnc_budget(config["dnc-filter-fraction"]))

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return dnc.dnc(updates, weights, layout, num_byzantine=self.f_for(len(updates)), iterations=self.iterations,
                       subsample=self.subsample, filter_fraction=self.filter_fraction,
                       rng=self.round_rng(server_round))
