"""FLAME (strategies/rules/flame.py and its plug-in): by hand without noise, the noise scale, HDBSCAN fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
from strategies.rules.flame import flame


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


def test_cosine_distances_equal_scikit_learns_across_column_blocks_and_for_a_zero_row():
    from sklearn.metrics.pairwise import cosine_distances as sk_cosine

    from strategies.rules import flame as flame_rule

    rng = np.random.default_rng(0)
    # 3 rows: the Gram matrix is summed over blocks of 16 MiB / (8 * 3) = 699,050 columns, so 1.5 M columns take 3
    wide = rng.normal(size=(3, 1_500_000)).astype(np.float32)
    norms = np.linalg.norm(wide.astype(np.float64), axis=1)
    np.testing.assert_allclose(flame_rule.cosine_distances(wide, norms), sk_cosine(wide.astype(np.float64)),
                               atol=1e-9)
    # a zero row is at distance 1 from every other row (scikit-learn's convention), a scaled copy at 0
    small = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [2.0, 4.0, 0.0], [-1.0, 0.5, 3.0]])
    got = flame_rule.cosine_distances(small, np.linalg.norm(small, axis=1))
    np.testing.assert_allclose(got, sk_cosine(small), atol=1e-12)
    assert got[0, 2] == pytest.approx(0.0, abs=1e-12) and got[1, 0] == 1.0 and got[1, 1] == 0.0
