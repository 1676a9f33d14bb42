"""``defense=centered-clipping``: Karimireddy, He, Jaggi (ICML 2021), centred at the previous round's aggregate."""

from __future__ import annotations

from typing import Any

import numpy as np

from fl_poison.config import Key
from strategies.rules import centered_clipping as cc
from strategies.base import DefenseStrategy

CC_TAU = Key("cc-tau", float, cc.DEFAULT_TAU, "clipping radius tau of centered-clipping",
             constraint=cc.TAU, param="tau")
CC_ITERATIONS = Key("cc-iterations", int, cc.DEFAULT_ITERATIONS, "clipping iterations L of centered-clipping per round",
                    constraint=cc.ITERATIONS, param="iterations")


class CenteredClipping(DefenseStrategy):
    """Iterated clipping around the last aggregate; the state (that aggregate) lives in the strategy."""

    name = "centered-clipping"
    keys = (CC_TAU, CC_ITERATIONS)
    help = "centered clipping (Karimireddy, He, Jaggi 2021)"
    averages = False  # the paper's mean is unweighted

    def __init__(self, *, tau: float = CC_TAU.default, iterations: int = CC_ITERATIONS.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.tau, self.iterations = tau, iterations
        #: the previous round's aggregate update (``None`` before the first round: the centre is zero)
        self.centre: np.ndarray | None = None

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        centre = self.centre if self.centre is not None and self.centre.shape == (updates.shape[1],) else None
        agg = cc.centered_clipping(updates, weights, layout, tau=self.tau, iterations=self.iterations, centre=centre)
        if np.all(np.isfinite(agg.update)):
            self.centre = agg.update.copy()
        return agg
