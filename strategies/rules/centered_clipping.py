"""Centered clipping (Karimireddy, He, Jaggi, ICML 2021, "Learning from History for Byzantine Robust Optimization").

Starting from a centre ``v`` (the previous round's aggregate), repeat ``L`` times::

    v <- v + (1/K) sum_k clip_tau(u_k - v),      clip_tau(z) = z * min(1, tau / ||z||)

A Byzantine update moves ``v`` by at most ``tau / K`` per iteration however far
it is. The mean is unweighted (the paper's). The result is
``(1 - mean_k c_k) v + sum_k (c_k / K) u_k`` with ``c_k in (0, 1]``: a convex
combination of the centre and the rows. The rule is permutation invariant and
translation equivariant when the centre moves with the rows.

The paper's centre is the server's previous aggregate (its workers send
momenta; here clients send model updates, so the centre is the previous
round's aggregate update); the authors' code starts it at zero in the first
round, as here. The paper's experiments use one iteration (``L = 1``).

The default ``tau = 10`` clips on MNIST only in the first round and then never:
measured with 20 IID clients (LFighter CNN, 5 rounds, no attack), round 1 clips
19 of 20 updates (the centre is zero, so the distance is the update's norm),
rounds 2-5 clip none: ``||u_k - v||`` was 9.8-14.4 (median 10.8) in round 1,
then at most 9.3, 5.6, 4.6 and 4.3 (medians 8.4, 5.0, 3.7, 3.5), falling with
the updates' norms as training converges (``defense.jsonl``'s ``clipped``). From round 2 on the rule is then exactly the unweighted
mean of the updates (FedAvg up to the example-count weights), with no
robustness at all; the final accuracy was 0.9824 against FedAvg's 0.9820. The
paper clips worker momenta, whose distances to the centre are
far smaller than those of raw updates, so its radius does not carry over. To
make the rule act, choose ``cc-tau`` below the typical honest distance to the
centre (read it from a run without attack), e.g. its median: honest rows are
then only shortened and an outlier moves the centre by at most ``tau / K`` per
iteration. The default is left as it is because stored runs hash only
non-default values.
"""

from __future__ import annotations

import numpy as np

from fl_poison.config import above, at_least
from fl_poison.updates import Layout
from strategies.rules.aggregation import Aggregation
from strategies.rules.fedavg_math import check_updates, combine_rows, row_norms

DEFAULT_TAU = 10.0
DEFAULT_ITERATIONS = 1
#: What tau and the iteration count may be, declared once: the run keys ``cc-tau`` / ``cc-iterations`` derive
#: their checks and messages from these, and :func:`centered_clipping` its ValueErrors.
TAU = above(0)
ITERATIONS = at_least(1)


def clip_factors(norms: np.ndarray, tau: float) -> np.ndarray:
    """``min(1, tau / ||z||)`` per row; a zero-length difference is left as it is (factor 1)."""
    with np.errstate(divide="ignore"):
        return np.where(norms > tau, tau / np.where(norms > 0, norms, 1.0), 1.0)


def centered_clipping(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout | None = None,
    *,
    tau: float = DEFAULT_TAU,
    iterations: int = DEFAULT_ITERATIONS,
    centre: np.ndarray | None = None,
) -> Aggregation:
    """``L = iterations`` steps of centered clipping from ``centre`` (zeros when ``None``).

    ``weights`` (example counts) are checked but not used: the paper's mean is
    unweighted. ``kept`` is False for the clients whose difference to the centre
    was clipped in the last iteration (as NDC marks the clients it clips);
    ``weights`` NaN (part of the aggregate is the centre, so no client share
    exists). ``info``: ``tau``, ``iterations``, ``clipped`` (per client, last iteration).
    """
    TAU.validate(tau, "cc-tau")
    ITERATIONS.validate(iterations, "cc-iterations")
    u, _ = check_updates(updates, weights)
    k, p = u.shape
    v = np.zeros(p, dtype=np.float64) if centre is None else np.asarray(centre, dtype=np.float64).copy()
    if v.shape != (p,):
        raise ValueError(f"centre has shape {v.shape}, expected ({p},)")
    c = np.ones(k)
    for _ in range(iterations):
        c = clip_factors(row_norms(u, v), tau)
        v = (1.0 - c.mean()) * v + combine_rows(u, c / k)
    clipped = c < 1.0
    return Aggregation(v, ~clipped, np.full(k, np.nan),
                       {"tau": float(tau), "iterations": int(iterations), "clipped": [int(x) for x in clipped]})
