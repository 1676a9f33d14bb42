"""The coordinate-wise median (strategies/rules/robust.py)."""

from __future__ import annotations

import numpy as np
import pytest
from strategies.rules.robust import median


def _rows(rng: np.random.Generator, k: int, p: int, outliers: int = 0) -> np.ndarray:
    u = rng.normal(0.0, 0.1, size=(k, p))
    if outliers:
        u[:outliers] += rng.normal(2.0, 1.0, size=(outliers, p))
    return u


@pytest.mark.parametrize("k", [1, 2, 5, 6])
def test_median_is_np_median_and_ignores_weights(k):
    rng = np.random.default_rng(k)
    u = _rows(rng, k, 33, outliers=min(1, k - 1))
    agg = median(u, rng.integers(1, 100, size=k))
    np.testing.assert_array_equal(agg.update, np.median(u, axis=0))
    assert agg.kept.all() and np.isnan(agg.weights).all()
