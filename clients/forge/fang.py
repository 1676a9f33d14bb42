"""Fang et al., "Local Model Poisoning Attacks to Byzantine-Robust Federated Learning" (USENIX Security 2020).

The attack is tailored to the aggregation rule. ``s_j`` is the direction in
which global parameter ``j`` would move without attack (``+1`` up, ``-1``
down); the attackers push every parameter the other way.

Trimmed mean and median (the paper's attack on trimmed mean, which it also
uses against median).
Full knowledge, with ``w_max,j`` / ``w_min,j`` the largest / smallest known
local value of parameter ``j`` and ``b > 1`` (2 in the paper)::

    s_j = -1:  uniform in [w_max,j, b * w_max,j]  if w_max,j > 0, else [w_max,j / b, w_max,j]
    s_j = +1:  uniform in [w_min,j / b, w_min,j]  if w_min,j > 0, else [b * w_min,j, w_min,j]

each attacker sampling its own values. Partial knowledge (only the attackers'
own before-attack models known) replaces the extremes by the mean ``mu_j``
and standard deviation ``sigma_j`` of those models::

    s_j = -1:  uniform in [mu_j + 3 sigma_j, mu_j + 4 sigma_j]
    s_j = +1:  uniform in [mu_j - 4 sigma_j, mu_j - 3 sigma_j]

The paper writes these rules on local *models* (``space="model"``, the
default: the caller passes the global model as ``offset``); the
re-implementations (Shejwalkar & Houmansadr's code, Blades) apply them to
*updates* (``space="update"``), where the sign test ``w > 0`` means
something else.

Krum: every attacker sends ``w_Re - lambda * s`` (``w_Re`` the
received global model: update 0), lambda found by halving from the upper
bound the paper derives::

    lambda <= 1 / ((m - 2c - 1) sqrt(d)) * min_i sum_{l in Gamma_i} D(w_l, w_i)
              + 1 / sqrt(d) * max_i D(w_i, w_Re)

(``m`` clients, ``c`` attackers, ``d`` parameters, ``Gamma_i`` the
``m - c - 2`` known models closest to ``w_i``, D the Euclidean distance)
until Krum with f = c (lowered to K - 3 when fewer rows are known) over the
forged copies and the known updates selects a forged one, or lambda drops below ``threshold`` (1e-5). The paper lets the
other ``c - 1`` attackers send models close to the first; here all send the
same one (as the authors' and Shejwalkar & Houmansadr's code). Partial
knowledge runs the same search with the attackers' own models as the benign
ones.

``s`` (``direction``): ``"aggregate"`` (the paper: the change the rule itself
would make without attack, i.e. the sign of the median / trimmed mean / Krum
choice of the known updates) or ``"mean"`` (the sign of their mean, as the
re-implementations). A coordinate with ``s_j = 0`` is sent as the known mean.
"""

from __future__ import annotations

import math

import numpy as np

from clients.forge import as_known, copies

#: The attack variant for each defense (``fang-variant=auto``): the paper's for trimmed mean, median and Krum;
#: multi-Krum gets the Krum attack (our choice: it scores updates as Krum does).
DEFENSE_VARIANTS = {"trimmed-mean": "trimmed-mean", "median": "trimmed-mean", "krum": "krum", "multi-krum": "krum"}
VARIANTS = ("trimmed-mean", "krum")
DIRECTIONS = ("aggregate", "mean")
SPACES = ("model", "update")


def krum_budget(rows: int, num_malicious: int) -> int:
    """The f of the attackers' Krum check: the number of attackers, lowered to the most ``rows`` allow (K - 3)."""
    return max(0, min(num_malicious, rows - 3))


def direction(known: np.ndarray, variant: str, how: str = "aggregate", *, trim_beta: float = 0.1,
              median: bool = False, num_malicious: int = 0) -> np.ndarray:
    """``s``: the sign of the known updates' before-attack aggregate (``how="aggregate"``) or of their mean."""
    from strategies.rules import robust

    u = as_known(known)
    if how == "mean":
        return np.sign(u.mean(axis=0))
    if how != "aggregate":
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {how!r}")
    ones = np.ones(u.shape[0])
    if variant == "krum":
        scores = robust.krum_scores(u, krum_budget(u.shape[0], num_malicious))
        return np.sign(u[int(np.argmin(scores))])
    if median:
        return np.sign(np.median(u, axis=0))
    return np.sign(robust.trimmed_mean(u, ones, beta=trim_beta).update)


def trimmed_mean_attack(known: np.ndarray, num_malicious: int, rng: np.random.Generator, s: np.ndarray, *,
                        b: float = 2.0, partial: bool = False, offset: np.ndarray | None = None) -> np.ndarray:
    """The trimmed-mean attack's sampled values (full knowledge: from the extremes; partial: mu +- 3..4 sigma)."""
    u = as_known(known, need=2)
    w = u + (0.0 if offset is None else np.asarray(offset, np.float64))
    if partial:
        mu, sigma = w.mean(axis=0), w.std(axis=0, ddof=1)
        up_lo, up_hi, down_lo, down_hi = mu + 3 * sigma, mu + 4 * sigma, mu - 4 * sigma, mu - 3 * sigma
    else:
        hi, lo = w.max(axis=0), w.min(axis=0)
        up_lo, up_hi = hi, np.where(hi > 0, b * hi, hi / b)  # above the largest known value
        down_lo, down_hi = np.where(lo > 0, lo / b, b * lo), lo  # below the smallest
    draw = rng.uniform(size=(num_malicious, u.shape[1]))
    up = up_lo + draw * (up_hi - up_lo)  # s = -1: push up
    down = down_lo + draw * (down_hi - down_lo)  # s = +1: push down
    forged = np.where(s < 0, up, np.where(s > 0, down, w.mean(axis=0)))
    return forged - (0.0 if offset is None else np.asarray(offset, np.float64))


def lambda_bound(known: np.ndarray, num_clients: int, num_malicious: int) -> float:
    """The paper's upper bound on the Krum attack's lambda, in update space (``w_Re`` = 0)."""
    from strategies.rules import robust

    u = as_known(known)
    n, d = u.shape
    dist = np.sqrt(robust.pairwise_sq_distances(u))
    np.fill_diagonal(dist, np.inf)
    near = min(max(num_clients - num_malicious - 2, 0), n - 1)
    first = 0.0
    if near > 0:
        sums = np.sort(dist, axis=1)[:, :near].sum(axis=1)
        first = float(sums.min()) / (max(num_clients - 2 * num_malicious - 1, 1) * math.sqrt(d))
    return first + float(np.linalg.norm(u, axis=1).max()) / math.sqrt(d)


def krum_attack(known: np.ndarray, num_malicious: int, s: np.ndarray, *, num_clients: int,
                threshold: float = 1e-5, report: dict | None = None) -> np.ndarray:
    """The Krum attack: ``-lambda * s``, lambda halved from the bound until Krum (f = c) picks a forged copy."""
    from strategies.rules import robust

    u = as_known(known)
    lam = lambda_bound(u, num_clients, num_malicious)
    chosen = False
    while lam >= threshold:
        stack = np.vstack([copies(-lam * s, num_malicious), u])
        f = krum_budget(stack.shape[0], num_malicious)
        if int(np.argmin(robust.krum_scores(stack, f))) < num_malicious:
            chosen = True
            break
        lam /= 2
    if report is not None:
        report.update({"fang-lambda": float(lam), "fang-krum-chosen": float(chosen)})
    return copies(-lam * s, num_malicious)


def forge(known: np.ndarray, num_malicious: int, rng: np.random.Generator, *, variant: str,
          num_clients: int | None = None, how: str = "aggregate", partial: bool = False, b: float = 2.0,
          space: str = "model", offset: np.ndarray | None = None, trim_beta: float = 0.1, median: bool = False,
          report: dict | None = None) -> np.ndarray:
    """Fang's attack on ``variant`` (``trimmed-mean`` also serves median, ``krum`` also multi-Krum)."""
    u = as_known(known, need=2)
    s = direction(u, variant, how, trim_beta=trim_beta, median=median, num_malicious=num_malicious)
    if variant == "krum":
        n = num_clients if num_clients is not None else u.shape[0] + num_malicious
        return krum_attack(u, num_malicious, s, num_clients=n, report=report)
    if variant != "trimmed-mean":
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if space not in SPACES:
        raise ValueError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
    return trimmed_mean_attack(u, num_malicious, rng, s, b=b, partial=partial,
                               offset=offset if space == "model" else None)
