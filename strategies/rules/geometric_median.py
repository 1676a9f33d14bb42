"""Geometric median of client updates by the smoothed Weiszfeld algorithm (RFA, Pillutla et al. 2022).

RFA ("Robust Aggregation for Federated Learning", IEEE TSP 2022) replaces the
weighted mean by an approximate weighted geometric median::

    v* = argmin_v  sum_k a_k ||v - u_k||,        a_k = n_k / sum_j n_j

Algorithm 3 of the paper (smoothed Weiszfeld, smoothing nu > 0) starts at the
weighted mean and repeats::

    b_k = a_k / max(nu, ||v - u_k||)
    v   = sum_k b_k u_k / sum_k b_k

Every iterate is a convex combination of the rows, so the result lies in
their convex hull and the rule is translation equivariant and permutation
invariant. ``nu`` keeps a row that coincides with ``v`` from dividing by zero.

Stopping: the paper fixes the number of iterations R; the authors' package
(``geom_median``: ``eps=1e-6``, ``maxiter=100``) also stops once the
objective improves by less than ``ftol`` of its value. Both are here:
``iterations`` is the cap, ``ftol`` the relative improvement below which it
stops early (``ftol=0`` runs exactly ``iterations`` steps, the paper's R).
"""

from __future__ import annotations

import numpy as np

from fl_poison.config import above, at_least
from fl_poison.updates import Layout
from strategies.rules.aggregation import Aggregation
from strategies.rules.fedavg_math import check_updates, combine_rows, row_norms, shares

#: the authors' smoothing default
DEFAULT_EPS = 1e-6
#: the authors' package's iteration cap
DEFAULT_ITERATIONS = 100
#: relative objective improvement below which the iteration stops (``0``: always run ``iterations``)
DEFAULT_FTOL = 1e-6
#: What eps and the iteration count may be, declared once: the run keys ``geomed-eps`` / ``geomed-iterations``
#: derive their checks and messages from these, and :func:`geometric_median` its ValueErrors.
EPS = above(0)
ITERATIONS = at_least(1)


def weiszfeld_step(updates: np.ndarray, alpha: np.ndarray, v: np.ndarray, eps: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One smoothed Weiszfeld step from ``v``: the new point and its shares ``b / sum b`` over the rows."""
    beta = alpha / np.maximum(eps, row_norms(updates, v))
    beta = beta / beta.sum()
    return combine_rows(updates, beta), beta


def geometric_median(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout | None = None,
    *,
    eps: float = DEFAULT_EPS,
    iterations: int = DEFAULT_ITERATIONS,
    ftol: float = DEFAULT_FTOL,
) -> Aggregation:
    """RFA's aggregate: the smoothed-Weiszfeld geometric median, weighted by ``weights`` (example counts).

    ``weights`` all equal gives the unweighted median (``aggregation-weights=uniform``).
    ``kept`` is all True (the rule down-weights, it removes nobody); ``weights``
    are the final shares ``b_k / sum b`` (the aggregate is exactly ``sum share_k u_k``),
    so far-away clients show up with small shares. ``info``: ``iterations`` run,
    ``objective`` = ``sum_k a_k ||v - u_k||`` at the result.
    """
    EPS.validate(eps, "geomed-eps")
    ITERATIONS.validate(iterations, "geomed-iterations")
    u, w = check_updates(updates, weights)
    k = u.shape[0]
    everyone = np.ones(k, dtype=bool)
    alpha = shares(w, everyone)
    v, share = combine_rows(u, alpha), alpha
    objective = float(alpha @ row_norms(u, v))
    done = 0
    for done in range(1, iterations + 1):
        v, share = weiszfeld_step(u, alpha, v, eps)
        previous, objective = objective, float(alpha @ row_norms(u, v))
        if abs(previous - objective) <= ftol * objective:
            break
    return Aggregation(v, everyone, share, {"iterations": done, "objective": objective, "eps": float(eps)})
