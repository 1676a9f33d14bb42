"""Mimic (Karimireddy, He & Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing", ICLR 2022).

All attackers copy one honest client's update, over-representing it so that
the aggregate drifts toward that client's data (harmful under non-IID data;
no outlier to detect). The paper chooses the client to copy as the one that
spreads furthest along the direction of largest benign variance::

    z  = top principal direction of the centred benign updates
    i* = argmax_i |<z, x_i - mean>|

The paper estimates ``z`` over warm-up rounds and then keeps ``i*`` fixed;
here it is chosen afresh from each round's benign updates (the seat sees
replies, not client identities across rounds), and by the absolute
projection (a principal direction has no sign). ``target`` fixes the index
into ``known`` instead.
"""

from __future__ import annotations

import numpy as np

from clients.forge import as_known, copies


def choose(known: np.ndarray) -> int:
    """``i*``: the known update furthest from the mean along the top principal direction (ties: lowest)."""
    u = as_known(known)
    centred = u - u.mean(axis=0)
    if u.shape[0] < 2 or not np.any(centred):
        return 0
    z = np.linalg.svd(centred, full_matrices=False)[2][0]
    return int(np.argmax(np.abs(centred @ z)))


def forge(known: np.ndarray, num_malicious: int, rng: np.random.Generator, *, target: int | None = None,
          report: dict | None = None) -> np.ndarray:
    """Every attacker sends ``known[i*]``."""
    u = as_known(known)
    i = choose(u) if target is None else int(target)
    if report is not None:
        report["mimic-index"] = float(i)
    return copies(u[i], num_malicious)
