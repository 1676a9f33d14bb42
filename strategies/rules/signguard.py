"""SignGuard (Xu, Huang, Song, Lai, ICDCS 2022): norm filter, sign-statistics clustering, norm-clipped mean.

1. Norm filter: with ``M`` the median update norm, keep ``L <= ||u_k|| / M <= R``
   (the paper's ``L = 0.1``, ``R = 3.0``).
2. Sign filter: on a random subset of coordinates, each client's features are
   the fractions of positive, zero and negative coordinates; MeanShift
   clusters them and the largest cluster is kept.
3. The kept set is the intersection; the aggregate is the mean of the kept
   updates, each clipped to norm ``M`` (``u_k min(1, M / ||u_k||)``).

Choices the paper leaves open: the coordinate subset is a fraction of all
coordinates (default 10%), drawn from ``rng`` (the defense seeds it with the
run seed and the round); MeanShift's bandwidth is scikit-learn's
``estimate_bandwidth`` (quantile 0.3, at least two neighbours); a zero
bandwidth (every client's features have an exact twin) clusters equal features; a size tie between clusters goes to the one
holding the lowest client index; an empty intersection falls back to the
norm filter's set (``info["fallback"]``). The mean is example-weighted as
every averaging rule here (``aggregation-weights=uniform``: the paper's plain mean).
"""

from __future__ import annotations

import numpy as np

from fl_poison.updates import Layout
from strategies.rules.aggregation import Aggregation
from strategies.rules.dnc import sample_columns
from strategies.rules.fedavg_math import check_updates, combine_rows, row_norms, shares

DEFAULT_LOWER = 0.1
DEFAULT_UPPER = 3.0
DEFAULT_COORD_FRACTION = 0.1


def sign_features(block: np.ndarray) -> np.ndarray:
    """``[K, 3]``: fractions of positive, zero and negative entries of each row of ``block``."""
    return np.stack([(block > 0).mean(axis=1), (block == 0).mean(axis=1), (block < 0).mean(axis=1)], axis=1)


def largest_cluster(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MeanShift labels of ``features`` and the mask of the largest cluster (ties: the lowest client index)."""
    from sklearn.cluster import MeanShift, estimate_bandwidth

    k = len(features)
    # quantile 0.3 (scikit-learn's default), but at least one neighbour besides the point itself
    bandwidth = estimate_bandwidth(features, quantile=max(0.3, 2 / k)) if k > 1 else 0.0
    if bandwidth > 0:
        labels = MeanShift(bandwidth=bandwidth).fit(features).labels_
    else:  # every point has an exact twin: MeanShift's limit as the bandwidth shrinks, equal features together
        labels = np.unique(features, axis=0, return_inverse=True)[1].reshape(-1)
    names, first, counts = np.unique(labels, return_index=True, return_counts=True)
    best = names[np.lexsort((first, -counts))[0]]
    return labels, labels == best


def signguard(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout | None = None,
    *,
    lower: float = DEFAULT_LOWER,
    upper: float = DEFAULT_UPPER,
    coord_fraction: float = DEFAULT_COORD_FRACTION,
    rng: np.random.Generator | None = None,
) -> Aggregation:
    """SignGuard's two filters and clipped mean.

    ``kept`` = norm-kept and in the largest sign cluster; ``weights`` = example
    shares within it (each kept update enters clipped to the median norm).
    ``info``: ``median_norm``, ``norm_kept``, ``sign_labels``, ``clip_factors``.
    """
    if not 0 <= lower <= 1 <= upper:
        raise ValueError(f"SignGuard needs 0 <= lower <= 1 <= upper, got {lower!r}, {upper!r}")
    if not 0 < coord_fraction <= 1:
        raise ValueError(f"signguard-coord-fraction must be in (0, 1], got {coord_fraction!r}")
    u, w = check_updates(updates, weights)
    k, p = u.shape
    norms = row_norms(u)
    m = float(np.median(norms))
    norm_ok = (norms >= lower * m) & (norms <= upper * m) if m > 0 else np.ones(k, dtype=bool)
    rng = np.random.default_rng(0) if rng is None else rng
    cols = sample_columns(rng, p, int(np.ceil(coord_fraction * p)))  # >= 1: coord_fraction > 0
    labels, sign_ok = largest_cluster(sign_features(u[:, cols]))
    kept = norm_ok & sign_ok
    info: dict = {"median_norm": m, "norm_kept": [int(x) for x in norm_ok], "sign_labels": [int(x) for x in labels]}
    if not kept.any():
        kept, info["fallback"] = norm_ok.copy(), "no client passed both filters: the norm filter's set is averaged"
    factor = np.where(norms > m, m / np.where(norms > 0, norms, 1.0), 1.0)
    s = shares(w, kept)
    info["clip_factors"] = factor.tolist()
    return Aggregation(combine_rows(u, s * factor), kept, s, info)
