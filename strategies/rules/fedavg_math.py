"""Example-count-weighted mean of client updates (FedAvg) and shared input checks.

Every defense that ends with "average the clients it kept" calls :func:`fedavg`
so that the baseline weighting is defined in exactly one place.
"""

from __future__ import annotations

import numpy as np

from fl_poison.updates import Layout
from strategies.rules.aggregation import Aggregation


def check_updates(updates: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert a ``[K, P]`` update matrix and ``[K]`` example counts.

    ``updates`` keeps a float32 or float64 dtype (other dtypes become float64),
    so a float32 ``[K, P]`` stack is never copied whole to float64: rules
    accumulate in float64 per row or per column block (:func:`row_norms`,
    :func:`combine_rows`, ``robust._columnwise``). ``weights`` are float64; a
    1-D ``updates`` of length ``P`` is read as one client. Raises :class:`ValueError` when there is no client, when the
    shapes disagree, or when a weight is negative or not finite.
    """
    u = np.asarray(updates)
    if u.dtype not in (np.float32, np.float64):
        u = u.astype(np.float64)
    if u.ndim == 1:
        u = u[None, :]
    if u.ndim != 2:
        raise ValueError(f"updates must be a [K, P] matrix, got shape {np.shape(updates)}")
    if u.shape[0] == 0:
        raise ValueError("updates has no rows: at least one client update is needed")
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != u.shape[0]:
        raise ValueError(f"weights has {w.shape[0]} entries but updates has {u.shape[0]} rows")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights (example counts) must be finite and >= 0, got {w.tolist()}")
    return u, w


def shares(weights: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Normalised shares ``s_k = [kept_k] n_k / sum_{j kept} n_j``.

    If every kept client reports zero examples the kept clients share equally
    (Flower would divide by zero); if no client is kept all shares are 0.
    """
    w = np.where(kept, np.asarray(weights, dtype=np.float64), 0.0)
    total = w.sum()
    if total > 0:
        return w / total
    n_kept = int(np.count_nonzero(kept))
    if n_kept == 0:
        return np.zeros_like(w)
    return kept.astype(np.float64) / n_kept


def fedavg(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout | None = None,
    *,
    kept: np.ndarray | None = None,
) -> Aggregation:
    """Weighted mean of the kept updates, weighted by example counts (FedAvg).

    Math (float64), for updates ``u_k`` (rows), example counts ``n_k`` and the
    kept set ``S`` (all clients when ``kept`` is ``None``)::

        s_k    = n_k / sum_{j in S} n_j      for k in S,   s_k = 0 otherwise
        update = sum_{k in S} s_k u_k

    This is Flower's ``aggregate_arrayrecords`` (``FedAvg``, and the final step
    of ``Krum`` / ``MultiKrum``) applied to updates: since the shares sum to 1,
    ``sum s_k (g + u_k) = g + sum s_k u_k``.

    Degenerate cases: if ``S`` is empty the update is all zeros (the global
    model is left unchanged) and ``info["empty"]`` is ``True``; if every kept
    client reports 0 examples they share equally.

    Returns ``Aggregation(update, kept, weights=s, info)``; ``layout`` is unused.
    """
    u, w = check_updates(updates, weights)
    k = u.shape[0]
    if kept is None:
        mask = np.ones(k, dtype=bool)
    else:
        mask = np.asarray(kept, dtype=bool).reshape(-1)
        if mask.shape[0] != k:
            raise ValueError(f"kept has {mask.shape[0]} entries but updates has {k} rows")
    s = shares(w, mask)
    # Only rows with a share enter the sum (row by row, float64), so a dropped row holding inf/NaN
    # cannot poison the mean through 0 * inf.
    update = combine_rows(u, np.where(mask, s, 0.0))
    return Aggregation(
        update=update,
        kept=mask.copy(),
        weights=s,
        info={"num_kept": int(mask.sum()), "empty": not bool(mask.any())},
    )


def row_norms(updates: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """``||u_k - centre||`` of every row in float64, one row at a time (no float64 copy of the stack)."""
    c = None if centre is None else np.asarray(centre, dtype=np.float64)
    out = np.empty(len(updates), dtype=np.float64)
    for i, row in enumerate(updates):
        d = row.astype(np.float64)
        if c is not None:
            d -= c
        out[i] = np.sqrt(np.sum(d * d))  # the summation np.linalg.norm(u, axis=1) uses
    return out


def combine_rows(updates: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``sum_k coef_k u_k`` accumulated in float64 row by row; rows with a zero coefficient are skipped.

    Skipping keeps a dropped row holding inf / NaN out of the sum (``0 * inf``),
    and the row loop keeps a float32 stack from being copied to float64 whole.
    """
    out = np.zeros(updates.shape[1], dtype=np.float64)
    for c, row in zip(np.asarray(coef, dtype=np.float64), updates):
        if c != 0.0:
            out += c * row.astype(np.float64)
    return out
