"""FLDetector (Zhang, Cao, Jia, Gong, KDD 2022): flag clients whose updates are inconsistent across rounds.

The paper's algorithm, per round ``t`` with global model ``w_t``, each client's
update ``g_i^t`` and the global update ``g_t`` (the base rule's aggregate):

1. Hessian-vector product by L-BFGS from the last ``N`` pairs
   ``s_j = w_{j+1} - w_j``, ``y_j = g_{j+1} - g_j`` (compact form, Byrd, Nocedal
   and Schnabel 1994: ``B = sigma I - [sigma S, Y] M^-1 [sigma S^T; Y^T]`` with
   ``M = [[sigma S^T S, L], [L^T, -D]]``, ``sigma = y^T s / s^T s`` of the last pair,
   ``L`` the strictly lower part of ``S^T Y`` and ``D`` its diagonal), applied to
   ``v = w_t - w_{t-1}``.
2. Predicted update ``g_hat_i = g_i^{t-1} + B v`` (Cauchy's mean value theorem,
   one Hessian for every client); distance ``d_i = ||g_hat_i - g_i^t||``.
3. Suspicious score ``s_i``: the mean over the last ``N`` rounds of the normalised
   distances ``d_i / sum_j d_j``.
4. Gap statistic (Tibshirani, Walther, Hastie 2001) on the scores: one cluster
   (``Gap(1) >= Gap(2) - s_2``) means no attack; otherwise k-means with ``k = 2``
   and the cluster with the larger mean score is malicious.
5. The detected clients are removed; the paper then restarts training with the
   others under a Byzantine-robust rule.

What this module does where the paper cannot be followed or says nothing:

* Updates here are ``local - global`` (about ``-lr`` times a gradient), not
  gradients. BFGS on negated pairs gives the negated matrix, so ``B`` fitted to
  updates predicts updates with the same distances.
* No restart: the flagged clients are left out from their detection round on
  and the base rule (``rule``: ``median``, the authors' default, or ``mean``)
  aggregates the others. Detection runs once, as the paper's Algorithm 1 returns
  at its first detection; until then the test runs every round once the window
  is full, so honest scores that spread by chance may split on a long run.
* Distances start once one L-BFGS pair exists (round 3); a client is scored once
  it has ``N`` distances; a client whose last update is not from the previous
  round (a dropped reply) gets no distance that round.
* k-means in one dimension with ``k <= 2`` is solved exactly (the best split of
  the sorted scores), where the authors' code runs scikit-learn's KMeans with a
  random start. The scores are min-max scaled to [0, 1] and the 10 reference
  sets drawn uniform on [0, 1] from ``rng``, as the authors do.
* ``gap="tibshirani"`` (default): ``Gap(k) = mean(log W*_k) - log W_k``;
  ``gap="authors"``: the authors' code, ``log(mean(W*_k)) - log W_k``.
* A miss below ``1e-6`` of the update's norm (float32 rounding, as updates
  travel) counts as zero, and scores within ``1e-4`` (relative) of each other are one
  cluster: float32 rounding, not a split, below that.
* A singular L-BFGS system falls back to a least-squares solve; a pair with
  ``s^T s = 0`` (a round that left the model unchanged) is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fl_poison.config import at_least
from fl_poison.updates import Layout
from strategies.rules.aggregation import Aggregation
from strategies.rules.fedavg_math import check_updates, fedavg
from strategies.rules.robust import median

DEFAULT_WINDOW = 10
RULES = ("median", "mean")
GAPS = ("tibshirani", "authors")
REFERENCE_SETS = 10
#: relative size of a prediction miss below which it is float32 rounding, not inconsistency
ROUNDING = 1e-6
#: scores closer than this (relative) are one cluster: float32 updates perturb each miss by about
#: 1e-7 of the update's norm, which is 1e-4 of a miss a thousandth of the update
SCORE_TOLERANCE = 1e-4
#: fewest scored clients the two-cluster test can split
MIN_SCORED = 3


#: The L-BFGS window, declared once: the run key ``fldetector-window`` derives its check and message from it.
WINDOW = at_least(1)


def check_window(window: int) -> int:
    return int(WINDOW.validate(window, "fldetector-window"))


def lbfgs_hvp(s_pairs: np.ndarray, y_pairs: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``B v`` for the compact L-BFGS matrix ``B`` of the pairs (rows of ``[m, P]`` arrays), float64."""
    s, y, v = (np.asarray(a, dtype=np.float64) for a in (s_pairs, y_pairs, v))
    ss_last = float(s[-1] @ s[-1])
    sigma = float(y[-1] @ s[-1]) / ss_last
    sty = s @ y.T  # [m, m]: S^T Y with pairs as columns
    lower = np.tril(sty, -1)
    mat = np.block([[sigma * (s @ s.T), lower], [lower.T, -np.diag(np.diag(sty))]])
    rhs = np.concatenate([sigma * (s @ v), y @ v])
    try:
        coef = np.linalg.solve(mat, rhs)
    except np.linalg.LinAlgError:
        coef = np.linalg.lstsq(mat, rhs, rcond=None)[0]
    m = len(s)
    return sigma * v - (sigma * coef[:m] @ s + coef[m:] @ y)


def within_ss(x: np.ndarray) -> tuple[float, float, int]:
    """One-dimensional k-means, exactly: ``W_1``, ``W_2`` and the split (``sorted[:cut]`` | ``sorted[cut:]``)."""
    xs = np.sort(np.asarray(x, dtype=np.float64))
    n = len(xs)
    w1 = float(((xs - xs.mean()) ** 2).sum())
    c1, c2 = np.cumsum(xs), np.cumsum(xs ** 2)
    cuts = np.arange(1, n)
    left = c2[cuts - 1] - c1[cuts - 1] ** 2 / cuts
    rc, rc2 = c1[-1] - c1[cuts - 1], c2[-1] - c2[cuts - 1]
    right = rc2 - rc ** 2 / (n - cuts)
    total = np.maximum(left + right, 0.0)
    best = int(np.argmin(total))
    return w1, float(total[best]), int(cuts[best])


def gap_says_two(scores: np.ndarray, rng: np.random.Generator, gap: str = "tibshirani") -> tuple[bool, dict]:
    """Whether the gap statistic picks more than one cluster (``Gap(1) < Gap(2) - s_2``), and its numbers."""
    x = np.asarray(scores, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi - lo <= SCORE_TOLERANCE * abs(hi):  # equal but for rounding: min-max scaling would blow it up
        return False, {"note": "every score is equal: one cluster"}
    x = (x - lo) / (hi - lo)
    w1, w2, _ = within_ss(x)
    if w2 <= 0:
        return True, {"note": "the scores take two values: two clusters"}
    refs = np.array([within_ss(rng.uniform(0.0, 1.0, len(x)))[:2] for _ in range(REFERENCE_SETS)])
    log_refs = np.log(np.maximum(refs, 1e-300))
    if gap == "authors":
        expected = np.log(refs.mean(axis=0))
    else:
        expected = log_refs.mean(axis=0)
    gaps = expected - np.log([w1, w2])
    sd2 = float(np.sqrt(1.0 + 1.0 / REFERENCE_SETS) * log_refs[:, 1].std())
    return bool(gaps[0] < gaps[1] - sd2), {"gap": [float(g) for g in gaps], "gap_sd2": sd2}


def larger_cluster(scores: np.ndarray) -> np.ndarray:
    """Mask of the 2-means cluster with the larger mean score (the upper part of the best split)."""
    x = np.asarray(scores, dtype=np.float64)
    _, _, cut = within_ss(x)
    order = np.argsort(x, kind="stable")
    mask = np.zeros(len(x), dtype=bool)
    mask[order[cut:]] = True
    return mask


@dataclass
class History:
    """What FLDetector keeps between rounds (the strategy holds it; :func:`fldetector` returns the next one)."""

    round: int | None = None
    model: np.ndarray | None = None  # w_{t-1}, trainable entries, float64
    aggregate: np.ndarray | None = None  # g_{t-1}
    s_pairs: list[np.ndarray] = field(default_factory=list)
    y_pairs: list[np.ndarray] = field(default_factory=list)
    last: dict[int, np.ndarray] = field(default_factory=dict)  # each client's update of round ``round``
    distances: dict[int, list[float]] = field(default_factory=dict)
    removed: frozenset[int] = frozenset()
    detected_round: int | None = None


def _base(rule: str, u: np.ndarray, w: np.ndarray, layout: Layout | None) -> np.ndarray:
    return median(u, w, layout).update if rule == "median" else fedavg(u, w, layout).update


def _distances(hist: History, u: np.ndarray, clients: list[int], hvp: np.ndarray) -> dict[int, float]:
    """``d_i = ||g_i^{t-1} + B v - g_i^t||`` for the clients whose last update is from the previous round."""
    out: dict[int, float] = {}
    for row, c in zip(u, clients):
        if c in hist.last and c not in hist.removed:
            prev = hist.last[c].astype(np.float64)
            d = float(np.linalg.norm(prev + hvp - row))
            # a miss within float32 rounding of the updates is none (else it decides once the model has converged)
            out[c] = d if d > ROUNDING * max(np.linalg.norm(prev), np.linalg.norm(row)) else 0.0
    return out


def fldetector(
    updates: np.ndarray,
    weights: np.ndarray,
    clients: list[int],
    model: np.ndarray,
    history: History,
    server_round: int,
    layout: Layout | None = None,
    *,
    window: int = DEFAULT_WINDOW,
    rule: str = "median",
    gap: str = "tibshirani",
    rng: np.random.Generator | None = None,
) -> tuple[Aggregation, History]:
    """One round of FLDetector: score, maybe detect, aggregate the clients not removed with ``rule``.

    ``model`` is ``w_t`` (the trainable entries of the global model the updates
    were computed on). ``kept`` = not removed; ``weights`` = the base rule's
    shares (NaN for median). ``info``: ``scores`` (per client, -1 before its
    window is full), ``removed``, ``detected_round``, ``waiting`` while the
    window fills, and the gap statistic's numbers (or a ``note`` why it had none).
    """
    window = check_window(window)
    if rule not in RULES:
        raise ValueError(f"fldetector-rule must be one of {RULES}, got {rule!r}")
    if gap not in GAPS:
        raise ValueError(f"fldetector-gap must be one of {GAPS}, got {gap!r}")
    u, w = check_updates(updates, weights)
    w_t = np.asarray(model, dtype=np.float64)
    rng = np.random.default_rng(0) if rng is None else rng
    consecutive = history.round is not None and history.round == server_round - 1
    info: dict = {}
    distances = {k: list(v) for k, v in history.distances.items()}
    if consecutive and history.s_pairs and history.model is not None:
        hvp = lbfgs_hvp(np.stack(history.s_pairs), np.stack(history.y_pairs), w_t - history.model)
        d = _distances(history, u, clients, hvp)
        total = sum(d.values())
        for c, x in d.items():
            distances[c] = (distances.get(c, []) + [x / total if total > 0 else 1.0 / len(d)])[-window:]
    else:
        info["waiting"] = "no L-BFGS pair yet (or a round was skipped): no distances this round"
    removed, detected = set(history.removed), history.detected_round
    scored = [c for c in clients if c not in removed and len(distances.get(c, [])) >= window]
    scores = {c: float(np.mean(distances[c])) for c in scored}
    if detected is None and len(scored) >= MIN_SCORED:
        attack, about = gap_says_two(np.array([scores[c] for c in scored]), rng, gap)
        info.update(about)
        if attack:
            flagged = larger_cluster(np.array([scores[c] for c in scored]))
            removed |= {c for c, f in zip(scored, flagged) if f}
            detected = server_round
    elif detected is None:
        info.setdefault("waiting", f"{len(scored)} client(s) with a full window of {window}: too few to judge")
    kept = np.array([c not in removed for c in clients], dtype=bool)
    if not kept.any():
        kept[:] = True
        info["fallback"] = "every client of the round was removed earlier: all kept this round"
    idx = np.flatnonzero(kept)
    agg = _base(rule, u[idx], w[idx], layout)
    shares = np.full(len(u), np.nan) if rule == "median" else np.where(kept, w / w[idx].sum(), 0.0)
    info.update({"scores": [scores.get(c, -1.0) for c in clients], "removed": sorted(int(c) for c in removed),
                 "detected_round": detected})
    s_pairs, y_pairs = list(history.s_pairs), list(history.y_pairs)
    if consecutive and history.model is not None and history.aggregate is not None:
        s = w_t - history.model
        if float(s @ s) > 0:
            s_pairs, y_pairs = (s_pairs + [s])[-window:], (y_pairs + [agg - history.aggregate])[-window:]
    nxt = History(round=server_round, model=w_t.copy(), aggregate=agg.copy(), s_pairs=s_pairs, y_pairs=y_pairs,
                  last={c: row.astype(np.float32) for c, row in zip(clients, u)}, distances=distances,
                  removed=frozenset(removed), detected_round=detected)
    return Aggregation(agg, kept, shares, info), nxt
