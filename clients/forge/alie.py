"""ALIE, "A Little Is Enough" (Baruch, Baruch & Goldberg, NeurIPS 2019).

The attackers send, coordinate by coordinate, the benign mean shifted by a
few standard deviations -- small enough to hide inside the benign spread of
every coordinate, large enough to steer the aggregate::

    s     = floor(n / 2 + 1) - m                     (the supporters the attackers need)
    z_max = Phi^{-1}((n - s) / n)                    (Phi: standard normal CDF)
    p_j   = mu_j - z_max * sigma_j                   (the paper's Algorithm 1; every attacker the same p)

with ``n`` the clients of the round, ``m`` the attackers among them, ``mu``
and ``sigma`` the coordinate-wise mean and standard deviation of the known
updates. ``sigma`` is the sample standard deviation (ddof=1, ``torch.std``'s
default, which the PyTorch re-implementations use; the paper does not say);
``ddof=0`` gives the population one. ``z`` fixes z_max (key ``alie-z``). When
``m >= floor(n/2 + 1)`` the formula gives s <= 0 (z = inf); s is then taken
as 1 (the largest finite z the paper's reasoning allows).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from clients.forge import as_known, copies


def z_max(num_clients: int, num_malicious: int) -> float:
    """The paper's z_max for ``n`` clients of which ``m`` are attackers (s clamped to >= 1)."""
    if num_clients < 1:
        raise ValueError("num_clients must be >= 1")
    s = max(math.floor(num_clients / 2 + 1) - num_malicious, 1)
    p = (num_clients - s) / num_clients
    if p <= 0:
        return 0.0
    return float(NormalDist().inv_cdf(p)) if p < 1 else float("inf")


def forge(known: np.ndarray, num_malicious: int, rng: np.random.Generator, *, num_clients: int | None = None,
          z: float | None = None, ddof: int = 1, report: dict | None = None) -> np.ndarray:
    """``mean - z * std`` of ``known`` for every attacker (``num_clients`` defaults to known + malicious)."""
    u = as_known(known, need=2)
    if z is None:
        z = z_max(num_clients if num_clients is not None else u.shape[0] + num_malicious, num_malicious)
    if report is not None:
        report["alie-z"] = float(z)
    return copies(u.mean(axis=0) - z * u.std(axis=0, ddof=ddof), num_malicious)
