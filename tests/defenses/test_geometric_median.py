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


def test_ftol_zero_runs_exactly_the_given_weiszfeld_steps_and_info_reports_them():
    from strategies.rules import geometric_median as gm_rule
    from strategies.rules.fedavg_math import row_norms

    rng = np.random.default_rng(5)
    u, w = rng.normal(size=(7, 4)), rng.integers(1, 9, size=7).astype(float)
    alpha = w / w.sum()
    v = alpha @ u  # the start: the weighted mean
    for _ in range(4):
        v, share = gm_rule.weiszfeld_step(u, alpha, v, 1e-3)
    agg = gm_rule.geometric_median(u, w, eps=1e-3, iterations=4, ftol=0.0)
    np.testing.assert_allclose(agg.update, v, rtol=1e-12)
    np.testing.assert_allclose(agg.weights, share, rtol=1e-12)
    assert agg.info == {"iterations": 4, "objective": pytest.approx(float(alpha @ row_norms(u, v)), rel=1e-12),
                        "eps": 1e-3}
    assert agg.kept.dtype == bool and agg.kept.all()


def test_the_default_tolerance_stops_once_a_step_improves_the_objective_by_at_most_ftol_of_it():
    from strategies.rules import geometric_median as gm_rule
    from strategies.rules.fedavg_math import row_norms

    rng = np.random.default_rng(6)
    u, w = rng.normal(size=(9, 5)), np.ones(9)
    agg = gm_rule.geometric_median(u, w, ftol=1e-4)
    n = agg.info["iterations"]
    assert 1 < n < gm_rule.DEFAULT_ITERATIONS
    # the objective after n - 1 and n steps: the last step improved by <= 1e-4 of it, the one before by more
    before = gm_rule.geometric_median(u, w, ftol=0.0, iterations=n - 1)
    last = before.info["objective"] - agg.info["objective"]
    assert 0 <= last <= 1e-4 * agg.info["objective"]
    prev = gm_rule.geometric_median(u, w, ftol=0.0, iterations=n - 2) if n > 2 else None
    if prev is not None:
        assert prev.info["objective"] - before.info["objective"] > 1e-4 * before.info["objective"]
    assert agg.info["objective"] == pytest.approx(float(np.full(9, 1 / 9) @ row_norms(u, agg.update)), rel=1e-12)


@pytest.mark.parametrize("kw,key", [({"eps": 0.0}, "geomed-eps"), ({"iterations": 0}, "geomed-iterations")])
def test_bad_smoothing_or_iterations_name_their_run_key(kw, key):
    from strategies.rules import geometric_median as gm_rule

    with pytest.raises(ValueError, match=f"^{key} must be"):
        gm_rule.geometric_median(np.ones((3, 2)), np.ones(3), **kw)
