"""The value every defense's pure function returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Aggregation:
    """Result of aggregating ``K`` client updates.

    update:  ``[P]`` float64, the aggregated update; the new global model is
             ``global + update``.
    kept:    ``[K]`` bool; ``False`` marks a client the defense flagged (dropped,
             clipped or zero-weighted). Detection precision / recall is computed
             from this mask.
    weights: ``[K]`` float64, each client's share of the aggregate (sums to 1
             over the clients that contribute). For coordinate-wise rules where
             no single share exists (median, trimmed mean) it is ``NaN``.
    info:    extra per-round diagnostics (scores, cluster labels, chosen
             neurons, ...), JSON-serialisable numbers and lists only.
    """

    update: np.ndarray
    kept: np.ndarray
    weights: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
