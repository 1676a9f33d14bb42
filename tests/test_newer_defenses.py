"""Geometric median (RFA), centered clipping, DnC, SignGuard and FLAME: hand-worked rounds and properties."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from fl_poison.config import ConfigError, resolve
from strategies.centered_clipping import centered_clipping
from strategies.defenses.centered_clipping import CenteredClipping
from strategies.geometric_median import geometric_median


def _rows(seed: int, k: int, p: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(k, p))


# --------------------------------------------------------------------------- geometric median (RFA)


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


# --------------------------------------------------------------------------- centered clipping


def test_centered_clipping_one_iteration_by_hand():
    # centre 0, tau = 2: (1,0) and (0,1) (norm 1) pass; (6,8) (norm 10) is clipped to (1.2, 1.6);
    # v = ((1,0) + (0,1) + (1.2,1.6)) / 3 = (2.2/3, 2.6/3)
    u = np.array([[1, 0], [0, 1], [6, 8]], dtype=float)
    agg = centered_clipping(u, np.ones(3), tau=2.0)
    np.testing.assert_allclose(agg.update, [2.2 / 3, 2.6 / 3])
    assert agg.kept.tolist() == [True, True, False] and agg.info["clipped"] == [0, 0, 1]


def test_centered_clipping_two_iterations_by_hand():
    # 1-D, tau = 1, rows 0, 0, 10, centre 0. Step 1: clip(0)=0, 0, clip(10)=1 -> v = 1/3.
    # Step 2: differences -1/3, -1/3 (pass), 29/3 (clipped to 1) -> v = 1/3 + (-1/3 - 1/3 + 1) / 3 = 1/3 + 1/9 = 4/9
    agg = centered_clipping(np.array([[0.0], [0.0], [10.0]]), np.ones(3), tau=1.0, iterations=2)
    np.testing.assert_allclose(agg.update, [4 / 9])


def test_centered_clipping_keeps_its_centre_across_rounds():
    # round 1 from centre 0 (tau = 1, rows 0, 0, 10): v1 = 1/3 (above); round 2 on rows 1, 1, 1 starts at 1/3:
    # every difference is 2/3 < tau, so v2 = 1/3 + 2/3 = 1; a fresh strategy (centre 0) would give the same 1 here,
    # so round 2 uses rows 3, 3, 3: from 1/3 the step is clip(8/3) = 1 -> 4/3; from 0 it would be 1
    s = CenteredClipping(tau=1.0, iterations=1)
    first = s.aggregate_updates(np.array([[0.0], [0.0], [10.0]]), np.ones(3), None, [0, 1, 2], 1)
    np.testing.assert_allclose(first.update, [1 / 3])
    second = s.aggregate_updates(np.full((3, 1), 3.0), np.ones(3), None, [0, 1, 2], 2)
    np.testing.assert_allclose(second.update, [4 / 3])
    np.testing.assert_allclose(s.centre, [4 / 3])


def test_centered_clipping_properties():
    u = _rows(2, 8, 5) * 3
    perm = np.random.default_rng(0).permutation(8)
    a = centered_clipping(u, np.ones(8), tau=1.0, iterations=3)
    np.testing.assert_allclose(a.update, centered_clipping(u[perm], np.ones(8), tau=1.0, iterations=3).update,
                               atol=1e-12)
    shift = np.linspace(-4, 4, 5)  # equivariant when the centre moves with the rows
    moved = centered_clipping(u + shift, np.ones(8), tau=1.0, iterations=3, centre=shift)
    np.testing.assert_allclose(moved.update, a.update + shift, atol=1e-10)
    # a convex combination of the centre (0) and the rows: inside the box of {0} and the rows
    box = np.vstack([u, np.zeros(5)])
    assert np.all(a.update >= box.min(axis=0) - 1e-12) and np.all(a.update <= box.max(axis=0) + 1e-12)


# --------------------------------------------------------------------------- bad run keys


@pytest.mark.parametrize("key,value", [("cc-tau", 0.0), ("cc-tau", -1.0), ("cc-iterations", 0),
                                       ("geomed-eps", 0.0), ("geomed-iterations", 0)])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError) as err:
        resolve({"defense": "centered-clipping", key: value})
    assert err.value.key == key
