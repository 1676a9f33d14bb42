"""PCA filter after Tolpegin et al., "Data Poisoning Attacks Against Federated Learning Systems" (§4, Alg. 1).

Algorithm 1 of the paper only *plots* the 2-D PCA projection of the
standardised update rows connected to the source-class output neuron, for a
human to spot the malicious cluster. This module turns it into a per-round
filter:

1. ``X_k = layout.output_rows(u_k)[c]``: neuron ``c``'s incoming weights and
   bias in client ``k``'s update (the paper's ``θ_Δ,i^src``; the paper's
   ``θ_r,i − θ_r`` is our ``local − global`` row);
2. standardise each column, ``Z = (X − mean) / std`` (``StandardScaler``:
   population std, zero-variance columns left at 0);
3. project onto the first two principal components, ``Y = Z_c V_{:, :2}``
   where ``Z_c = U Σ Vᵀ`` is the SVD of the (re-)centred ``Z`` (each
   component's sign fixed so that its largest-|·| loading is positive);
4. k-means with 2 clusters on ``Y`` (seeded, ``n_init = 10``);
5. drop the smaller cluster; FedAvg (example-weighted) over the rest.

Pooling over rounds. Algorithm 1 collects the source-class rows of
every participating client over a set of rounds ``R`` into one matrix ``U``
and only then standardises and projects it. ``history_rows`` (the rows of
earlier rounds, ``[M, C, H+1]``; the Strategy keeps the last
``pca-history-rounds - 1`` rounds, or all with ``-1``) gives that pooled mode:
steps 2-4 run on the pooled rows, and this round's clients that fall in the
pooled minority cluster are dropped. Default: ``pca-history-rounds = 1``
(this round alone), because the filter must decide about this round's
clients from updates of the *same* global model: pooled rows from earlier
models drift (early rounds' updates are larger and point elsewhere), so
with a long window the first principal component tends to follow the round
rather than the honest/malicious split -- Algorithm 1 is an after-the-fact
visualisation, where that drift is visible to the analyst and harmless.
The authors' own use has no filter, and the LFighter authors'
re-implementation projects each round alone.

Decisions the paper leaves open:

* Equal-size clusters: drop none -- there is no majority to trust.
* All extracted rows identical (or K < 3): no split, everyone kept.
* ``source_class=None``: the paper says to repeat Algorithm 1 for every class;
  dropping a client flagged for *any* class would be far too aggressive
  (k-means always splits, so every class would drop its own minority). We
  instead run steps 1-4 for every class and act on the class whose split is
  the most separated, by the silhouette score of the two clusters in the 2-D
  projection (ties: lowest class index). Under a targeted flip the source
  (or target) neuron is the one whose rows form two clear groups. (The
  LFighter authors' re-implementation picks the class with the largest squared
  distance between the two k-means centres instead, on PCA components covering
  99% of the variance; the silhouette is scale-free, centre distance is not
  comparable between classes of different spread.)
* ``min_silhouette`` (not in the paper, default off): if given, a split whose
  silhouette is below it is ignored (everyone kept) -- without it the filter
  drops the smaller half of honest clients in rounds without attackers.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from fl_poison.updates import Layout
from strategies.rules.aggregation import Aggregation
from strategies.defaults import KMEANS_N_INIT
from strategies.rules.fedavg_math import fedavg

N_INIT = KMEANS_N_INIT


def standardise(rows: np.ndarray) -> np.ndarray:
    """Column-wise ``(x − mean) / std`` with ``StandardScaler`` semantics (``[K, D]``)."""
    return StandardScaler().fit_transform(np.asarray(rows, dtype=np.float64))


def pca_2d(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First two principal-component scores of ``z`` (``[K, D]`` -> ``[K, 2]``) and their variance ratios.

    Scores ``Y = (z − mean) V_{:, :2}`` from the SVD; each component's sign
    makes its largest-|·| loading positive (scikit-learn's convention). With
    fewer than two non-trivial components the missing columns are 0.
    """
    z = np.asarray(z, dtype=np.float64)
    k = z.shape[0]
    zc = z - z.mean(axis=0)
    _, s, vt = np.linalg.svd(zc, full_matrices=False)
    n = min(2, vt.shape[0])
    vt = vt[:n]
    sign = np.sign(vt[np.arange(n), np.argmax(np.abs(vt), axis=1)])
    sign[sign == 0] = 1.0
    vt = vt * sign[:, None]
    proj = np.zeros((k, 2))
    proj[:, :n] = zc @ vt.T
    var = s**2
    ratio = np.zeros(2)
    if var.sum() > 0:
        ratio[:n] = var[:n] / var.sum()
    return proj, ratio


def _split(rows: np.ndarray, seed: int, pooled: np.ndarray | None = None) -> dict | None:
    """Steps 2-4 for one neuron's rows; ``None`` when there is nothing to split.

    With ``pooled`` (earlier rounds' rows of the same neuron) steps 2-4 run on
    ``[pooled; rows]``; ``labels`` / ``projection`` are then this round's and
    ``pooled_sizes`` the cluster sizes over all pooled rows.
    """
    k = rows.shape[0]
    if k < 3 and pooled is None:
        return None
    if pooled is not None and len(pooled):
        rows = np.concatenate([pooled, rows])
    if rows.shape[0] < 3 or np.ptp(rows, axis=0).max(initial=0.0) == 0:
        return None
    proj, ratio = pca_2d(standardise(rows))
    if np.unique(proj, axis=0).shape[0] < 2:
        return None
    labels = KMeans(n_clusters=2, n_init=N_INIT, random_state=seed).fit(proj).labels_
    if np.unique(labels).size < 2:
        return None
    return {
        "projection": proj[-k:],
        "labels": labels[-k:].astype(int),
        "pooled_sizes": np.bincount(labels, minlength=2),
        "variance_ratio": ratio,
        "silhouette": float(silhouette_score(proj, labels)),
    }


def pca_filter(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout,
    *,
    source_class: int | None = None,
    visualise_only: bool = False,
    seed: int = 0,
    min_silhouette: float | None = None,
    history_rows: np.ndarray | None = None,
) -> Aggregation:
    """Tolpegin et al.'s PCA detection used as a filter (see the module docstring).

    ``visualise_only=True`` is the paper's own behaviour: plain FedAvg of
    everyone, the clusters only reported. ``info``: ``source_class`` (the class
    used), ``projection`` (``K × 2`` nested list), ``cluster`` (labels),
    ``silhouette``, ``variance_ratio``, ``flagged`` (indices the filter
    drops, or would drop when visualising only), ``silhouette_per_class``
    (when the class was chosen automatically; ``None`` for classes that did
    not split) and ``fallback`` (why nobody was dropped, when applicable).

    ``history_rows``: earlier rounds' ``layout.output_rows`` stacked
    (``[M, C, H+1]``) for the pooled mode of the module docstring (``None``
    or empty: this round alone); ``info["pooled_rows"] = M``.
    """
    updates = np.atleast_2d(np.asarray(updates))  # float32 stays float32; the output rows (small) go float64
    k = updates.shape[0]
    rows = np.asarray(layout.output_rows(updates), dtype=np.float64)  # [K, C, H(+1)]
    info: dict = {"visualise_only": bool(visualise_only)}
    pooled = None if history_rows is None or len(history_rows) == 0 else np.asarray(history_rows, dtype=np.float64)
    info["pooled_rows"] = 0 if pooled is None else int(pooled.shape[0])

    def pool(c: int) -> np.ndarray | None:
        return None if pooled is None else pooled[:, c, :]

    if source_class is None:
        splits = [_split(rows[:, c, :], seed, pool(c)) for c in range(layout.num_classes)]
        sils = [None if s is None else s["silhouette"] for s in splits]
        info["silhouette_per_class"] = sils
        valid = [c for c, s in enumerate(sils) if s is not None]
        chosen = max(valid, key=lambda c: (sils[c], -c)) if valid else None
        split = splits[chosen] if chosen is not None else None
    else:
        if not 0 <= source_class < layout.num_classes:
            raise ValueError(f"source_class {source_class} outside [0, {layout.num_classes})")
        chosen = int(source_class)
        split = _split(rows[:, chosen, :], seed, pool(chosen))
    info["source_class"] = chosen

    drop = np.zeros(k, dtype=bool)
    if split is None:
        info["fallback"] = "fewer than 3 clients" if k < 3 else "no split (rows identical)"
        info["projection"] = [[0.0, 0.0] for _ in range(k)]
        info["cluster"] = [0] * k
    else:
        labels = split["labels"]
        info["projection"] = split["projection"].tolist()
        info["cluster"] = labels.tolist()
        info["silhouette"] = split["silhouette"]
        info["variance_ratio"] = split["variance_ratio"].tolist()
        sizes = split["pooled_sizes"]  # this round's sizes when nothing is pooled
        if sizes[0] == sizes[1]:
            info["fallback"] = "equal-size clusters"
        elif min_silhouette is not None and split["silhouette"] < min_silhouette:
            info["fallback"] = "silhouette below min_silhouette"
        else:
            drop = labels == int(np.argmin(sizes))
    info["flagged"] = np.flatnonzero(drop).tolist()

    kept = np.ones(k, dtype=bool) if visualise_only else ~drop
    avg = fedavg(updates, weights, layout, kept=kept)
    return Aggregation(avg.update, kept, avg.weights, info)
