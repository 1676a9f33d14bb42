"""Forged malicious updates: one pure function per model-poisoning attack, over stacked flat updates.

Every module here exposes ``forge(known, num_malicious, rng, **params)``:
``known`` is ``[n, P]``, the updates (local - global, float parameters
flattened in ``state_dict`` order) the attackers know this round; the result
is ``[num_malicious, P]``, one forged update per attacker. Which updates are
known (every honest update of the round, or only the attackers' own honest
ones) is decided by the caller (:mod:`clients.colluding`), so the math is
tested on small hand-made arrays without Flower or a model.

A forge may fill ``report`` (a dict) with the scalars it chose (``alie-z``,
``gamma``, ``fang-lambda``): they become reply metrics of the forged replies.
"""

from __future__ import annotations

import numpy as np


def as_known(known: np.ndarray, need: int = 1) -> np.ndarray:
    """``known`` as a float64 ``[n, P]`` matrix with at least ``need`` rows (ValueError otherwise)."""
    u = np.atleast_2d(np.asarray(known, dtype=np.float64))
    if u.ndim != 2 or u.shape[0] < need:
        raise ValueError(f"need at least {need} known update(s) of shape [n, P], got shape {np.shape(known)}")
    return u


def copies(row: np.ndarray, num_malicious: int) -> np.ndarray:
    """``num_malicious`` identical rows: colluders that all send the same forged update."""
    return np.repeat(np.asarray(row, dtype=np.float64)[None, :], num_malicious, axis=0)
