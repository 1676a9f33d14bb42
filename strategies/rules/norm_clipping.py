"""Norm difference clipping (NDC) as a pure aggregation function.

Sun et al. 2019, "Can you really backdoor federated learning?": the server
bounds the L2 norm of every update (local - global) before averaging. The ADA
paper (Sun et al., semi-targeted poisoning, section III-C2) uses the "drop"
form: updates whose norm exceeds the bound are rejected; its reference code
sets the bound to the round's median norm and keeps only updates strictly
below it -- ``ndc(..., bound="median", mode="drop")`` here.
"""

from __future__ import annotations

import numpy as np

from fl_poison.config import NumberOrWord, above
from fl_poison.updates import Layout
from strategies.rules.aggregation import Aggregation
from strategies.defaults import NDC_BOUND, NDC_MODE
from strategies.rules.fedavg_math import check_updates, combine_rows, fedavg, row_norms

MODES = ("clip", "drop")


#: The NDC bound, declared once: the run key ``ndc-bound`` derives its check and message from it, and
#: :func:`check_bound` its ValueError.
BOUND = NumberOrWord(above(0, noun="a finite number"), ("median",))


def check_bound(bound: float | str) -> float | str:
    """The NDC bound as :func:`ndc` and the run key ``ndc-bound`` take it (ValueError otherwise).

    ``"median"`` (the round's median norm), or a positive finite number -- also
    as text, since the run key holds a string.
    """
    return BOUND.parse(bound, "bound")


def _resolve_bound(bound: float | str, norms: np.ndarray) -> float:
    """The numeric bound: the round's median norm for ``"median"``, else ``bound`` (> 0)."""
    checked = check_bound(bound)
    return float(np.median(norms)) if checked == "median" else checked


def ndc(
    updates: np.ndarray,
    weights: np.ndarray,
    layout: Layout | None = None,
    *,
    bound: float | str = NDC_BOUND,
    mode: str = NDC_MODE,
) -> Aggregation:
    """Norm difference clipping of client updates, then FedAvg.

    With ``r_k = ||u_k||_2`` (whole flattened update) and ``M`` = ``bound``
    (a positive number, or ``median_k r_k`` of this round for ``"median"``)::

        clip:  u'_k = u_k * min(1, M / r_k)                 flagged iff r_k > M
               update = sum_k n_k u'_k / sum_k n_k          (all clients contribute)
        drop:  kept iff r_k < M                             flagged iff r_k >= M
               update = sum_{kept} n_k u_k / sum_{kept} n_k

    ``n_k`` are example counts (:func:`fedavg`); the ADA reference code takes
    the unweighted mean, which is the same when clients hold equal data. The
    strict ``r_k < M`` in drop mode follows the ADA code (with ``M`` the
    median, the median client itself is dropped). If nothing is kept (e.g.
    ``K = 1`` with the median bound, or all-zero updates) the update is zero
    -- the global model is left unchanged -- and ``info["empty"]`` is True.

    ``kept`` is False for every flagged client (clipped or dropped); in clip mode
    flagged clients still contribute their clipped update, so ``weights`` holds
    the example shares of all clients. ``info``: ``norms``, ``bound``, ``mode``,
    ``num_flagged``, ``empty``.

    Defaults (one place, :mod:`strategies.defaults`, shared with the run keys
    ``ndc-mode`` / ``ndc-bound``): ``mode="clip"`` -- Sun et al.'s norm
    clipping; ``mode="drop"`` is the ADA paper's reference code. The function
    and the run key take the same constant, so their defaults cannot differ.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    u, w = check_updates(updates, weights)
    norms = row_norms(u)
    m = _resolve_bound(bound, norms)

    if mode == "clip":
        flagged = norms > m
        scale = np.ones_like(norms)
        scale[flagged] = m / norms[flagged]
        agg = fedavg(u, w, layout)
        agg.update = combine_rows(u, agg.weights * scale)  # each clipped row enters once, scaled, in float64
        agg.kept = ~flagged
    else:
        keep = norms < m
        flagged = ~keep
        agg = fedavg(u, w, layout, kept=keep)

    agg.info = {
        "norms": norms.tolist(),
        "bound": m,
        "mode": mode,
        "num_flagged": int(flagged.sum()),
        "empty": bool(agg.info.get("empty", False)),
    }
    return agg
