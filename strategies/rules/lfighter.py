"""LFighter (Jebreel et al., "Defending against the Label-flipping Attack in Federated Learning", §5.2).

Sign and scale. The paper works on gradients ``∇W_k = (W − W_k)/η``; our rows
are updates ``u_k = W_k − W = −η ∇W_k``. A common sign flip and a positive
common scale change neither neuron magnitudes' ranking, nor angles between
rows (``θ(−a, −b) = θ(a, b)``), nor k-means / HDBSCAN partitions (all pairwise
distances scale by ``η``), so everything below works on the rows directly.

Per client ``k`` and output neuron ``i`` (``w_ki`` its incoming weights, ``b_ki``
its bias, from ``layout.output_rows``):

* magnitude ``m_ki = ‖w_ki‖ + |b_ki|`` (the authors' code: row weight norm plus
  |bias|) -- :func:`neuron_magnitudes`.

``mode="mild"`` (iid / mild non-iid; Alg. 1 l. 17-19, Procedure 1):

* ``i1, i2`` = the two largest entries of ``Σ_k m_k`` (ties: lower index);
* ``x_k = [w_k,i1, w_k,i2]`` (the two neurons' weight rows; ``include_bias=True``
  appends each neuron's bias: ``[w_k,i1, b_k,i1, w_k,i2, b_k,i2]``);
  k-means(2) on ``x`` with ONE seed for the whole run and ``n_init`` initialisations;
* inverse density of a cluster ``dns = mean_i max_j θ(x_i, x_j)`` over its
  members (``j`` ranges over the cluster, ``θ_ii = 0``) -- :func:`inverse_density`;
  a one-member cluster has ``dns = 0`` (its only angle is ``θ_ii``);
* ``score = |cl| / (|cl_1| + |cl_2|) · dns``; Procedure 1: ``cl_1`` is bad if
  ``score_1 < score_2``, else ``cl_2`` (so a tie drops ``cl_2``, k-means label 1).

``mode="extreme"`` (one class per client; Alg. 1 l. 21, Procedure 2):

* each client's own two largest neurons ``i1_k, i2_k``; ``x_k = [w_k,i1_k,
  w_k,i2_k]`` (biases appended with ``include_bias``); ``HDBSCAN(min_cluster_size=2)`` on ``x``;
* per cluster ``j``, ``μ_j`` = the neuron-wise mean of its members' magnitude
  vectors ``m_k`` (Procedure 2's wording; the prose describes the mean of the
  gradients followed by magnitudes, which differs when members' rows point
  different ways), ``imax_j = argmax μ_j``;
* for every pair of clusters with equal ``imax``, the smaller one is bad;
* noise points (label −1) are bad.

Aggregation: FedAvg (example-weighted) over the kept clients, as Algorithm 1
line 23 says; the authors' code averages the kept models with equal weights.

Paper vs the authors' public code (``src/aggregation.py``, class ``LFD``; mild
filter only): the paper is the default, each difference a switch:

* features: the paper speaks of the neurons' weight gradients and the code
  takes the weight rows ``dw[i][top2]`` only; both are our default.
  ``include_bias=True`` (run key ``lfighter-bias``) adds the biases;
* k-means: the code's ``KMeans(2, random_state=0)`` -- one fixed seed (and
  scikit-learn's then-default 10 initialisations). We use one seed per run
  (the run's ``seed``) and ``n_init`` initialisations (``lfighter-n-init``,
  default 10) so the partition does not hinge on one draw; the same seed in
  every round, as the code;
* cluster score: paper ``|cl|/m · mean_i max_j θ_ij`` (``score="paper"``);
  code ``|cl|/m · (1 − mean_i min_j cs_ij)`` with ``cs = cos − I``
  (``score="code"``, run key ``lfighter-score``): whenever all in-cluster
  cosines are ≥ 0 the minimum is the zeroed diagonal and the score collapses
  to the cluster's size share; a one-member cluster scores ``|cl|/m``;
* tie: both drop ``cl_2`` (the code keeps ``good_cl = 0`` unless
  ``ds_0 < ds_1``), so a tie never keeps both clusters.

Candidate neurons are chosen identically in both (weight-row norm plus
|bias|, summed over clients).
"""

from __future__ import annotations

from typing import Literal

import hdbscan
import numpy as np
from sklearn.cluster import KMeans

from fl_poison.config import at_least
from fl_poison.updates import Layout
from strategies.rules.aggregation import Aggregation
from strategies.defaults import KMEANS_N_INIT
from strategies.rules.fedavg_math import fedavg
from strategies.rules.similarity import angle_matrix, cosine_matrix

#: What the k-means initialisation count may be, declared once: the run key ``lfighter-n-init`` derives its
#: check and message from it, and :func:`lfighter` its ValueError.
N_INIT_RANGE = at_least(1)

N_INIT = KMEANS_N_INIT
Mode = Literal["mild", "extreme"]
Score = Literal["paper", "code"]
SCORES = ("paper", "code")


def neuron_magnitudes(updates: np.ndarray, layout: Layout) -> np.ndarray:
    """``m_ki = ‖w_ki‖ + |b_ki|`` for every client and output neuron (``[K, P]`` -> ``[K, C]``).

    Without an output bias (``layout.output_bias is None``) it is ``‖w_ki‖``.
    """
    rows = np.asarray(layout.output_rows(np.atleast_2d(updates)), dtype=np.float64)
    if layout.output_bias is None:
        return np.linalg.norm(rows, axis=2)
    return np.linalg.norm(rows[:, :, :-1], axis=2) + np.abs(rows[:, :, -1])


def top_two(magnitudes: np.ndarray) -> np.ndarray:
    """Indices of the two largest entries along the last axis, largest first (ties: lower index).

    With a single output neuron only that one is returned.
    """
    order = np.argsort(-np.asarray(magnitudes), axis=-1, kind="stable")
    return order[..., :2]


def inverse_density(vectors: np.ndarray) -> float:
    """``dns = (1/n) Σ_i max_j θ(x_i, x_j)`` over the rows of ``vectors`` (radians; ``θ_ii = 0``).

    One row gives 0. (The authors' code uses ``1 − min cos`` -- with the
    diagonal counted as cos 0 -- instead of the angle; we follow the paper.)
    """
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if vectors.shape[0] == 0:
        return 0.0
    return float(angle_matrix(vectors).max(axis=1).mean())


def code_dissimilarity(vectors: np.ndarray) -> float:
    """The authors' per-cluster statistic before size weighting: ``1 − mean_i min_j (cos − I)_ij``.

    Zero rows have cosine 0 with everything (scikit-learn). One row gives 1.
    """
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if vectors.shape[0] == 0:
        return 0.0
    cs = cosine_matrix(vectors) - np.eye(vectors.shape[0])
    return float(1.0 - cs.min(axis=1).mean())


def _neuron_data(rows: np.ndarray, neurons: np.ndarray) -> np.ndarray:
    """``x_k`` = client ``k``'s rows of ``neurons[k]`` (``[K, 2]`` or ``[2]``) concatenated."""
    k = rows.shape[0]
    idx = np.broadcast_to(neurons, (k, np.shape(neurons)[-1]))
    return rows[np.arange(k)[:, None], idx, :].reshape(k, -1)


def _filter_mild(
    rows: np.ndarray, mags: np.ndarray, seed: int, n_init: int, score: str
) -> tuple[np.ndarray, dict]:
    total = mags.sum(axis=0)
    neurons = top_two(total)
    info: dict = {"neurons": neurons.tolist(), "magnitude_sum": total.tolist()}
    data = _neuron_data(rows, neurons)
    bad = np.zeros(rows.shape[0], dtype=bool)
    if np.ptp(data, axis=0).max(initial=0.0) == 0:
        info["fallback"] = "all extracted gradients identical: no split"
        return bad, info
    labels = KMeans(n_clusters=2, n_init=n_init, random_state=seed).fit(data).labels_
    info["cluster"] = labels.astype(int).tolist()
    sizes = np.bincount(labels, minlength=2)
    if (sizes == 0).any():
        info["fallback"] = "k-means found one cluster"
        return bad, info
    if score == "code":
        dns = np.array([code_dissimilarity(data[labels == j]) for j in range(2)])
    else:
        dns = np.array([inverse_density(data[labels == j]) for j in range(2)])
    scores = sizes / sizes.sum() * dns
    info.update(dns=dns.tolist(), scores=scores.tolist(), score=score)
    # Procedure 1 l. 10-13: cl_1 if score_1 < score_2, else cl_2 (a tie drops cl_2)
    bad_cluster = 0 if scores[0] < scores[1] else 1
    info["bad_cluster"] = bad_cluster
    return labels == bad_cluster, info


def _filter_extreme(
    rows: np.ndarray, mags: np.ndarray, min_samples: int | None
) -> tuple[np.ndarray, dict]:
    k = rows.shape[0]
    neurons = top_two(mags)
    info: dict = {"neurons": neurons.tolist()}
    data = _neuron_data(rows, neurons)
    bad = np.zeros(k, dtype=bool)
    if np.ptp(data, axis=0).max(initial=0.0) == 0:
        info["fallback"] = "all extracted gradients identical: no split"
        return bad, info
    clusterer = hdbscan.HDBSCAN(min_cluster_size=2, min_samples=min_samples)
    labels = clusterer.fit(data).labels_.astype(int)
    info["cluster"] = labels.tolist()
    ids = [int(j) for j in np.unique(labels) if j >= 0]
    if not ids:
        info["fallback"] = "HDBSCAN labelled every client noise: all kept"
        return bad, info
    sizes = {j: int((labels == j).sum()) for j in ids}
    top = {j: int(np.argmax(mags[labels == j].mean(axis=0))) for j in ids}
    bad_clusters = set()
    for a_pos, a in enumerate(ids):
        for b in ids[a_pos + 1:]:
            if top[a] == top[b] and sizes[a] != sizes[b]:
                bad_clusters.add(b if sizes[a] > sizes[b] else a)
    info.update(
        cluster_top_neuron=[top[j] for j in ids],
        cluster_size=[sizes[j] for j in ids],
        bad_clusters=sorted(bad_clusters),
    )
    bad = (labels < 0) | np.isin(labels, sorted(bad_clusters))
    return bad, info


def lfighter(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout,
    *,
    mode: Mode = "mild",
    seed: int = 0,
    min_samples: int | None = None,
    include_bias: bool = False,
    n_init: int = N_INIT,
    score: Score = "paper",
) -> Aggregation:
    """LFighter's filter, then example-weighted FedAvg of the kept clients.

    See the module docstring for the math. Decisions where the paper is
    silent or differs from the authors' code:

    * fewer than 3 clients: nothing to compare, everyone kept
      (``info["fallback"]``);
    * all extracted gradients identical (e.g. all-zero updates): no split,
      everyone kept;
    * mild, tied scores (e.g. two internally identical clusters, both
      ``dns = 0``): ``cl_2`` (k-means label 1) is dropped, as Procedure 1 and
      the authors' code do; which group k-means calls ``cl_2`` is fixed by
      the seed, not by the data;
    * extreme, Procedure 2 keeps one ``bad_cluster`` variable overwritten in
      its loop; we mark, for *every* pair of clusters with the same top neuron,
      the strictly smaller one (equal sizes: neither -- Procedure 2's strict
      ``>``), so with three such clusters the two smaller are dropped;
    * extreme, HDBSCAN labels everybody noise: by the paper everyone is bad,
      which leaves nothing to aggregate; we keep everyone instead
      (``info["fallback"]``).

    ``include_bias`` (default False: weight rows only, paper and code),
    ``n_init`` (k-means initialisations, mild) and ``score`` (``"paper"`` |
    ``"code"``, mild) are the paper-vs-code switches described in the module
    docstring; ``seed`` is the k-means seed -- the Strategy passes the run's
    seed unchanged every round.

    ``min_samples`` (extreme only) is passed to HDBSCAN; ``None`` is the
    paper's setting (only ``min_cluster_size=2``), for which the ``hdbscan``
    package uses ``min_samples = 2`` and a core distance to the 2nd nearest
    *other* point -- so a group of only two similar clients is not dense on
    its own and tends to be absorbed by (or fall out of) its nearest group;
    in practice a cluster needs 3 members. ``min_samples=1`` lets pairs form
    clusters.

    ``info``: ``mode``, ``neurons`` (mild: ``[i1, i2]``; extreme: per client),
    ``cluster`` labels, mild ``dns`` / ``scores`` / ``bad_cluster`` / ``magnitude_sum``,
    extreme ``cluster_top_neuron`` / ``cluster_size`` / ``bad_clusters`` (in
    ascending cluster-id order), and ``fallback`` where applicable.
    """
    if mode not in ("mild", "extreme"):
        raise ValueError(f"mode must be 'mild' or 'extreme', got {mode!r}")
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    if not N_INIT_RANGE(int(n_init)):
        raise ValueError(N_INIT_RANGE.refusal("n_init", n_init))
    updates = np.atleast_2d(np.asarray(updates))  # float32 stays float32; the output rows (small) go float64
    k = updates.shape[0]
    mags = neuron_magnitudes(updates, layout)  # candidate neurons: weights and bias, as both sources
    rows = np.asarray(layout.output_rows(updates), dtype=np.float64)
    if not include_bias and layout.output_bias is not None:
        rows = rows[:, :, :-1]
    if k < 3:
        bad = np.zeros(k, dtype=bool)
        info: dict = {"fallback": "fewer than 3 clients: all kept"}
    elif mode == "mild":
        bad, info = _filter_mild(rows, mags, seed, int(n_init), score)
    else:
        bad, info = _filter_extreme(rows, mags, min_samples)
    info["mode"] = mode
    info["include_bias"] = bool(include_bias)
    kept = ~bad
    avg = fedavg(updates, weights, layout, kept=kept)
    return Aggregation(avg.update, kept, avg.weights, info)
