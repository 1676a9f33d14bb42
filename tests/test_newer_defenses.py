"""Geometric median (RFA), centered clipping, DnC, SignGuard and FLAME: hand-worked rounds and properties."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from fl_poison.config import ConfigError, resolve
from strategies.centered_clipping import centered_clipping
from strategies.defenses.centered_clipping import CenteredClipping
from strategies.defenses.dnc import DivideAndConquer
from strategies.dnc import dnc
from strategies.flame import flame
from strategies.fltrust import fltrust
from strategies.geometric_median import geometric_median
from strategies.signguard import signguard


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


# --------------------------------------------------------------------------- DnC


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


# --------------------------------------------------------------------------- SignGuard


def test_signguard_by_hand():
    # norms 2, sqrt10, 4, 2, 100: median M = sqrt10 = 3.162; R = 3 drops the 100 (ratio 31.6), L = 0.1 nobody.
    # Sign features on all coordinates: (1, 0, 0) for all but the sign-flipped row 3, (0, 0, 1): MeanShift puts
    # it alone; kept = rows 0, 1, 2. Row 2 (norm 4) is clipped to sqrt10: (2,2,2,2) * sqrt10 / 4 = 1.5811 each.
    # Mean: ((1 + 1 + 1.5811) / 3, (1 + 2 + 1.5811) / 3, ...) = (1.19371, 1.52705, 1.19371, 1.52705)
    u = np.array([[1, 1, 1, 1], [1, 2, 1, 2], [2, 2, 2, 2], [-1, -1, -1, -1], [50, 50, 50, 50]], dtype=float)
    agg = signguard(u, np.ones(5), coord_fraction=1.0)
    assert agg.kept.tolist() == [True, True, True, False, False]
    assert agg.info["norm_kept"] == [1, 1, 1, 1, 0]
    r = np.sqrt(10) / 2
    np.testing.assert_allclose(agg.update, [(2 + r) / 3, (3 + r) / 3, (2 + r) / 3, (3 + r) / 3])


def test_signguard_of_equal_updates_keeps_everyone():
    row = np.array([1.0, -2.0, 0.0, 3.0])
    agg = signguard(np.tile(row, (6, 1)), np.ones(6))
    assert agg.kept.all()
    np.testing.assert_allclose(agg.update, row)


# --------------------------------------------------------------------------- FLAME


def test_flame_by_hand_without_noise():
    # four updates along e1 (cosines near 1) and one along -e3 (cosine 0 or below: distance >= 1): HDBSCAN with
    # min_cluster_size 5 // 2 + 1 = 3 keeps the four. Norms sqrt1.01, sqrt1.01, 2, sqrt1.01, 5: median
    # S = sqrt1.01 = 1.004988. Row 2 is clipped to (S, 0, 0); the mean of the kept four:
    # x = (1 + 1 + S + 1) / 4 = 1.001247, y = (0.1 - 0.1) / 4 = 0, z = 0.1 / 4 = 0.025
    u = np.array([[1, 0.1, 0], [1, -0.1, 0], [2, 0, 0], [1, 0, 0.1], [0, 0, -5]], dtype=float)
    agg = flame(u, np.ones(5), noise=0.0)
    assert agg.kept.tolist() == [True, True, True, True, False]
    s = np.sqrt(1.01)
    np.testing.assert_allclose(agg.update, [(3 + s) / 4, 0.0, 0.025])
    assert agg.info["median_norm"] == pytest.approx(s)


def test_flame_noise_is_lambda_times_the_median_norm_and_seeded():
    u = np.tile(np.array([3.0, 4.0]), (2000, 1))[:, :2]  # every norm is 5: sigma = 0.01 * 5 = 0.05
    u = np.hstack([u, np.zeros((2000, 998))])[:7]  # 7 clients, P = 1000 coordinates, noise on each
    a = flame(u, np.ones(7), noise=0.01, rng=np.random.default_rng(1))
    b = flame(u, np.ones(7), noise=0.01, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a.update, b.update)
    assert a.info["noise_sigma"] == pytest.approx(0.05)
    assert np.std(a.update - u[0]) == pytest.approx(0.05, rel=0.1)


def test_flame_keeps_everyone_when_hdbscan_finds_no_cluster_or_there_are_too_few():
    assert flame(np.eye(2), np.ones(2), noise=0.0).info["fallback"].startswith("2 client")
    agg = flame(np.tile([1.0, 2.0], (5, 1)), np.ones(5), noise=0.0)
    assert agg.kept.all()
    np.testing.assert_allclose(agg.update, [1.0, 2.0])


# --------------------------------------------------------------------------- all three: detection, order


def _attacked(seed: int = 0, honest: int = 10, bad: int = 3, p: int = 200) -> np.ndarray:
    """Honest updates around a common direction; attackers send -5x the honest mean (sign flip + boost)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=p)
    u = mu + 0.3 * rng.normal(size=(honest + bad, p))
    u[:bad] = -5.0 * u[bad:].mean(axis=0) + 0.01 * rng.normal(size=(bad, p))
    return u


FILTERS = {
    "dnc": lambda u, w, rng: dnc(u, w, num_byzantine=3, subsample=50, rng=rng),
    "signguard": lambda u, w, rng: signguard(u, w, coord_fraction=0.5, rng=rng),
    "flame": lambda u, w, rng: flame(u, w, noise=0.0, rng=rng),
}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_obvious_attackers_are_flagged_and_honest_clients_kept(name):
    u = _attacked()
    agg = FILTERS[name](u, np.ones(13), np.random.default_rng(0))
    assert not agg.kept[:3].any(), name
    if name == "flame":  # HDBSCAN's single-cluster labelling keeps only the cluster's core: at least K/2 + 1
        assert agg.kept[3:].sum() >= 13 // 2 + 1
    else:
        assert agg.kept[3:].all(), name


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filters_are_permutation_invariant(name):
    u = _attacked(seed=4)
    w = np.arange(1, 14, dtype=float)
    perm = np.random.default_rng(9).permutation(13)
    a = FILTERS[name](u, w, np.random.default_rng(3))
    b = FILTERS[name](u[perm], w[perm], np.random.default_rng(3))
    np.testing.assert_array_equal(b.kept, a.kept[perm])
    np.testing.assert_allclose(b.update, a.update, atol=1e-10)


# --------------------------------------------------------------------------- FLTrust


def test_fltrust_by_hand():
    # g0 = (1, 0), ||g0|| = 1. (2,0): cos 1, normalised (1,0); (0,3): cos 0 -> TS 0; (-1,0): cos -1 -> 0;
    # (1,1): cos 1/sqrt2 = 0.7071, normalised (1,1)/sqrt2. g = (1 (1,0) + 0.7071 (0.7071, 0.7071)) / 1.7071
    #   = (1.5, 0.5) / 1.7071 = (0.87868, 0.29289)
    u = np.array([[2, 0], [0, 3], [-1, 0], [1, 1]], dtype=float)
    agg = fltrust(u, np.ones(4), server_update=np.array([1.0, 0.0]))
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(agg.info["trust"], [1, 0, 0, r], atol=1e-12)
    assert agg.kept.tolist() == [True, False, False, True]
    np.testing.assert_allclose(agg.update, np.array([1.5, 0.5]) / (1 + r))
    np.testing.assert_allclose(agg.weights, [1 / (1 + r), 0, 0, r / (1 + r)])


def test_fltrust_with_no_trusted_client_leaves_the_model():
    agg = fltrust(-np.eye(2), np.ones(2), server_update=np.array([1.0, 1.0]))
    assert not agg.kept.any() and not agg.update.any() and "fallback" in agg.info


def test_fltrust_root_set_is_held_out_of_every_client():
    from fl_poison.federation import federation_for

    fed = federation_for(resolve({"defense": "fltrust", "server-data-samples": 50}))
    assert len(fed.server) == 50
    assert not set(fed.server.tolist()) & set(np.concatenate(fed.parts).tolist())
    assert federation_for(resolve({"defense": "median"})).server is None  # other defenses: clients keep it all
    with pytest.raises(ConfigError) as err:
        resolve({"defense": "fltrust", "server-data-samples": 0})
    assert err.value.key == "server-data-samples"


# --------------------------------------------------------------------------- bad run keys


@pytest.mark.parametrize("key,value", [("cc-tau", 0.0), ("cc-tau", -1.0), ("cc-iterations", 0),
                                       ("geomed-eps", 0.0), ("geomed-iterations", 0), ("flame-noise", -0.1),
                                       ("dnc-subsample", 0), ("dnc-filter-fraction", 0.0),
                                       ("signguard-lower", 1.5), ("signguard-upper", 0.5)])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError) as err:
        resolve({"defense": "centered-clipping", key: value})
    assert err.value.key == key
