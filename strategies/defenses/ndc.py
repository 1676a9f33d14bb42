"""``defense=ndc``: norm-difference clipping (Sun et al. 2019), the defense ADA evades."""

from __future__ import annotations

from typing import Any

from fl_poison.config import Key
from strategies import defaults
from strategies.rules import norm_clipping
from strategies.base import DefenseStrategy

NDC_BOUND = Key("ndc-bound", str, defaults.NDC_BOUND, "norm bound of NDC: a number > 0, or 'median' (the round's median norm)",
                constraint=norm_clipping.BOUND, param="bound")
NDC_MODE = Key("ndc-mode", str, defaults.NDC_MODE, "NDC clips large updates or drops them", ("clip", "drop"), param="mode")


class NormDifferenceClipping(DefenseStrategy):
    """Clip (or drop) updates whose L2 norm exceeds ``bound``."""

    name = "ndc"
    keys = (NDC_BOUND, NDC_MODE)
    help = "norm-difference clipping (Sun et al. 2019)"

    def __init__(self, *, bound: float | str = NDC_BOUND.default, mode: str = NDC_MODE.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.bound = norm_clipping.check_bound(bound)
        self.mode = mode

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return norm_clipping.ndc(updates, weights, layout, bound=self.bound, mode=self.mode)
