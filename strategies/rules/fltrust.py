"""FLTrust (Cao, Fang, Liu, Gong, NDSS 2021): trust scores from a server update on a small root data set.

The server trains the global model on its root set (as a client would) for
the update ``g0``. Each client update ``g_i`` gets::

    TS_i  = ReLU(cos(g_i, g0))                  trust score
    g_i'  = g_i * ||g0|| / ||g_i||              magnitude normalised to the server's
    g     = sum_i TS_i g_i' / sum_j TS_j

Clients pointing away from ``g0`` (cosine <= 0) get no weight; a boosted
update cannot be larger than the server's. If every score is 0 the update is
zero (the global model stays; ``info["fallback"]``). Example counts are not
used (the paper's weights are the trust scores alone). The paper applies the
aggregate with the global learning rate; here clients send model updates
(local - global), so the aggregate is the step, as for every rule here.
"""

from __future__ import annotations

import numpy as np

from fl_poison.updates import Layout
from strategies.rules.aggregation import Aggregation
from strategies.rules.fedavg_math import check_updates, combine_rows, row_norms

#: the paper's root data set size
DEFAULT_ROOT_SAMPLES = 100


def fltrust(updates: np.ndarray, weights: np.ndarray, layout: Layout | None = None, *,
            server_update: np.ndarray) -> Aggregation:
    """FLTrust's aggregate of ``updates`` given the server's root-data update ``server_update`` ``[P]``.

    ``kept`` = ``TS > 0``; ``weights`` = ``TS / sum TS`` (the share of each normalised
    update); ``info``: ``trust`` (the scores), ``server_norm``.
    """
    u, _ = check_updates(updates, weights)
    k, p = u.shape
    g0 = np.asarray(server_update, dtype=np.float64).reshape(-1)
    if g0.shape != (p,):
        raise ValueError(f"server update has {g0.size} entries, the client updates {p}")
    n0 = float(np.sqrt(g0 @ g0))
    norms = row_norms(u)
    dots = np.array([float(row.astype(np.float64) @ g0) for row in u])
    ok = (norms > 0) & (n0 > 0)
    trust = np.where(ok, np.maximum(dots / np.where(ok, norms * n0, 1.0), 0.0), 0.0)
    info: dict = {"trust": trust.tolist(), "server_norm": n0}
    total = trust.sum()
    if total <= 0:
        info["fallback"] = "every trust score is 0: zero update"
        return Aggregation(np.zeros(p), np.zeros(k, dtype=bool), np.zeros(k), info)
    share = trust / total
    scale = np.where(ok, n0 / np.where(norms > 0, norms, 1.0), 0.0)
    return Aggregation(combine_rows(u, share * scale), trust > 0, share, info)
