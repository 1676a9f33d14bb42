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


@pytest.mark.parametrize("seed,sizes", [(0, (6, 3)), (1, (5, 2, 2)), (2, (4, 4)), (3, (7, 1, 1, 1))])
def test_the_majority_cluster_is_hdbscans_largest_at_the_papers_parameters(seed, sizes):
    import hdbscan

    from strategies.rules.flame import cosine_distances, majority_cluster

    rng = np.random.default_rng(seed)
    rows = [rng.normal(size=8) for _ in sizes]
    u = np.concatenate([r + rng.normal(scale=0.15, size=(n, 8)) for r, n in zip(rows, sizes)])
    d = cosine_distances(u, np.linalg.norm(u, axis=1))
    k = len(u)
    labels = hdbscan.HDBSCAN(min_cluster_size=k // 2 + 1, min_samples=1, allow_single_cluster=True,
                             metric="precomputed").fit_predict(d)
    mask, why = majority_cluster(d)
    assert why is None and labels.max() >= 0
    top = np.bincount(labels[labels >= 0]).argmax()
    np.testing.assert_array_equal(mask, labels == top)
    assert mask.sum() >= k // 2 + 1 or sizes[0] < k // 2 + 1


def test_the_clipping_bound_is_the_median_norm_of_all_clients_and_weights_share_the_kept():
    # five updates along e1 with norms about 1..5 and two flagged ones of norm 100: S = the median of all seven
    # (about 4); the median of any four or five of the kept would be 3.5 at most
    u = np.array([[1, 0.1, 0], [2, -0.1, 0], [3, 0, 0.1], [4, 0, 0], [5, 0.1, 0.1], [0, 0, -100], [0, -100, 0]])
    w = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 10.0])
    agg = flame(u.astype(float), w, noise=0.0)
    norms = np.linalg.norm(u, axis=1)
    s = float(np.median(norms))
    assert s == pytest.approx(4.0) and agg.info["median_norm"] == pytest.approx(s)
    assert agg.kept[:5].sum() >= 4 and not agg.kept[5:].any()
    share = np.where(agg.kept, w, 0) / w[agg.kept].sum()
    np.testing.assert_allclose(agg.weights, share)
    factor = np.minimum(1.0, s / norms)
    np.testing.assert_allclose(agg.info["clip_factors"], factor)
    np.testing.assert_allclose(agg.update, (share * factor) @ u)


def test_noise_defaults_to_a_seeded_generator_and_is_absent_at_zero_and_a_bad_factor_names_its_key():
    u = np.random.default_rng(4).normal(size=(5, 50))
    a = flame(u, np.ones(5), noise=0.5)
    b = flame(u, np.ones(5), noise=0.5, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(a.update, b.update)  # rng=None: the generator of seed 0
    quiet = flame(u, np.ones(5), noise=0.0)
    assert quiet.info["noise_sigma"] == 0.0
    np.testing.assert_allclose(a.update - quiet.update, np.random.default_rng(0).normal(0, 0.5 * quiet.info["median_norm"], 50))
    with pytest.raises(ValueError, match="flame-noise"):
        flame(u, np.ones(5), noise=-0.1)
