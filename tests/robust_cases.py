"""Stacked-update cases shared by the robust-rule tests: outlier rows, Krum's reference scores, a federation
of arrays with its Flower replies."""

from __future__ import annotations

import numpy as np
from flower_replies import arrays_of, make_replies

from fl_poison.updates import flatten

#: array shapes of the synthetic model in :func:`federation_case`
SHAPES = [(4, 3), (5,), (2, 2, 2)]


def outlier_rows(rng: np.random.Generator, k: int, p: int, outliers: int = 0) -> np.ndarray:
    u = rng.normal(0.0, 0.1, size=(k, p))
    if outliers:
        u[:outliers] += rng.normal(2.0, 1.0, size=(outliers, p))
    return u


def ref_krum_scores(u: np.ndarray, f: int) -> np.ndarray:
    k = len(u)
    n = max(1, k - f - 2)
    scores = []
    for i in range(k):
        d = sorted(float(np.sum((u[i] - u[j]) ** 2)) for j in range(k) if j != i)
        scores.append(sum(d[:n]))
    return np.array(scores)


def federation_case(seed: int, k: int, outliers: int, dtype=np.float64):
    rng = np.random.default_rng(seed)
    global_arrays = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    locals_ = []
    for i in range(k):
        shift = 3.0 if i < outliers else 0.0
        locals_.append([(g + rng.normal(shift, 0.1, size=g.shape)).astype(dtype) for g in global_arrays])
    counts = [int(c) for c in rng.integers(5, 200, size=k)]
    g_flat = flatten(global_arrays)
    u = np.stack([flatten(a) for a in locals_]) - g_flat
    return global_arrays, locals_, counts, g_flat, u


def flower_aggregate(strategy, locals_, counts) -> np.ndarray:
    arrays, _ = strategy.aggregate_train(1, make_replies(locals_, counts))
    return flatten(arrays_of(arrays))


def clear_selection(agg) -> bool:
    """False when a Krum-score selection sits on a tie (then the lower index wins, legitimately order-dependent).

    With ``K - f - 2 = 1`` neighbour, two mutual nearest neighbours always tie,
    so ties are not a measure-zero event there.
    """
    if agg.info.get("selection_ties"):
        # an iterated Bulyan step sat on a tie: with |R| - f - 2 = 1 neighbour (the last steps when f >= 1),
        # two mutual nearest neighbours always tie and the lower index wins -- order-dependent by definition
        return False
    if "scores" not in agg.info:
        return True
    s = np.sort(np.asarray(agg.info["scores"]))
    m = int(np.sum(agg.kept))
    return m >= s.size or s[m] - s[m - 1] > 1e-9 * (1.0 + abs(s[m]))
