"""DnC (strategies/rules/dnc.py and its plug-in): by hand, seeded subsets, invariances, the budget check."""

from __future__ import annotations

import numpy as np
import pytest
from fl_poison.config import ConfigError, resolve
from strategies.defenses.dnc import DivideAndConquer
from strategies.rules.dnc import dnc


def _rows(seed: int, k: int, p: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(k, p))


def test_dnc_by_hand_on_one_coordinate():
    # P = 1: the top singular vector is +-1, so the score is the squared deviation from the mean 33/4 = 8.25:
    # 8.25^2 = 68.06, 7.25^2 = 52.56, 6.25^2 = 39.06, 21.75^2 = 473.06; f = 1, c = 1 removes the largest (30),
    # and every iteration sees the same (only) coordinate: the mean of 0, 1, 2 is 1
    agg = dnc(np.array([[0.0], [1.0], [2.0], [30.0]]), np.ones(4), num_byzantine=1)
    assert agg.kept.tolist() == [True, True, True, False]
    np.testing.assert_allclose(agg.update, [1.0])
    np.testing.assert_allclose(agg.info["scores"], [8.25**2, 7.25**2, 6.25**2, 21.75**2])


def test_dnc_is_seeded_permutation_invariant_and_translation_equivariant():
    u = _rows(7, 12, 40)
    u[:3] += 4.0
    w = np.arange(1, 13, dtype=float)
    run = lambda x, ww: dnc(x, ww, num_byzantine=3, subsample=15, rng=np.random.default_rng(5))  # noqa: E731
    a = run(u, w)
    np.testing.assert_array_equal(a.kept, run(u, w).kept)  # same rng seed, same subsets
    perm = np.random.default_rng(2).permutation(12)
    b = run(u[perm], w[perm])
    np.testing.assert_array_equal(b.kept, a.kept[perm])
    np.testing.assert_allclose(b.update, a.update, atol=1e-12)
    np.testing.assert_allclose(run(u + 3.0, w).update, a.update + 3.0, atol=1e-10)
    kept = u[a.kept]
    assert np.all(a.update >= kept.min(axis=0) - 1e-12) and np.all(a.update <= kept.max(axis=0) + 1e-12)


def test_dnc_strategy_draws_its_subsets_from_the_run_seed_and_round():
    u = _rows(1, 10, 60)
    pick = lambda seed, rnd: DivideAndConquer(num_byzantine=2, subsample=3, seed=seed).aggregate_updates(  # noqa: E731
        u, np.ones(10), None, list(range(10)), rnd).info["scores"]
    assert pick(1, 1) == pick(1, 1)
    assert pick(1, 1) != pick(1, 2) and pick(1, 1) != pick(2, 1)


def test_dnc_refuses_a_budget_that_removes_everyone():
    with pytest.raises(ValueError, match="num-byzantine"):
        dnc(np.zeros((3, 2)), np.ones(3), num_byzantine=3)
    with pytest.raises(ConfigError) as err:
        resolve({"defense": "dnc", "clients-per-round": 4, "num-clients": 4, "num-byzantine": 4})
    assert err.value.key == "num-byzantine"


def test_projection_scores_are_squared_projections_on_the_top_principal_direction():
    from strategies.rules.dnc import projection_scores

    block = _rows(3, 9, 5) * np.array([5.0, 1.0, 0.5, 0.2, 0.1])
    centred = block - block.mean(axis=0)
    vals, vecs = np.linalg.eigh(centred.T @ centred)  # independent of the SVD: the covariance's top eigenvector
    np.testing.assert_allclose(projection_scores(block), (centred @ vecs[:, -1]) ** 2, rtol=1e-9)
    assert projection_scores(np.tile([1.0, 2.0], (4, 1))).tolist() == [0.0] * 4  # nothing to project


@pytest.mark.parametrize("f,c,removed", [(3, 1.0, 3), (3, 1.5, 4), (3, 0.5, 1), (100, 0.29, 29), (0, 1.0, 0)])
def test_each_iteration_removes_floor_c_f_clients(f, c, removed):
    from strategies.rules.dnc import num_removed

    assert num_removed(f, c) == removed  # 0.29 * 100 is 28.999999999999996 in floats: still 29


@pytest.mark.parametrize("c", [1.0, 2.0, 0.5, 0.29, 1.5])
@pytest.mark.parametrize("k", [2, 5, 10, 30])
def test_the_largest_budget_is_the_brute_force_one(k, c):
    from strategies.rules.dnc import dnc_budget, num_removed

    budget = dnc_budget(c)
    brute = max(f for f in range(0, 10 * k) if k - num_removed(f, c) >= 1)
    assert budget.largest(k) == brute and budget.fits(k, brute) and not budget.fits(k, brute + 1)


def test_kept_is_the_intersection_of_every_iterations_good_set(monkeypatch):
    import strategies.rules.dnc as rule

    u = _rows(4, 6, 3)
    u[0, 0], u[1, 1], u[2, 2] = 9.0, 9.0, 9.0  # a different outlier along each coordinate
    script = iter([np.array([0]), np.array([1]), np.array([2])])
    calls = []
    monkeypatch.setattr(rule, "sample_columns", lambda rng, p, count: calls.append(count) or next(script))
    agg = rule.dnc(u, np.ones(6), num_byzantine=1, iterations=3, subsample=1)
    assert calls == [1, 1, 1]  # one draw of `subsample` coordinates per iteration
    assert agg.kept.tolist() == [False, False, False, True, True, True]  # each iteration removed one of them
    np.testing.assert_allclose(agg.update, u[3:].mean(axis=0))
    assert agg.info["removed_per_iteration"] == 1
    last = (u[:, 2] - u[:, 2].mean()) ** 2
    np.testing.assert_allclose(agg.info["scores"], last)  # the last iteration's scores
