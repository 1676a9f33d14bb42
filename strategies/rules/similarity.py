"""Shared geometry for the clustering / similarity defenses (FoolsGold, LFighter, PCA filter).

Conventions (used identically by every caller):

* cosine similarity ``cos(a, b) = <a, b> / (‖a‖ ‖b‖)``; a zero vector has no
  direction, so its similarity with anything (itself included) is ``0`` --
  the convention of ``sklearn.metrics.pairwise.cosine_similarity``, which the
  FoolsGold and LFighter reference code use;
* rounding: a cosine within ``COS_ATOL = 1e-12`` of ±1 is set to ±1, so that
  exact copies (sybils) are exactly parallel -- otherwise rounding leaves
  e.g. ``1 − 2e-16``, which FoolsGold's rescaling by the maximum blows up to
  a full weight, and angles of ``1e-8`` instead of 0;
* angle ``θ(a, b) = arccos(clip(cos(a, b), -1, 1))`` in radians, with
  ``θ(a, a) = 0`` on the diagonal (also for a zero vector, which is otherwise
  at ``π/2`` from everything).
"""

from __future__ import annotations

import numpy as np

COS_ATOL = 1e-12


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows of ``x`` (``[K, F]`` -> ``[K, K]``).

    ``S_ij = <x_i, x_j> / (‖x_i‖ ‖x_j‖)``, clipped to ``[-1, 1]`` and snapped
    to ±1 within ``COS_ATOL``; rows of zero norm give ``0`` everywhere
    (diagonal included), as scikit-learn does.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a [K, F] matrix, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    unit = x / safe[:, None]
    cos = np.clip(unit @ unit.T, -1.0, 1.0)
    cos[cos > 1.0 - COS_ATOL] = 1.0
    cos[cos < -1.0 + COS_ATOL] = -1.0
    return cos


def angle_matrix(x: np.ndarray) -> np.ndarray:
    """Pairwise angles (radians) between the rows of ``x``: ``θ_ij = arccos(S_ij)``.

    The diagonal is exactly ``0`` (a vector is at angle 0 from itself, also
    when it is the zero vector); a zero row is at ``π/2`` from every other row.
    """
    theta = np.arccos(cosine_matrix(x))
    np.fill_diagonal(theta, 0.0)
    return theta

