"""The geometric median (strategies/rules/geometric_median.py): by hand, brute force, invariances, equal updates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from strategies.rules.geometric_median import geometric_median


def _rows(seed: int, k: int, p: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(k, p))


def test_geometric_median_of_a_square_and_one_far_point_is_the_square_centre():
    # (0,0), (1,0), (0,1), (10,10): on the diagonal (t,t) the objective is
    # sqrt2 t + 2 sqrt((1-t)^2 + t^2) + sqrt2 (10 - t), whose derivative 2 (2t-1) / sqrt(.) vanishes at t = 1/2:
    # the median is (0.5, 0.5) however far the fourth point; the mean is (2.75, 2.75)
    u = np.array([[0, 0], [1, 0], [0, 1], [10, 10]], dtype=float)
    agg = geometric_median(u, np.ones(4), ftol=0.0, iterations=500)
    np.testing.assert_allclose(agg.update, [0.5, 0.5], atol=1e-6)
    assert agg.kept.all() and agg.weights.sum() == pytest.approx(1.0)
    assert agg.weights[3] < 0.05  # the far point's share
    np.testing.assert_allclose(agg.weights @ u, agg.update)  # the aggregate is exactly its shares' mean


def test_geometric_median_matches_a_brute_force_minimiser_with_example_weights():
    rng = np.random.default_rng(3)
    u = rng.normal(size=(7, 2))
    u[0] += 20.0
    w = rng.integers(1, 10, size=7).astype(float)
    a = w / w.sum()
    best = minimize(lambda v: float(a @ np.linalg.norm(u - v, axis=1)), u.mean(axis=0), method="Nelder-Mead",
                    options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 10000})
    agg = geometric_median(u, w, ftol=0.0, iterations=2000)
    np.testing.assert_allclose(agg.update, best.x, atol=1e-5)


def test_geometric_median_is_permutation_invariant_translation_equivariant_and_in_the_hull():
    u = _rows(5, 9, 4)
    w = np.arange(1, 10, dtype=float)
    perm = np.random.default_rng(1).permutation(9)
    a, b = geometric_median(u, w), geometric_median(u[perm], w[perm])
    np.testing.assert_allclose(a.update, b.update, atol=1e-9)
    shift = np.array([3.0, -2.0, 7.0, 0.5])
    np.testing.assert_allclose(geometric_median(u + shift, w).update, a.update + shift, atol=1e-8)
    assert np.all(a.weights >= 0)  # a convex combination of the rows: inside their hull
    np.testing.assert_allclose(a.weights @ u, a.update, atol=1e-12)


def test_geometric_median_of_equal_updates_and_of_one_update_is_that_update():
    row = np.array([1.5, -2.0, 0.25])
    np.testing.assert_allclose(geometric_median(np.tile(row, (5, 1)), np.ones(5)).update, row)
    np.testing.assert_allclose(geometric_median(row[None], np.ones(1)).update, row)
