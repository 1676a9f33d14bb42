"""``defense=geometric-median``: RFA (Pillutla et al. 2022), the smoothed-Weiszfeld geometric median."""

from __future__ import annotations

from typing import Any

from fl_poison.config import Key
from strategies.rules import geometric_median as gm
from strategies.base import DefenseStrategy

GEOMED_EPS = Key("geomed-eps", float, gm.DEFAULT_EPS, "smoothing nu of RFA's Weiszfeld iterations (geometric-median)",
                 constraint=gm.EPS, param="eps")
GEOMED_ITERATIONS = Key("geomed-iterations", int, gm.DEFAULT_ITERATIONS,
                        "most Weiszfeld iterations of geometric-median (it stops earlier once the objective "
                        "improves by less than 1e-6 of itself)", constraint=gm.ITERATIONS,
                        param="iterations")


class GeometricMedian(DefenseStrategy):
    """Weighted geometric median of the updates; ``aggregation-weights`` picks example-count or uniform weights."""

    name = "geometric-median"
    keys = (GEOMED_EPS, GEOMED_ITERATIONS)
    help = "geometric median by smoothed Weiszfeld (RFA, Pillutla et al. 2022)"

    def __init__(self, *, eps: float = GEOMED_EPS.default, iterations: int = GEOMED_ITERATIONS.default,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.eps, self.iterations = eps, iterations

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return gm.geometric_median(updates, weights, layout, eps=self.eps, iterations=self.iterations)
