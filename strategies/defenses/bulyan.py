"""``defense=bulyan`` (El Mhamdi et al. 2018)."""

from __future__ import annotations

from typing import Any

from strategies import robust
from strategies.defenses.krum import NUM_BYZANTINE, _ByzantineBudget, check_budget


class Bulyan(_ByzantineBudget):
    """Bulyan as Flower defines it (see ``robust.bulyan``); needs K >= 4f + 3."""

    name = "bulyan"
    keys = (NUM_BYZANTINE,)
    help = "Bulyan (El Mhamdi et al. 2018)"

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        check_budget(config, cls.name, lambda k, f: k >= 4 * f + 3, "Bulyan needs clients-per-round >= 4*f + 3",
                     lambda k: (k - 3) // 4)

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return robust.bulyan(updates, weights, layout, num_byzantine=self.f_for(len(updates)))
