"""Server-side client selection for one round.

Two rules:

* :func:`sample_clients` — FedAvg's default: ``k`` of ``num_clients`` uniformly
  without replacement (Tolpegin et al. §2.1, N = 50, k = 5). Malicious clients
  are then selected exactly as often as honest ones.
* :func:`sample_with_availability` — Tolpegin et al. §3.4: an adversary that
  keeps its devices online (charged, connected) is selected more often than
  honest devices. Each of the ``k`` slots is malicious with probability
  ``alpha`` (run key ``malicious-availability``), bounded by how many malicious
  clients exist.

Both take the caller's ``np.random.Generator`` so the round sequence is a
function of the run seed; both return sorted ids so the result does not
depend on draw order.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def sample_clients(rng: np.random.Generator, num_clients: int, k: int) -> list[int]:
    """``k`` distinct client ids drawn uniformly from ``0..num_clients-1``, sorted."""
    if num_clients < 0:
        raise ValueError(f"num-clients must be >= 0, got {num_clients}")
    if not 0 <= k <= num_clients:
        raise ValueError(
            f"clients-per-round={k} is not possible with {num_clients} clients; "
            f"allowed: 0..{num_clients}"
        )
    chosen = rng.choice(num_clients, size=k, replace=False)
    return sorted(int(c) for c in chosen)


def sample_with_availability(
    rng: np.random.Generator,
    honest: Sequence[int],
    malicious: Sequence[int],
    k: int,
    alpha: float,
) -> list[int]:
    """Fill ``k`` slots, each malicious with probability ``alpha`` (Tolpegin §3.4).

    For every slot one uniform number ``u`` is drawn; ``u < alpha`` asks for a
    malicious client, otherwise an honest one. The client itself is drawn
    uniformly from the not-yet-chosen members of that pool.

    Pool exhaustion (the paper: "the number of malicious participants in P_r
    is bounded by N × m%"): when the requested pool is empty, the slot goes
    to the other pool. So a malicious request with no malicious client left
    becomes honest, and — the paper is silent on this side, we choose the
    symmetric rule — an honest request with no honest client left becomes
    malicious. Consequently, while both pools are large enough, the number of
    malicious clients per round is Binomial(k, alpha); in general it is
    ``min(Binomial(k, alpha), len(malicious))`` when honest clients never run
    out.

    Exactly one uniform is consumed per slot plus one integer per pick, so
    the random stream advances identically whichever pool wins.
    """
    if math.isnan(alpha) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"malicious-availability must be in [0, 1], got {alpha}")
    honest_pool = [int(c) for c in honest]
    malicious_pool = [int(c) for c in malicious]
    if len(set(honest_pool)) != len(honest_pool) or len(set(malicious_pool)) != len(
        malicious_pool
    ):
        raise ValueError("honest and malicious client ids must not repeat")
    if set(honest_pool) & set(malicious_pool):
        raise ValueError(
            "a client cannot be both honest and malicious: "
            f"{sorted(set(honest_pool) & set(malicious_pool))}"
        )
    total = len(honest_pool) + len(malicious_pool)
    if not 0 <= k <= total:
        raise ValueError(
            f"clients-per-round={k} is not possible with {total} clients; "
            f"allowed: 0..{total}"
        )
    # Sorting makes the draw independent of the order the caller listed ids in.
    honest_pool.sort()
    malicious_pool.sort()
    chosen: list[int] = []
    for _ in range(k):
        want_malicious = bool(rng.random() < alpha)
        if want_malicious:
            pool = malicious_pool if malicious_pool else honest_pool
        else:
            pool = honest_pool if honest_pool else malicious_pool
        chosen.append(pool.pop(int(rng.integers(len(pool)))))
    return sorted(chosen)
