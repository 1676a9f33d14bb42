"""``defense=krum`` and ``defense=multi-krum`` (Blanchard et al. 2017), and the shared Byzantine budget f.

``num-byzantine`` is declared here once and shared by Bulyan.
"""

from __future__ import annotations

from typing import Any

from fl_poison.config import ConfigError, Key
from strategies import robust
from strategies.base import DefenseStrategy

NUM_BYZANTINE = Key("num-byzantine", int, -1,
                    "f assumed by Krum / multi-Krum / Bulyan (-1 = the largest the rule tolerates)",
                    check=lambda v: v >= -1, allowed="an integer >= 0, or -1", param="num_byzantine")
MULTI_KRUM_KEEP = Key("multi-krum-keep", int, -1, "updates multi-Krum averages (-1 = clients-per-round - f)",
                      check=lambda v: v >= -1, allowed="an integer >= 1, or -1", param="keep")


def byzantine_budget(defense: str, k: int, f: int) -> int:
    """The f a Krum-family rule uses: the given one, or the largest it tolerates for k clients."""
    if f >= 0:
        return f
    if defense == "bulyan":
        return max(0, (k - 3) // 4)
    return max(0, (k - 3) // 2)


class _ByzantineBudget(DefenseStrategy):
    """Krum-family rules: ``num_byzantine`` = f, or -1 for the largest f the round's size tolerates."""

    def __init__(self, *, num_byzantine: int = NUM_BYZANTINE.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.num_byzantine = num_byzantine

    def f_for(self, k: int) -> int:
        return byzantine_budget(self.name, k, self.num_byzantine)


class Krum(_ByzantineBudget):
    """Krum: the single update closest to its K − f − 2 neighbours."""

    name = "krum"
    keys = (NUM_BYZANTINE,)
    help = "Krum (Blanchard et al. 2017)"

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        k = config["clients-per-round"]
        f = byzantine_budget(cls.name, k, config["num-byzantine"])
        if k - f - 2 < 1:
            raise ConfigError("num-byzantine", config["num-byzantine"],
                              f"Krum needs clients-per-round - num-byzantine - 2 >= 1; with {k} clients "
                              f"f <= {max(k - 3, 0)}" + (" (Krum needs at least 3 clients per round)" if k < 3 else ""))

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return robust.krum(updates, weights, layout, num_byzantine=self.f_for(len(updates)))


class MultiKrum(Krum):
    """Multi-Krum: the average of the ``keep`` best-scored updates (-1: K − f)."""

    name = "multi-krum"
    keys = (NUM_BYZANTINE, MULTI_KRUM_KEEP)
    help = "multi-Krum (Blanchard et al. 2017)"

    def __init__(self, *, keep: int = MULTI_KRUM_KEEP.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.keep = keep

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        super().check_config(config, spec)
        k = config["clients-per-round"]
        if config["multi-krum-keep"] > k:
            raise ConfigError("multi-krum-keep", config["multi-krum-keep"], f"at most clients-per-round ({k})")

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        f = self.f_for(len(updates))
        m = self.keep if self.keep > 0 else max(len(updates) - f, 1)
        return robust.multi_krum(updates, weights, layout, num_byzantine=f, num_selected=min(m, len(updates)))
