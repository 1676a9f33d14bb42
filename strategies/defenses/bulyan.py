"""``defense=bulyan`` (El Mhamdi et al. 2018)."""

from __future__ import annotations

from typing import Any

from fl_poison.config import Key
from strategies.rules import robust
from strategies.defenses.krum import NUM_BYZANTINE, _ByzantineBudget, check_budget


SELECTION = Key("bulyan-selection", str, "iterated",
                "Bulyan selection: Krum iterated n - 2f times (paper) or one Multi-Krum pass (Flower)",
                ("iterated", "flower"), param="selection")


class Bulyan(_ByzantineBudget):
    """Bulyan (see ``robust.bulyan``); needs K >= 4f + 3.

    ``selection``: "iterated" (El Mhamdi et al.: Krum θ = n − 2f times, removing the chosen update each
    time) | "flower" (Flower's shortcut: one Multi-Krum pass by Krum scores).
    """

    name = "bulyan"
    keys = (NUM_BYZANTINE, SELECTION)
    help = "Bulyan (El Mhamdi et al. 2018)"

    def __init__(self, *, selection: str = SELECTION.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.selection = selection

    #: Bulyan's f for ``num-byzantine=-1``: the largest with K >= 4f + 3 (its budget's own bound).
    largest_f = staticmethod(robust.BULYAN_BUDGET.largest)

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        check_budget(config, cls, robust.BULYAN_BUDGET)

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return robust.bulyan(updates, weights, layout, num_byzantine=self.f_for(len(updates)),
                             selection=self.selection)
