"""``defense=krum`` and ``defense=multi-krum`` (Blanchard et al. 2017), and the shared Byzantine budget f.

``num-byzantine`` is declared here once and shared by Bulyan.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fl_poison.config import ByzantineBudget, ConfigError, Key
from strategies.rules import robust
from strategies.base import DefenseStrategy, byzantine_budget

NUM_BYZANTINE = Key("num-byzantine", int, -1,
                    "f assumed by Krum / multi-Krum / Bulyan (-1 = the largest the rule tolerates)",
                    constraint=replace(robust.NUM_BYZANTINE_F, off=-1), param="num_byzantine")
KRUM_DISTANCE = Key("krum-distance", str, "squared",
                     "Krum / multi-Krum score: squared distances to the others (paper, Flower) or LFighter's code "
                     "(plain distances, self counted)", ("squared", "lfighter-code"), param="krum_distance")
MULTI_KRUM_KEEP = Key("multi-krum-keep", int, -1, "updates multi-Krum averages (-1 = clients-per-round - f)",
                      constraint=replace(robust.NUM_SELECTED, off=-1), param="keep")


def check_budget(config: dict[str, Any], rule_class: type[DefenseStrategy], budget: ByzantineBudget) -> None:
    """ConfigError unless the rule's f fits clients-per-round, by the budget its pure function checks too.

    ``rule_class`` says which f ``num-byzantine=-1`` stands for (its ``largest_f``).
    """
    k, given = config["clients-per-round"], config["num-byzantine"]
    budget.check(k, byzantine_budget(rule_class.largest_f, k, given), given)


class _ByzantineBudget(DefenseStrategy):
    """Krum-family rules: ``num_byzantine`` = f, or -1 for the largest f the round's size tolerates."""

    def __init__(self, *, num_byzantine: int = NUM_BYZANTINE.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.num_byzantine = num_byzantine

    def f_for(self, k: int) -> int:
        return byzantine_budget(self.largest_f, k, self.num_byzantine)


class Krum(_ByzantineBudget):
    """Krum: the single update closest to its K − f − 2 neighbours.

    ``krum_distance``: "squared" (the paper, Flower) | "lfighter-code" (LFighter's code: plain distances with
    the zero self-distance counted; see ``robust.krum_scores``).
    """

    name = "krum"
    keys = (NUM_BYZANTINE, KRUM_DISTANCE)
    help = "Krum (Blanchard et al. 2017)"
    averages = False  # one update is chosen, none averaged

    def __init__(self, *, krum_distance: str = KRUM_DISTANCE.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.distance = krum_distance

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        check_budget(config, cls, robust.KRUM_BUDGET)

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return robust.krum(updates, weights, layout, num_byzantine=self.f_for(len(updates)),
                           distance=self.distance)


class MultiKrum(Krum):
    """Multi-Krum: the average of the ``keep`` best-scored updates (-1: K − f)."""

    name = "multi-krum"
    keys = (NUM_BYZANTINE, KRUM_DISTANCE, MULTI_KRUM_KEEP)
    help = "multi-Krum (Blanchard et al. 2017)"
    averages = True  # the selected updates' weighted mean

    def __init__(self, *, keep: int = MULTI_KRUM_KEEP.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.keep = keep

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        super().check_config(config, spec)
        k = config["clients-per-round"]
        if config["multi-krum-keep"] > k:
            raise ConfigError("multi-krum-keep", config["multi-krum-keep"], f"at most clients-per-round ({k})")

    @classmethod
    def config_warnings(cls, config: Any) -> list[str]:
        """keep >= clients-per-round averages every update: plain FedAvg. Legal (the m = n end of the paper's
        range, a sanity point in a sweep over m), so a warning rather than a refusal."""
        k = config["clients-per-round"]
        m = config["multi-krum-keep"]
        m = m if m > 0 else k - byzantine_budget(cls.largest_f, k, config["num-byzantine"])
        if m < k:
            return []
        return [f"multi-krum keeps {m} of {k} updates (multi-krum-keep={config['multi-krum-keep']}, "
                f"num-byzantine={config['num-byzantine']}): it averages every update, plain FedAvg"]

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        f = self.f_for(len(updates))
        m = self.keep if self.keep > 0 else max(len(updates) - f, 1)
        return robust.multi_krum(updates, weights, layout, num_byzantine=f, num_selected=min(m, len(updates)),
                                 distance=self.distance)
