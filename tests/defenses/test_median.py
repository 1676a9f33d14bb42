"""The coordinate-wise median (strategies/rules/robust.py)."""

from __future__ import annotations

from robust_cases import outlier_rows

import numpy as np
import pytest
from strategies.rules.robust import median


@pytest.mark.parametrize("k", [1, 2, 5, 6])
def test_median_is_np_median_and_ignores_weights(k):
    rng = np.random.default_rng(k)
    u = outlier_rows(rng, k, 33, outliers=min(1, k - 1))
    agg = median(u, rng.integers(1, 100, size=k))
    np.testing.assert_array_equal(agg.update, np.median(u, axis=0))
    assert agg.kept.all() and np.isnan(agg.weights).all()
