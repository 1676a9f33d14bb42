"""FoolsGold (Fung, Yoon, Beschastnikh, "The Limitations of Federated Learning in Sybil Settings").

Sybils pushing the same poisoned objective keep sending similar updates, so
FoolsGold down-weights clients whose *accumulated* update history is too
similar to another client's. The defense is stateful (the history); this
module is the pure, stateless part: the Strategy adapter keeps each client's
running sum of :func:`foolsgold_features`.

Whose histories are compared. The original FoolsGold code
(``ML/code/ML_*.py``: ``summed_deltas`` of every client, all clients every
iteration) and the LFighter authors' baseline (``FoolsGold.score_gradients``:
``memory[num_peers, F]``, the selected peers' rows updated, ``foolsgold(memory)``
over ALL rows, then ``wv[selected]``) compute the similarity over the whole
history and then weight the sampled clients. That is our default,
``scope="all-seen"``: every client seen at least once (a client never sampled
has no history; the LFighter code keeps a zero row for it, which has cosine 0
with everyone and only matters through step 5's rescaling -- not reproduced).
``scope="round"`` (a switch, not the paper) compares only the
clients sampled this round; under partial participation a sybil whose twins
are not sampled this round then looks unique. Memory: the history is
``[clients seen, F]`` (``F`` = the output layer's size by default).

Weights (:func:`foolsgold_weights`), as in the authors' ``foolsgold(grads)``,
for history rows ``h_1..h_K``:

1. ``cs_ij = cos(h_i, h_j)`` for ``i ≠ j`` and ``cs_ii = 0`` (the authors'
   ``cosine_similarity - I``);
2. ``v_i = max_j cs_ij`` (the zero diagonal takes part, so ``v_i ≥ 0``);
3. pardoning: for ``i ≠ j`` with ``v_i < v_j``: ``cs_ij ← cs_ij · v_i / v_j``
   (``v_j > v_i ≥ 0``, so never a division by zero);
4. ``α_i = clip(1 − max_j cs_ij, 0, 1)``;
5. ``α ← α / max α`` (if ``max α = 0`` every weight is 0 and we stop);
6. ``α_i = 0.99`` where ``α_i = 1``;
7. ``α_i ← clip(ln(α_i / (1 − α_i)) + 0.5, 0, 1)``, with ``α_i = 0 → 0``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from fl_poison.updates import Layout
from strategies.rules.aggregation import Aggregation
from strategies.rules.fedavg_math import combine_rows
from strategies.rules.similarity import cosine_matrix

Features = Literal["output-layer", "all"]
#: Whose histories FoolsGold compares: every client seen so far (paper/code) or this round's only.
SCOPES = ("all-seen", "round")


def foolsgold_features(
    updates: np.ndarray, layout: Layout, features: Features = "output-layer"
) -> np.ndarray:
    """The per-round vector of each client that FoolsGold accumulates (``[K, F]``).

    ``"output-layer"``: the output layer's weights followed by its bias
    (``layout.output_layer``) -- the deep-learning variant of FoolsGold, which
    the paper and both reference implementations apply to the last layer
    (LFighter's baseline takes the last Linear *weight* only; we keep its bias
    too, it is part of the same neurons). ``"all"``: the whole update.
    """
    if features == "output-layer":
        return np.asarray(layout.output_layer(np.atleast_2d(updates)), dtype=np.float64)
    if features == "all":
        return np.atleast_2d(updates).astype(np.float64)
    raise ValueError(f"features must be 'output-layer' or 'all', got {features!r}")


def pardoned_similarity(history: np.ndarray) -> np.ndarray:
    """Steps 1-3 of the module docstring: ``cs`` with the zero diagonal, pardoned."""
    cs = cosine_matrix(history)
    np.fill_diagonal(cs, 0.0)
    v = cs.max(axis=1)
    pardon = v[:, None] < v[None, :]  # never true on the diagonal
    ratio = np.divide(v[:, None], v[None, :], out=np.ones_like(cs), where=pardon)
    return np.where(pardon, cs * ratio, cs)


def foolsgold_weights(history: np.ndarray) -> np.ndarray:
    """FoolsGold's per-client weight in ``[0, 1]`` from the accumulated history ``[K, F]``.

    Follows steps 1-7 of the module docstring exactly. A zero history row has
    cosine 0 with everyone (scikit-learn's convention, which the authors use);
    cosines within ``1e-12`` of ±1 are snapped to ±1 (see
    :mod:`strategies.rules.similarity`), so exact copies get ``α = 0`` rather than a
    rounding residue that step 5 would rescale to 1.
    """
    history = np.atleast_2d(np.asarray(history, dtype=np.float64))
    k = history.shape[0]
    if k == 0:
        return np.zeros(0)
    cs = pardoned_similarity(history)
    wv = np.clip(1.0 - cs.max(axis=1), 0.0, 1.0)
    top = wv.max()
    if top <= 0:
        return np.zeros(k)
    wv = wv / top
    wv[wv == 1.0] = 0.99
    out = np.zeros(k)
    pos = wv > 0
    out[pos] = np.log(wv[pos] / (1.0 - wv[pos])) + 0.5
    return np.clip(out, 0.0, 1.0)


def foolsgold(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout,
    *,
    history: np.ndarray | None = None,
    sampled: np.ndarray | None = None,
    features: Features = "output-layer",
) -> Aggregation:
    """Aggregate with FoolsGold weights: ``u = Σ_k α_k u_k / Σ_k α_k``.

    ``history`` holds accumulated :func:`foolsgold_features`, *including* this
    round: either ``[K, F]`` (these clients only, ``sampled=None``) or
    ``[N, F]`` for every client seen so far, with ``sampled`` (``[K]`` row
    indices into it, in the order of ``updates``): the weights are then
    computed over all ``N`` rows and those of the sampled rows used (the
    FoolsGold / LFighter-code rule, see the module docstring). ``None`` means
    "no memory": this round's features alone.

    Aggregation choice. The original FoolsGold code applies the weights as an
    unnormalised sum, ``Σ_k α_k Δ_k`` (a per-client learning-rate scale); the
    LFighter authors' FoolsGold baseline takes the ``α``-weighted *average* of
    the local models, ``Σ α_k W_k / Σ α_k``, which equals
    ``global + Σ α_k u_k / Σ α_k``. We do the latter, so an all-honest round
    (all ``α = 1``) is the plain mean. Example counts (``weights``) do NOT
    enter, in either reference; they are accepted for the common signature
    only. If every ``α`` is 0 (e.g. all histories identical: all sybils) the
    update is zero and nobody is kept (``info["fallback"]``).

    ``kept = α > 0``; ``weights = α / Σ α``; ``info["wv"]`` the raw ``α``.
    """
    updates = np.atleast_2d(np.asarray(updates))  # float32 stays float32: the mean is summed row by row
    k = updates.shape[0]
    if history is None:
        history = foolsgold_features(updates, layout, features)
    history = np.atleast_2d(np.asarray(history, dtype=np.float64))
    if sampled is None:
        if history.shape[0] != k:
            raise ValueError(f"history has {history.shape[0]} rows for {k} updates")
        wv = foolsgold_weights(history)
    else:
        sampled = np.asarray(sampled, dtype=int)
        if sampled.shape != (k,) or sampled.min(initial=0) < 0 or sampled.max(initial=0) >= history.shape[0]:
            raise ValueError(f"sampled must hold {k} row indices into a history of {history.shape[0]} rows")
        wv = foolsgold_weights(history)[sampled]
    info: dict = {"wv": [float(a) for a in wv], "features": features, "history_rows": int(history.shape[0])}
    total = wv.sum()
    if total <= 0:
        info["fallback"] = "all FoolsGold weights are 0: zero update"
        return Aggregation(np.zeros(updates.shape[1]), np.zeros(k, dtype=bool), np.zeros(k), info)
    share = wv / total
    return Aggregation(combine_rows(updates, share), wv > 0, share, info)
