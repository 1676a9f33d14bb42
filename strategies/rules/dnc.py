"""Divide-and-Conquer (DnC; Shejwalkar & Houmansadr, NDSS 2021, Algorithm 2).

Each of ``niters`` iterations draws ``b`` random coordinates, centres the
sub-sampled updates on their (unweighted) mean, takes the top right singular
vector ``v`` of the centred ``[K, b]`` matrix and scores every client by its
squared projection ``s_k = <u_k[r] - mu, v>^2``; the ``K - c f`` lowest scores
are that iteration's good set. Clients in every good set (the intersection)
are averaged. Defaults are the paper's: ``niters = 5``, ``b = 10000``, ``c = 1``.

Differences from the paper: the final mean is example-weighted as every
averaging rule here (``aggregation-weights=uniform`` gives the paper's plain
mean), and ``c f`` is rounded down. With ``b >= P`` every coordinate is used
(no sub-sampling). Score ties (e.g. equal updates) keep the lower index.
Randomness comes only from ``rng``: the defense draws it from the run seed
and the round, so a run is reproducible.
"""

from __future__ import annotations

import math

import numpy as np

from fl_poison.config import ByzantineBudget
from fl_poison.updates import Layout
from strategies.rules.aggregation import Aggregation
from strategies.rules.fedavg_math import check_updates, fedavg

DEFAULT_ITERATIONS = 5
DEFAULT_SUBSAMPLE = 10000
DEFAULT_FILTER_FRACTION = 1.0


def dnc_budget(filter_fraction: float) -> ByzantineBudget:
    """DnC's f with c = ``filter_fraction``, declared once for :func:`dnc` and the plug-in's config check."""
    c = filter_fraction

    def fits(k: int, f: int) -> bool:
        return k - num_removed(f, c) >= 1

    def largest(k: int) -> int:
        """The largest f with floor(c f) <= K - 1, i.e. f < K / c (then stepped onto the float rule exactly)."""
        f = max(0, math.ceil((k - 1e-9) / c) - 1)
        while f > 0 and not fits(k, f):
            f -= 1
        while fits(k, f + 1):
            f += 1
        return f

    return ByzantineBudget("DnC", f"{{K}} - floor(c * num-byzantine) >= 1 with c = dnc-filter-fraction = {c:g}",
                           fits, largest)


def num_removed(num_byzantine: int, filter_fraction: float) -> int:
    """``floor(c f)``: how many clients each DnC iteration removes."""
    return int(np.floor(filter_fraction * num_byzantine + 1e-9))


def sample_columns(rng: np.random.Generator, num_cols: int, count: int) -> np.ndarray:
    """``count`` distinct column indices, sorted (all of them when ``count >= num_cols``)."""
    if count >= num_cols:
        return np.arange(num_cols)
    return np.sort(rng.choice(num_cols, size=count, replace=False))


def projection_scores(block: np.ndarray) -> np.ndarray:
    """Squared projection of each centred row of ``block`` ``[K, b]`` on the top right singular vector."""
    centred = block - block.mean(axis=0)
    if not np.any(centred):
        return np.zeros(len(block))
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return (centred @ vt[0]) ** 2


def dnc(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout | None = None,
    *,
    num_byzantine: int,
    iterations: int = DEFAULT_ITERATIONS,
    subsample: int = DEFAULT_SUBSAMPLE,
    filter_fraction: float = DEFAULT_FILTER_FRACTION,
    rng: np.random.Generator | None = None,
) -> Aggregation:
    """DnC's filter, then :func:`fedavg` of the clients in every iteration's good set.

    ValueError when ``K - floor(c f) < 1`` (nobody would be left). ``kept`` = the
    intersection; ``info``: ``removed_per_iteration``, ``scores`` (last iteration).
    """
    u, w = check_updates(updates, weights)
    k, p = u.shape
    removed = num_removed(num_byzantine, filter_fraction)
    budget = dnc_budget(filter_fraction)
    if not budget.fits(k, num_byzantine):
        raise ValueError(budget.refusal(k, num_byzantine))
    rng = np.random.default_rng(0) if rng is None else rng
    good = np.ones(k, dtype=bool)
    scores = np.zeros(k)
    for _ in range(iterations):
        cols = sample_columns(rng, p, subsample)
        scores = projection_scores(u[:, cols].astype(np.float64))
        keep = np.zeros(k, dtype=bool)
        keep[np.argsort(scores, kind="stable")[:k - removed]] = True
        good &= keep
    agg = fedavg(u, w, layout, kept=good)
    agg.info.update({"removed_per_iteration": removed, "scores": scores.tolist()})
    return agg
