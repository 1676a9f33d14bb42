"""FLAME (Nguyen et al., USENIX Security 2022): HDBSCAN on cosine distances, median-norm clipping, Gaussian noise.

1. ``c_ij = 1 - cos(u_i, u_j)``; HDBSCAN (``min_cluster_size = K/2 + 1``,
   ``min_samples = 1``, a single cluster allowed) on these distances; the
   clients of the largest cluster are kept, HDBSCAN's outliers are flagged.
   When the majority forms HDBSCAN's only (root) cluster, its labelling keeps
   just the cluster's core (the points that stay to the densest level), so some
   honest clients are flagged too; at least the majority of a clear split stays.
2. ``S = median_k ||u_k||`` over ALL clients; each kept update is clipped to
   ``S`` (``u_k min(1, S / ||u_k||)``) and the clipped updates are averaged.
3. Gaussian noise ``N(0, (lambda S)^2)`` is added to every coordinate of the
   aggregate; the paper's ``lambda = 0.001`` for image classification.

Differences from the paper: the paper measures cosine distances between the
local *models*; the rule here gets updates (local - global), which drop the
shared global model (with it every cosine is close to 1). The mean is
example-weighted as every averaging rule here (``aggregation-weights=uniform``:
the paper's plain mean). If HDBSCAN labels everybody an outlier, everyone is
kept (``info["fallback"]``); fewer than 3 clients cannot form a majority
cluster apart from an outlier, so everyone is kept. The noise is drawn from
``rng`` (the defense seeds it with the run seed and the round). Only
trainable parameters get noise (BatchNorm buffers never reach the rule).
"""

from __future__ import annotations

import numpy as np

from fl_poison.config import at_least
from fl_poison.updates import Layout
from strategies.rules.aggregation import Aggregation
from strategies.rules.fedavg_math import check_updates, combine_rows, row_norms, shares

DEFAULT_NOISE = 0.001
#: What the noise factor may be, declared once: the run key ``flame-noise`` and :func:`flame` derive from it.
NOISE = at_least(0, float)


def cosine_distances(updates: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """``[K, K]`` ``1 - cos`` between rows (float64, Gram accumulated in column blocks); a zero row is at 1."""
    k, p = updates.shape
    gram = np.zeros((k, k))
    step = max(1, (16 * 2**20) // max(1, 8 * k))
    for start in range(0, p, step):
        block = updates[:, start:start + step].astype(np.float64)
        gram += block @ block.T
    safe = np.where(norms > 0, norms, 1.0)
    cos = np.clip(gram / safe[:, None] / safe[None, :], -1.0, 1.0)
    cos[norms == 0, :] = 0.0
    cos[:, norms == 0] = 0.0
    d = np.maximum(1.0 - cos, 0.0)
    d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0.0)
    return d


def majority_cluster(distances: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Mask of HDBSCAN's largest cluster (``min_cluster_size = K/2 + 1``), or everyone with the reason."""
    import hdbscan

    k = len(distances)
    if k < 3:
        return np.ones(k, dtype=bool), f"{k} client(s): too few for a majority cluster, all kept"
    labels = hdbscan.HDBSCAN(min_cluster_size=k // 2 + 1, min_samples=1, allow_single_cluster=True,
                             metric="precomputed").fit_predict(distances)
    if np.all(labels < 0):
        return np.ones(k, dtype=bool), "HDBSCAN labelled every client an outlier: all kept"
    names, counts = np.unique(labels[labels >= 0], return_counts=True)
    return labels == names[np.argmax(counts)], None


def flame(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout | None = None,
    *,
    noise: float = DEFAULT_NOISE,
    rng: np.random.Generator | None = None,
) -> Aggregation:
    """FLAME's filter, clipped mean and noise. ``kept`` = the majority cluster (FLAME's detection).

    ``weights`` = example shares over the kept clients; ``info``: ``median_norm``,
    ``noise_sigma``, ``clip_factors`` and ``fallback`` when the clustering kept everyone.
    """
    NOISE.validate(noise, "flame-noise")
    u, w = check_updates(updates, weights)
    k, p = u.shape
    norms = row_norms(u)
    kept, fallback = majority_cluster(cosine_distances(u, norms))
    s_t = float(np.median(norms))
    factor = np.where(norms > s_t, s_t / np.where(norms > 0, norms, 1.0), 1.0)
    s = shares(w, kept)
    update = combine_rows(u, s * factor)
    sigma = noise * s_t
    if sigma > 0:
        rng = np.random.default_rng(0) if rng is None else rng
        update += rng.normal(0.0, sigma, size=p)
    info = {"median_norm": s_t, "noise_sigma": sigma, "clip_factors": factor.tolist()}
    if fallback:
        info["fallback"] = fallback
    return Aggregation(update, kept, s, info)
