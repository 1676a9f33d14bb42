"""Pre-aggregation rules that mix the updates before a robust rule sees them.

* ``nnm`` -- Nearest Neighbor Mixing (Allouah et al., AISTATS 2023): each row
  is replaced by the plain mean of its ``K - f`` nearest rows in Euclidean
  distance, itself included. Rows stay 1:1 with clients.
* ``bucketing`` -- Karimireddy, He, Jaggi (ICLR 2022, Algorithm 1): a random
  permutation splits the rows into ``ceil(K / s)`` buckets of ``s`` (the last
  may be smaller); each bucket is replaced by the plain mean of its rows.

:func:`mix` returns the mixed rows and which clients each row stands for;
:func:`map_back` turns the rule's per-row result into per-client ``kept`` /
``weights`` so detection metrics stay per client:

* a client is kept iff the row that stands for it is kept (bucketing: its
  bucket; NNM: its own mixed row, although its update also enters its
  neighbours' rows);
* bucketing: a bucket's weight for the rule is the sum of its members' weights
  and its share is split equally among them (the bucket mean is unweighted);
  NNM: client ``i`` gets row ``i``'s share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_poison.config import NNM_BUDGET, core_key
from strategies.rules.aggregation import Aggregation

PRE_AGGREGATIONS = ("none", "nnm", "bucketing")
#: The core key's bounds of a bucket's size: :func:`bucketing` refuses what the run key refuses, in its words.
BUCKET_SIZE = core_key("bucket-size").constraint


@dataclass
class Mixed:
    """Rows a rule aggregates in place of the clients' updates."""

    rows: np.ndarray          # [R, P], the input's dtype
    weights: np.ndarray       # [R] each row's weight for the rule
    row_of: np.ndarray        # [K] the row that stands for each client
    groups: list[list[int]]   # per row, the clients (indices) averaged into it
    split: bool               # True: a row's share is split equally among its members (bucketing)


def _mean_rows(updates: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Plain mean of the rows ``idx`` in float64, one row at a time."""
    acc = np.zeros(updates.shape[1], dtype=np.float64)
    for j in idx:
        acc += updates[j]
    return acc / len(idx)


def check_nnm_budget(k: int, f: int) -> None:
    """ValueError unless NNM's ``f`` suits ``k`` rows: the paper needs ``K > 2 f`` (:data:`NNM_BUDGET`)."""
    if f < 0 or not NNM_BUDGET.fits(k, f):
        raise ValueError(NNM_BUDGET.refusal(k, f))


def nnm(updates: np.ndarray, weights: np.ndarray, num_byzantine: int, distances: np.ndarray) -> Mixed:
    """Nearest Neighbor Mixing with ``f = num_byzantine``, given the ``[K, K]`` squared distances.

    Each row's own distance is taken as the smallest, so a row is always among its
    neighbours even when another row equals it; other ties go to the lower index.
    """
    k = len(updates)
    check_nnm_budget(k, num_byzantine)
    d = np.array(distances, dtype=np.float64)
    np.fill_diagonal(d, -1.0)
    order = np.argsort(d, axis=1, kind="stable")[:, :k - num_byzantine]
    rows = np.empty_like(updates)
    for i in range(k):
        rows[i] = _mean_rows(updates, order[i])
    return Mixed(rows, np.asarray(weights, dtype=np.float64).copy(), np.arange(k),
                 [sorted(int(j) for j in o) for o in order], split=False)


def bucketing(updates: np.ndarray, weights: np.ndarray, bucket_size: int, rng: np.random.Generator) -> Mixed:
    """Random buckets of ``bucket_size`` rows, each replaced by its plain mean (bucket weight: members' sum)."""
    BUCKET_SIZE.validate(bucket_size, "bucket-size")
    k = len(updates)
    perm = rng.permutation(k)
    groups = [np.sort(perm[i:i + bucket_size]) for i in range(0, k, bucket_size)]
    rows = np.empty((len(groups), updates.shape[1]), dtype=updates.dtype)
    row_of = np.empty(k, dtype=int)
    w = np.asarray(weights, dtype=np.float64)
    for r, g in enumerate(groups):
        rows[r] = _mean_rows(updates, g)
        row_of[g] = r
    return Mixed(rows, np.array([w[g].sum() for g in groups]), row_of, [[int(j) for j in g] for g in groups],
                 split=True)


def map_back(agg: Aggregation, mixed: Mixed) -> Aggregation:
    """The rule's result on the mixed rows, with ``kept`` / ``weights`` per client (see the module docstring)."""
    row_w = np.asarray(agg.weights, dtype=np.float64)
    share = row_w / np.array([len(g) for g in mixed.groups], dtype=np.float64) if mixed.split else row_w
    return Aggregation(agg.update, np.asarray(agg.kept, dtype=bool)[mixed.row_of], share[mixed.row_of], agg.info)
