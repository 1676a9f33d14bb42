"""``defense=signguard``: SignGuard (Xu et al., ICDCS 2022)."""

from __future__ import annotations

from typing import Any

from fl_poison.config import Interval, Key, at_least
from strategies.rules import signguard as sg
from strategies.defenses._seeded import SeededDefense

SG_LOWER = Key("signguard-lower", float, sg.DEFAULT_LOWER, "SignGuard keeps norms >= L * median norm (L)",
               constraint=Interval(float, 0, 1, closed="both"), param="lower")
SG_UPPER = Key("signguard-upper", float, sg.DEFAULT_UPPER, "SignGuard keeps norms <= R * median norm (R)",
               constraint=at_least(1, float), param="upper")
SG_COORDS = Key("signguard-coord-fraction", float, sg.DEFAULT_COORD_FRACTION,
                "share of coordinates SignGuard's sign statistics are computed on (drawn each round)",
                constraint=Interval(float, 0, 1, closed="right"), param="coord_fraction")


class SignGuard(SeededDefense):
    """Norm filter and sign-statistics MeanShift cluster, then the mean of the kept updates clipped to the median norm."""

    name = "signguard"
    keys = (SG_LOWER, SG_UPPER, SG_COORDS)
    help = "SignGuard (Xu et al. 2022): norm and sign-statistics filters"

    def __init__(self, *, lower: float = SG_LOWER.default, upper: float = SG_UPPER.default,
                 coord_fraction: float = SG_COORDS.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.lower, self.upper, self.coord_fraction = lower, upper, coord_fraction

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return sg.signguard(updates, weights, layout, lower=self.lower, upper=self.upper,
                            coord_fraction=self.coord_fraction, rng=self.round_rng(server_round))
