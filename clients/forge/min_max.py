"""Min-Max and Min-Sum (Shejwalkar & Houmansadr, "Manipulating the Byzantine", NDSS 2021): the AGR-agnostic attacks.

Every attacker sends ``mean(benign) + gamma * p`` where ``p`` is a fixed
perturbation direction::

    unit-vector:  p = -mean / ||mean||      (inverse unit vector)
    std:          p = -std                  (inverse coordinate-wise standard deviation)
    sign:         p = -sign(mean)           (inverse sign)

and ``gamma`` is the largest scale for which the forged update is no
further from the benign ones than they are from each other:

    Min-Max:  max_i ||m - b_i||      <= max_{i,j} ||b_i - b_j||
    Min-Sum:  sum_i ||m - b_i||^2    <= max_i sum_j ||b_i - b_j||^2

The paper's Algorithm 1 finds gamma by a halving search: start at
``gamma_init`` (10, as the authors' code), step ``gamma_init / 2``; after a success remember gamma
and step up, after a failure step down; halve the step each time; stop when
the last success is within ``tau`` (1e-5) of the current gamma. Both
conditions hold at gamma = 0 and describe a convex set in gamma, so the
search converges to the largest feasible gamma up to ``tau`` (provided it is
below ``2 * gamma_init``, the furthest the search reaches). ``std`` is the
sample standard deviation (``torch.std``, as the authors' code). The
default perturbation is ``std``; the paper evaluates all three, and
``minmax-perturbation`` picks one.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from clients.forge import as_known, copies
from strategies.rules import robust

PERTURBATIONS = ("unit-vector", "std", "sign")
GAMMA_INIT, TAU = 10.0, 1e-5


def perturbation(known: np.ndarray, kind: str) -> np.ndarray:
    """The paper's perturbation direction ``p`` of the known updates."""
    u = as_known(known)
    mean = u.mean(axis=0)
    if kind == "unit-vector":
        norm = float(np.linalg.norm(mean))
        return -mean / norm if norm > 0 else np.zeros_like(mean)
    if kind == "std":
        return -u.std(axis=0, ddof=1)
    if kind == "sign":
        return -np.sign(mean)
    raise ValueError(f"perturbation must be one of {', '.join(PERTURBATIONS)}, got {kind!r}")


def search_gamma(ok: Callable[[float], bool], gamma_init: float = GAMMA_INIT, tau: float = TAU) -> float:
    """Algorithm 1's halving search: the last gamma for which ``ok`` held (0 if none)."""
    gamma, step, success = gamma_init, gamma_init / 2, 0.0
    while abs(success - gamma) > tau:
        if ok(gamma):
            success = gamma
            gamma += step
        else:
            gamma -= step
        step /= 2
    return success


def _sq_dists(points: np.ndarray, to: np.ndarray) -> np.ndarray:
    return np.sum((points - to) ** 2, axis=1)


def min_max_ok(known: np.ndarray) -> Callable[[np.ndarray], bool]:
    """Min-Max's test of a candidate: its largest distance to a benign update within the benign diameter."""
    u = as_known(known)
    bound = float(robust.pairwise_sq_distances(u).max())
    return lambda m: float(_sq_dists(u, m).max()) <= bound


def min_sum_ok(known: np.ndarray) -> Callable[[np.ndarray], bool]:
    """Min-Sum's test: its sum of squared distances within the largest such sum of a benign update."""
    u = as_known(known)
    bound = float(robust.pairwise_sq_distances(u).sum(axis=1).max())
    return lambda m: float(_sq_dists(u, m).sum()) <= bound


def _forge(test: Callable[[np.ndarray], Callable[[np.ndarray], bool]], known: np.ndarray, num_malicious: int,
           perturbation_kind: str, gamma_init: float, tau: float, report: dict | None) -> np.ndarray:
    u = as_known(known, need=2)
    mean, p = u.mean(axis=0), perturbation(u, perturbation_kind)
    ok = test(u)
    gamma = search_gamma(lambda g: ok(mean + g * p), gamma_init, tau)
    if report is not None:
        report["gamma"] = float(gamma)
    return copies(mean + gamma * p, num_malicious)


def forge(known: np.ndarray, num_malicious: int, rng: np.random.Generator, *, perturbation_kind: str = "std",
          gamma_init: float = GAMMA_INIT, tau: float = TAU, report: dict | None = None) -> np.ndarray:
    """Min-Max: ``mean + gamma * p`` with the largest gamma inside the benign diameter."""
    return _forge(min_max_ok, known, num_malicious, perturbation_kind, gamma_init, tau, report)


def forge_min_sum(known: np.ndarray, num_malicious: int, rng: np.random.Generator, *, perturbation_kind: str = "std",
                  gamma_init: float = GAMMA_INIT, tau: float = TAU, report: dict | None = None) -> np.ndarray:
    """Min-Sum: ``mean + gamma * p`` with the largest gamma inside the largest benign sum of squares."""
    return _forge(min_sum_ok, known, num_malicious, perturbation_kind, gamma_init, tau, report)
