"""``defense=repeated-median``: Siegel's repeated median, LFighter's RMedian baseline."""

from __future__ import annotations

from typing import Any

from fl_poison.config import Key
from strategies.rules import robust
from strategies.base import DefenseStrategy

REWEIGHT = Key("repeated-median-reweight", bool, False, "repeated median with residual-based reweighting",
               param="reweight")


class RepeatedMedian(DefenseStrategy):
    """Repeated median; ``reweight`` adds Fu et al.'s residual reweighting (see ``robust.repeated_median``)."""

    name = "repeated-median"
    keys = (REWEIGHT,)
    help = "Siegel's repeated median (LFighter's RMedian)"
    averages = False  # a median fit, never weighted by example counts

    def __init__(self, *, reweight: bool = REWEIGHT.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.reweight = reweight

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return robust.repeated_median(updates, weights, layout, reweight=self.reweight)
