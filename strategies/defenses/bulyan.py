"""``defense=bulyan`` (El Mhamdi et al. 2018)."""

from __future__ import annotations

from typing import Any

from fl_poison.config import ConfigError
from strategies import robust
from strategies.defenses.krum import NUM_BYZANTINE, _ByzantineBudget, byzantine_budget


class Bulyan(_ByzantineBudget):
    """Bulyan as Flower defines it (see ``robust.bulyan``); needs K >= 4f + 3."""

    name = "bulyan"
    keys = (NUM_BYZANTINE,)
    help = "Bulyan (El Mhamdi et al. 2018)"

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        k = config["clients-per-round"]
        f = byzantine_budget(cls.name, k, config["num-byzantine"])
        if k < 4 * f + 3:
            raise ConfigError("num-byzantine", config["num-byzantine"],
                              f"Bulyan needs clients-per-round >= 4*f + 3; with {k} clients "
                              + (f"f <= {(k - 3) // 4}" if k >= 3 else "no f works (Bulyan needs at least 3 clients per round)"))

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return robust.bulyan(updates, weights, layout, num_byzantine=self.f_for(len(updates)))
