"""Byzantine-robust aggregation rules as pure functions on a ``[K, P]`` update matrix.

Each rule has the signature
``fn(updates [K, P], weights [K], layout=None, **params) -> Aggregation``;
a row ``u_k`` is client ``k``'s update (local - global) and ``weights`` are
example counts. The new global model is ``global + Aggregation.update``.

Median, trimmed mean, Krum / Multi-Krum and Bulyan reproduce the installed
Flower 1.41 strategies (``flwr.serverapp.strategy.FedMedian``,
``FedTrimmedAvg``, ``Krum``, ``MultiKrum``, ``Bulyan``). Those strategies work
on the local models ``w_k = g + u_k``; every rule here is translation
equivariant (coordinate-wise order statistics, pairwise distances and means
with shares summing to 1), so ``rule(g + u) = g + rule(u)`` and working on
updates gives the same model up to float rounding. All math is float64; every
rule accepts a float32 ``[K, P]`` matrix and converts one column chunk or one
row at a time, so none holds a float64 copy of it.

Coordinate-wise work is done in column chunks so that the temporary memory
stays near ``max_chunk_bytes`` whatever the model size.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from fl_poison.config import ByzantineBudget, Interval, at_least
from fl_poison.updates import Layout
from strategies.rules.aggregation import Aggregation
from strategies.defaults import TRIM_BETA
from strategies.rules.fedavg_math import check_updates, fedavg

#: Temporary memory budget (bytes) for one chunk of coordinate-wise work.
DEFAULT_CHUNK_BYTES = 64 * 2**20


# --------------------------------------------------------------------------- helpers


#: The f a rule takes (resolved: the run key ``num-byzantine`` adds -1 for "the rule's largest" to this).
NUM_BYZANTINE_F = at_least(0)


def check_num_byzantine(num_byzantine: int) -> int:
    """Return ``num_byzantine`` as an int, or raise if it is not an integer >= 0 (an integral float passes)."""
    try:
        ok = not isinstance(num_byzantine, bool) and int(num_byzantine) == num_byzantine
    except (TypeError, ValueError):
        ok = False
    if not ok or not NUM_BYZANTINE_F(int(num_byzantine)):
        raise ValueError(NUM_BYZANTINE_F.refusal("num-byzantine", num_byzantine))
    return int(num_byzantine)


def _chunk_cols(num_rows: int, num_cols: int, bytes_per_col_per_row: int, budget: int) -> int:
    """How many columns fit in one chunk when each column costs ``rows * bytes`` bytes."""
    per_col = max(1, num_rows * bytes_per_col_per_row)
    return int(max(1, min(num_cols, budget // per_col))) if num_cols else 1


def _columnwise(
    updates: np.ndarray,
    fn: Callable[[np.ndarray], np.ndarray],
    cost_per_entry: int = 32,
    budget: int | None = None,
) -> np.ndarray:
    """Apply ``fn([K, c]) -> [c]`` to column blocks of ``updates`` and concatenate."""
    budget = DEFAULT_CHUNK_BYTES if budget is None else budget
    k, p = updates.shape
    out = np.empty(p, dtype=np.float64)
    step = _chunk_cols(k, p, cost_per_entry, budget)
    for start in range(0, p, step):
        stop = min(p, start + step)
        out[start:stop] = fn(updates[:, start:stop].astype(np.float64))  # float64 math per chunk
    return out


def _check_keep_dtype(updates: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``check_updates``' checks without its float64 copy of ``[K, P]`` (large models stay in memory).

    Coordinate-wise rules convert each column chunk to float64 instead, so a
    float32 matrix is never duplicated.
    """
    u = np.asarray(updates)
    if u.dtype not in (np.float32, np.float64):
        u = u.astype(np.float64)
    if u.ndim == 1:
        u = u[None, :]
    check_updates(u[..., :0] if u.ndim == 2 else u, weights)  # shapes and weights; no data copied
    return u


def _no_shares(k: int) -> np.ndarray:
    return np.full(k, np.nan, dtype=np.float64)


def pairwise_sq_distances(updates: np.ndarray) -> np.ndarray:
    """``D[i, j] = ||u_i - u_j||^2`` for all pairs of rows (``[K, K]``, float64).

    Gram identity ``||u_i||^2 + ||u_j||^2 - 2 u_i.u_j`` (matrix products, no
    Python loop over clients), clipped at 0, symmetrised, zero
    diagonal, on rows shifted by the first row (a large common offset would
    otherwise cancel catastrophically; integer-valued inputs stay exact). Flower's ``compute_distances`` uses the
    same identity on the uncentred local models. Rounding:
    two identical rows may be at ~1e-16 * ||u||^2 instead of exactly 0, so
    score ties between exact copies are decided by rounding noise, as in
    Flower. The Gram matrix is summed over column blocks converted to float64
    one at a time (about ``DEFAULT_CHUNK_BYTES`` each), so a float32 ``[K, P]`` input
    is never copied whole.
    """
    u = np.atleast_2d(np.asarray(updates))
    k, p = u.shape
    gram = np.zeros((k, k), dtype=np.float64)
    step = _chunk_cols(k, p, 16, DEFAULT_CHUNK_BYTES)
    for start in range(0, p, step):
        block = u[:, start:start + step].astype(np.float64)
        block -= block[:1]  # distances are translation invariant; shifting keeps the Gram trick precise
        gram += block @ block.T
    sq = np.diag(gram)
    d = np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
    d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0.0)
    return d


#: Krum's f, declared once for :func:`krum_num_closest` and the plug-ins' config check: K - f - 2 >= 1.
KRUM_BUDGET = ByzantineBudget("Krum", "{K} - num-byzantine - 2 >= 1", lambda k, f: k - f - 2 >= 1, lambda k: k - 3)
#: Bulyan's f (El Mhamdi et al.: K >= 4f + 3), for :func:`bulyan`, the plug-in's check and its f for -1.
BULYAN_BUDGET = ByzantineBudget("Bulyan", "{K} >= 4 * num-byzantine + 3", lambda k, f: k >= 4 * f + 3,
                                lambda k: (k - 3) // 4)


def krum_num_closest(num_clients: int, num_byzantine: int) -> int:
    """Number of neighbours ``n = K - f - 2`` that a Krum score sums over.

    Raises :class:`ValueError` (naming ``num-byzantine``) when ``f > 0`` and
    ``K - f - 2 < 1``. Flower silently clamps to ``max(1, K - f - 2)``; we keep
    that clamp only for ``f = 0`` (``K <= 2``), where there is no ``f`` to lower,
    so that one or two clients still aggregate.
    """
    f = check_num_byzantine(num_byzantine)
    KRUM_BUDGET.require(num_clients, f)
    return max(1, num_clients - f - 2)


#: Krum distance conventions: the paper's / Flower's, and the LFighter authors' ``Krum``.
KRUM_DISTANCES = ("squared", "lfighter-code")


def krum_scores(updates: np.ndarray, num_byzantine: int, distance: str = "squared") -> np.ndarray:
    """Krum score of every row (Blanchard et al. 2017; Flower ``select_multikrum``).

    ::

        n      = K - f - 2                     (see krum_num_closest)
        s(i)   = sum of the n smallest ||u_i - u_j||^2 over j != i      ("squared")

    ``"squared"`` is the paper's and Flower's score. With fewer than ``n`` other
    rows (``K <= 2``, ``f = 0``) all of them are summed; a lone client scores 0.

    ``"lfighter-code"``: the LFighter authors' ``Krum`` (``torch.cdist`` +
    ``topk(n, largest=False)``): NON-squared distances, and the ``n`` smallest
    are taken over the whole row *including* the client's zero distance to
    itself, i.e. ``s(i) = 0 + sum of the n - 1 smallest ||u_i - u_j||``.
    """
    if distance not in KRUM_DISTANCES:
        raise ValueError(f"distance must be one of {KRUM_DISTANCES}, got {distance!r}")
    u = np.atleast_2d(np.asarray(updates))
    k = u.shape[0]
    d = pairwise_sq_distances(u)
    if distance == "lfighter-code":
        n = min(krum_num_closest(k, num_byzantine), k)
        return np.sort(np.sqrt(d), axis=1)[:, :n].sum(axis=1)
    n = min(krum_num_closest(k, num_byzantine), k - 1)
    if n <= 0:
        return np.zeros(k, dtype=np.float64)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, :n].sum(axis=1)


def _lowest(scores: np.ndarray, m: int) -> np.ndarray:
    """Indices of the ``m`` lowest scores, lowest first; ties keep the lower index."""
    return np.argsort(scores, kind="stable")[:m]


#: How many updates multi-Krum averages (resolved: the run key ``multi-krum-keep`` adds -1 for K - f to this).
NUM_SELECTED = at_least(1)


def _check_num_selected(value: int) -> int:
    """``value`` as an int when it is an integer >= 1 (an integral float passes), else ValueError."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and NUM_SELECTED(int(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(NUM_SELECTED.refusal("num-selected", value))
    return int(value)


# --------------------------------------------------------------------------- median


def median(updates: np.ndarray, weights: np.ndarray, layout: Layout | None = None) -> Aggregation:
    """Coordinate-wise median (Yin et al. 2018), unweighted, as Flower's ``FedMedian``.

    ::

        update[p] = median_k u_k[p]

    ``np.median``: for even ``K`` the mean of the two middle values. Flower's
    ``FedMedian.aggregate_train`` does ``np.median(np.stack(layers), axis=0)``
    per array and ignores example counts; so do we. ``kept`` is all True and
    ``weights`` is NaN (no per-client share exists).
    """
    u = _check_keep_dtype(updates, weights)
    k = u.shape[0]
    update = _columnwise(u, lambda block: np.median(block, axis=0), cost_per_entry=24)
    return Aggregation(update, np.ones(k, dtype=bool), _no_shares(k), {})


# --------------------------------------------------------------------------- trimmed mean


#: ``beta`` of the trimmed mean, declared once: the run key ``trim-beta`` derives its check and message from it,
#: and :func:`check_beta` its ValueError.
TRIM_BETA_RANGE = Interval(float, 0, 0.5)


def check_beta(beta: float) -> float:
    """``beta`` must be a real number in ``[0, 0.5)`` (fraction cut from each end); numeric text is read too."""
    try:
        b = None if isinstance(beta, bool) else float(beta)
    except (TypeError, ValueError):
        b = None
    if b is None or not TRIM_BETA_RANGE(b):
        raise ValueError(TRIM_BETA_RANGE.refusal("beta (fraction trimmed from each end)", beta))
    return b


def trimmed_mean(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout | None = None,
    *,
    beta: float = TRIM_BETA,
) -> Aggregation:
    """Coordinate-wise trimmed mean, exactly as Flower's ``FedTrimmedAvg`` / ``trim_mean``.

    ::

        c         = int(beta * K)                      (truncation, as Flower)
        update[p] = mean of the sorted values u_(c+1)[p] .. u_(K-c)[p]

    i.e. ``c`` values are cut from EACH end and the remaining ``K - 2c`` are
    averaged without example weights. ``beta`` in ``[0, 0.5)`` (ValueError
    otherwise), so at least one value always remains. ``kept`` is all True,
    ``weights`` NaN; ``info["trimmed_per_side"] = c``. The default ``beta`` is
    :data:`strategies.defaults.TRIM_BETA` (0.1), the run key ``trim-beta``'s
    default too.
    """
    b = check_beta(beta)
    u = _check_keep_dtype(updates, weights)
    k = u.shape[0]
    low = int(b * k)
    high = k - low

    def block_mean(block: np.ndarray) -> np.ndarray:
        part = np.partition(block, (low, high - 1), axis=0)
        return part[low:high].mean(axis=0)

    update = _columnwise(u, block_mean, cost_per_entry=24)
    return Aggregation(
        update, np.ones(k, dtype=bool), _no_shares(k), {"beta": b, "trimmed_per_side": low}
    )


# --------------------------------------------------------------------------- repeated median


def siegel_slopes(y: np.ndarray) -> np.ndarray:
    """Siegel's repeated-median slope of each row of ``y`` ``[C, K]`` against ``x = 0..K-1``.

    ::

        slope = median_i  median_{j != i}  (y_i - y_j) / (i - j)

    (``np.median``: even counts average the two middle values, as the authors'
    ``median_opt``). ``K = 1`` has no pair: slope 0.
    """
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    c, k = y.shape
    if k < 2:
        return np.zeros(c, dtype=np.float64)
    x = np.arange(k, dtype=np.float64)
    off = ~np.eye(k, dtype=bool)
    dx = (x[:, None] - x[None, :])[off].reshape(k, k - 1)
    dy = (y[:, :, None] - y[:, None, :])[:, off].reshape(c, k, k - 1)
    return np.median(np.median(dy / dx, axis=2), axis=1)


def _reweight_block(
    y: np.ndarray, lam: float, thresh: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residual-based reweighting (Fu et al.) of one block ``y`` ``[C, K]`` (coordinates x clients).

    Returns ``(confidence [C, K], restricted [C, K], weight [C, K])``; see
    :func:`repeated_median` for the math.
    """
    c, k = y.shape
    order = np.argsort(y, axis=1, kind="stable")
    ys = np.take_along_axis(y, order, axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(k)[None, :].repeat(c, axis=0), axis=1)
    rank = rank.astype(np.float64)

    xc = (k - 1) / 2.0
    slope = siegel_slopes(ys)
    intercept = np.median(ys, axis=1) - slope * xc
    line = intercept[:, None] + slope[:, None] * rank
    resid = y - line

    abs_sorted = np.sort(np.abs(resid), axis=1)
    scale = np.median(abs_sorted[:, 1:], axis=1)
    tau = 1.4826 * (1.0 + 5.0 / (k - 1)) * scale + 1e-7
    e = resid / tau[:, None]

    leverage = 1.0 / k + (rank - xc) ** 2 / (k * (k * k - 1) / 12.0)
    root = np.sqrt(np.maximum(1.0 - leverage, 0.0))
    bound = lam * np.sqrt(2.0 / k)
    abs_e = np.abs(e)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(abs_e == 0, 1.0, np.minimum(1.0, bound * root / abs_e))
    spread = w.std(axis=1, ddof=1)
    confidence = w * spread[:, None]
    restricted = np.where(w >= thresh, y, line)
    return confidence, restricted, w


def repeated_median(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout | None = None,
    *,
    reweight: bool = False,
    reweight_lambda: float = 2.0,
    reweight_threshold: float = 0.1,
    max_chunk_bytes: int | None = None,
) -> Aggregation:
    """Repeated-median aggregation; ``reweight`` (``repeated-median-reweight``) picks the variant.

    Per coordinate ``p``, sort the ``K`` client values ``y_(0) <= .. <= y_(K-1)``
    and fit a line against their ranks ``x = 0..K-1`` with Siegel's repeated
    median::

        b = median_i median_{j != i} (y_(i) - y_(j)) / (i - j)      (slope)
        a = median(y) - b * median(x),  median(x) = (K-1)/2         (intercept)

    ``reweight=False`` (default) -- LFighter's "RMedian" baseline. The LFighter
    code (``Repeated_Median_Shard``, rule ``'rmedian'``) returns the fitted
    value at the centre rank, ``a + b (K-1)/2``. With the intercept defined
    through ``median(x) = (K-1)/2`` this is *identically* ``median(y)``: the
    slope cancels. So on sorted data the repeated-median fit at the centre
    coincides with the coordinate-wise median and we return ``median_k u_k[p]``
    directly (no O(K^2) slope work; a test checks the identity numerically).
    LFighter applies no residual reweighting. ``kept`` all True, ``weights`` NaN.

    ``reweight=True`` -- Fu et al., "Attack-resistant federated learning with
    residual-based reweighting" (``IRLS_aggregation_split_restricted`` in their
    code), built on the same line fit. Per coordinate, with client ``k`` at rank
    ``r_k``::

        line_k = a + b r_k,          res_k = y_k - line_k
        tau    = 1.4826 (1 + 5/(K-1)) * median(|res| without its smallest) + 1e-7
        e_k    = res_k / tau
        h_k    = 1/K + (r_k - (K-1)/2)^2 / (K (K^2-1)/12)     (hat-matrix diagonal)
        w_k    = min(1, lambda sqrt(2/K) sqrt(1 - h_k) / |e_k|)   (w_k = 1 if e_k = 0)
        conf_k = w_k * std_j(w_j)                             (std with ddof=1)
        y'_k   = y_k if w_k >= threshold else line_k          ("restricted" value)

    Over all coordinates ``c_k = sum_p conf_k[p]``; client shares are
    ``s_k = (c_k / max c)^2 / sum_j (c_j / max c)^2`` and the update is
    ``sum_k s_k y'_k`` (the restricted rows). ``w_k = min(1, .)`` is the closed
    form of the authors' ``H/e * clamp(e/H, -K, K)`` with NaN -> 1. If every
    ``c_k`` is 0 (all coordinates fit perfectly, e.g. ``K = 2`` or identical
    rows) the shares are uniform, where the authors' code would divide 0 by 0.
    ``kept`` is all True (the reweighting is soft), ``weights`` = ``s``,
    ``info["restricted_fraction"]`` = share of each client's coordinates
    replaced by the line. (The std's ``ddof`` only scales every ``c_k`` by the
    same factor, which the max-normalisation cancels.) Defaults ``lambda = 2``, ``threshold = 0.1`` are the
    authors'. Differences from their code: float64 instead of float32, every
    coordinate is treated alike (they skip 0-d tensors), non-finite models are
    not filtered out.

    Both variants ignore example counts. ``K = 1`` returns the single update.
    """
    u = _check_keep_dtype(updates, weights)
    k, p = u.shape
    max_chunk_bytes = DEFAULT_CHUNK_BYTES if max_chunk_bytes is None else max_chunk_bytes
    if not reweight:
        update = _columnwise(u, lambda block: np.median(block, axis=0), 24, max_chunk_bytes)
        return Aggregation(update, np.ones(k, dtype=bool), _no_shares(k), {"reweight": False})

    lam = float(reweight_lambda)
    thresh = float(reweight_threshold)
    if not np.isfinite(lam) or lam <= 0:
        raise ValueError(f"repeated-median lambda must be a positive number, got {reweight_lambda!r}")
    if not np.isfinite(thresh):
        raise ValueError(f"repeated-median threshold must be a finite number, got {reweight_threshold!r}")
    if k == 1:
        return Aggregation(
            u[0].astype(np.float64), np.ones(1, dtype=bool), np.ones(1),
            {"reweight": True, "restricted_fraction": [0.0]},
        )

    restricted = np.empty(u.shape, dtype=np.float64)
    conf_sum = np.zeros(k, dtype=np.float64)
    n_restricted = np.zeros(k, dtype=np.float64)
    # siegel_slopes holds ~5 temporaries of K*(K-1) float64 per coordinate.
    step = _chunk_cols(k * k, p, 48, max_chunk_bytes)
    for start in range(0, p, step):
        stop = min(p, start + step)
        conf, rest, w = _reweight_block(u[:, start:stop].T.astype(np.float64), lam, thresh)
        conf_sum += conf.sum(axis=0)
        n_restricted += (w < thresh).sum(axis=0)
        restricted[:, start:stop] = rest.T

    top = conf_sum.max()
    if top > 0 and np.isfinite(top):
        s = (conf_sum / top) ** 2
        s = s / s.sum()
    else:
        s = np.full(k, 1.0 / k)
    update = s @ restricted
    return Aggregation(
        update,
        np.ones(k, dtype=bool),
        s,
        {
            "reweight": True,
            "restricted_fraction": (n_restricted / max(p, 1)).tolist(),
        },
    )


# --------------------------------------------------------------------------- Krum / Multi-Krum


def krum(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout | None = None,
    *,
    num_byzantine: int = 0,
    num_selected: int = 1,
    distance: str = "squared",
) -> Aggregation:
    """(Multi-)Krum as Flower's ``Krum`` / ``MultiKrum`` (``select_multikrum``).

    ::

        s(i)   = krum_scores(u, f)[i]    (sum of squared distances to the
                                          K - f - 2 nearest other rows)
        S      = the m rows with the lowest scores   (one scoring pass, no
                                                      iterative removal)
        update = sum_{k in S} n_k u_k / sum_{k in S} n_k

    The selected rows are averaged **weighted by example counts** -- Flower
    passes the selected replies to ``aggregate_arrayrecords`` with
    ``weighted_by_key="num-examples"``; we call :func:`fedavg` with ``kept=S``.
    ``m = 1`` is Krum. ``m > K`` selects everyone (Flower's slicing does the
    same). Score ties go to the lower client index.

    Errors: ``num-byzantine`` with ``K - f - 2 < 1`` (and ``f > 0``) raises
    ValueError (Flower clamps the neighbour count to 1 instead).

    ``distance``: ``"squared"`` (paper, Flower; default) or ``"lfighter-code"``
    (the LFighter authors' Krum, see :func:`krum_scores`).

    ``kept`` = selection mask, ``weights`` = example shares within ``S``;
    ``info``: ``scores``, ``selected`` (lowest score first), ``num_closest``, ``distance``.
    """
    u, w = check_updates(updates, weights)
    k = u.shape[0]
    m = min(_check_num_selected(num_selected), k)
    scores = krum_scores(u, num_byzantine, distance)
    chosen = _lowest(scores, m)
    mask = np.zeros(k, dtype=bool)
    mask[chosen] = True
    agg = fedavg(u, w, layout, kept=mask)
    agg.info = {
        "scores": scores.tolist(),
        "selected": [int(i) for i in chosen],
        "num_closest": int(min(krum_num_closest(k, num_byzantine), k - 1)),
        "distance": distance,
    }
    return agg


def multi_krum(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout | None = None,
    *,
    num_byzantine: int = 0,
    num_selected: int | None = None,
    distance: str = "squared",
) -> Aggregation:
    """Multi-Krum: :func:`krum` with ``m = num_selected`` rows kept.

    Paper (Blanchard et al. 2017), the default: squared distances to the
    ``K - f - 2`` nearest *other* rows, ``m = K - f`` (``num_selected=None``;
    at least 1). Flower's ``MultiKrum`` default is ``m = 1``.

    The LFighter authors' ``Krum(..., multi=True)`` differs in three ways:
    non-squared distances that count the client's own zero distance
    (``distance="lfighter-code"``), ``m = K - f - 2`` (pass ``num_selected``;
    run key ``multi-krum-keep``), and an unweighted mean of the selected
    models (ours is example-weighted; equal with equal local set sizes). Only
    with all three does a run reproduce theirs.
    """
    u, w = check_updates(updates, weights)
    f = check_num_byzantine(num_byzantine)
    m = max(1, u.shape[0] - f) if num_selected is None else num_selected
    return krum(u, w, layout, num_byzantine=f, num_selected=m, distance=distance)


# --------------------------------------------------------------------------- Bulyan


def _mean_of_closest(values: np.ndarray, count: int) -> np.ndarray:
    """Per column of ``values`` ``[n, c]``: mean of the ``count`` entries closest to the column median."""
    centre = np.median(values, axis=0)
    dist = np.abs(values - centre)
    idx = np.argsort(dist, axis=0, kind="stable")[:count]
    return np.take_along_axis(values, idx, axis=0).mean(axis=0)


#: Bulyan's selection phase: the paper's iterated Krum, or Flower's one-pass shortcut.
BULYAN_SELECTIONS = ("iterated", "flower")


def bulyan_select(updates: np.ndarray, num_byzantine: int, theta: int, selection: str = "iterated",
                  ties: list[int] | None = None) -> np.ndarray:
    """Indices of Bulyan's ``theta`` selected rows, in selection order.

    ``"iterated"`` (El Mhamdi et al. 2018, Alg. 1; default): repeat ``theta``
    times: Krum on the remaining set ``R`` (neighbours ``|R| - f - 2``, at
    least 1 -- the last rounds of the loop have ``|R| = 2f + 1`` rows, where
    the paper's count would be below 1), move the chosen row out of ``R``.
    ``"flower"``: Flower's ``select_multikrum`` shortcut -- the ``theta``
    lowest scores of ONE Krum pass over all ``K`` rows.

    Ties: with one neighbour (the last iterated steps when ``f >= 1``) the two
    rows of the closest pair always tie; the lower index wins, so the iterated
    selection depends on client order there. ``ties`` (if given) receives the
    steps where a tie decided the set; ``bulyan`` reports them as
    ``info["selection_ties"]``.
    """
    if selection not in BULYAN_SELECTIONS:
        raise ValueError(f"selection must be one of {BULYAN_SELECTIONS}, got {selection!r}")
    u = np.atleast_2d(np.asarray(updates))
    k = u.shape[0]
    if selection == "flower":
        return _lowest(krum_scores(u, num_byzantine), theta)
    d = pairwise_sq_distances(u)
    np.fill_diagonal(d, np.inf)
    remaining = list(range(k))
    chosen: list[int] = []
    for _ in range(theta):
        r = np.array(remaining)
        n = min(max(1, len(r) - num_byzantine - 2), len(r) - 1)
        sub = d[np.ix_(r, r)]
        scores = np.sort(sub, axis=1)[:, :n].sum(axis=1) if n > 0 else np.zeros(len(r))
        pick = int(r[_lowest(scores, 1)[0]])
        if ties is not None and theta - len(chosen) < len(r):  # lowest index wins a tie that matters: record it
            low = np.sort(scores)[:2]
            if low[1] - low[0] <= 1e-9 * (1.0 + abs(low[1])):
                ties.append(len(chosen))
        chosen.append(pick)
        remaining.remove(pick)
    return np.array(chosen, dtype=int)


def bulyan(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout | None = None,
    *,
    num_byzantine: int = 0,
    selection: str = "iterated",
) -> Aggregation:
    """Bulyan (El Mhamdi et al. 2018, "The Hidden Vulnerability of Distributed Learning in Byzantium").

    ::

        require   K >= 4f + 3                         (ValueError otherwise)
        theta   = K - 2f
        S       = bulyan_select(u, f, theta, selection)
        beta    = theta - 2f
        update[p] = mean of the beta values u_k[p], k in S, closest to
                    median_{k in S} u_k[p]     (|u_k[p] - median|, unweighted)

    Selection: ``"iterated"`` (default) is the paper's -- Krum applied
    ``theta`` times, each time on the rows not yet chosen; ``"flower"`` is
    Flower 1.41's ``Bulyan`` (default ``selection_rule = select_multikrum``:
    the ``theta`` best scores of one Krum pass), with which this function
    equals Flower's strategy (differential test). The two selections often
    differ (equal in 16 of 200 random trials).

    Flower returns no aggregate when ``K < 4f + 3``; we raise a ValueError
    naming ``num-byzantine``. With ``f = 0`` the rule is the plain coordinate-wise
    mean and we compute it for any ``K`` (so ``K = 1, 2`` work). Example counts
    are not used. Distance ties go to the earlier row in selection order.

    ``kept`` = the theta selected clients; ``weights`` NaN for them (no single
    share exists), 0 for the others; ``info``: ``scores`` (one Krum pass over
    all rows, for reporting), ``selected``, ``selection``, ``theta``, ``beta``.
    """
    u, _ = check_updates(updates, weights)
    k = u.shape[0]
    f = check_num_byzantine(num_byzantine)
    BULYAN_BUDGET.require(k, f)
    theta = k - 2 * f
    beta = theta - 2 * f
    scores = krum_scores(u, f)
    ties: list[int] = []
    chosen = bulyan_select(u, f, theta, selection, ties)
    selected = u[chosen]
    update = _columnwise(selected, lambda block: _mean_of_closest(block, beta), cost_per_entry=48)
    mask = np.zeros(k, dtype=bool)
    mask[chosen] = True
    shares = np.where(mask, np.nan, 0.0)
    return Aggregation(
        update,
        mask,
        shares,
        {
            "scores": scores.tolist(),
            "selected": [int(i) for i in chosen],
            "selection": selection,
            "selection_ties": ties,  # iterated steps decided by a tie (lowest index won)
            "theta": int(theta),
            "beta": int(beta),
        },
    )
