"""``defense=mylab-norm-filter``: FedAvg of the updates not much longer than the round's median update.

An update whose L2 norm exceeds ``norm-ratio`` times the median norm of the round is flagged; the rest
are averaged by example counts. Who was kept feeds fl-poison's detection metrics; the median norm goes
to ``defense.jsonl`` as the round's diagnostics.
"""

from __future__ import annotations

import numpy as np

from fl_poison.config import Key, at_least
from strategies.base import DefenseStrategy
from strategies.rules.fedavg_math import fedavg

NORM_RATIO = Key("norm-ratio", float, 2.0, "mylab-norm-filter flags updates longer than this times the median",
                 constraint=at_least(1, float), param="ratio")


class NormFilter(DefenseStrategy):
    """FedAvg over the updates whose norm is at most ``ratio`` x the round's median norm."""

    name = "mylab-norm-filter"
    keys = (NORM_RATIO,)
    help = "drop updates longer than norm-ratio x the round's median norm, FedAvg the rest"

    def __init__(self, *, ratio: float = NORM_RATIO.default, **kw):
        super().__init__(**kw)
        self.ratio = ratio

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        norms = np.linalg.norm(updates.astype(np.float64), axis=1)
        median = float(np.median(norms))
        agg = fedavg(updates, weights, layout, kept=norms <= self.ratio * median)
        agg.info.update({"median_norm": median, "norms": norms.tolist()})
        return agg
