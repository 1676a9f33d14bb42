"""SignGuard (strategies/rules/signguard.py and its plug-in): by hand, equal updates."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.rules.signguard import signguard


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


def test_sign_features_are_the_fractions_of_positive_zero_and_negative_entries():
    from strategies.rules.signguard import sign_features

    np.testing.assert_allclose(sign_features(np.array([[1.0, 0.0, -2.0, 3.0], [0.0, 0.0, 0.0, -1.0]])),
                               [[0.5, 0.25, 0.25], [0.0, 0.75, 0.25]])


def test_the_largest_cluster_is_scikit_learns_meanshift_at_the_stated_bandwidth_and_ties_go_to_the_lowest_index():
    from sklearn.cluster import MeanShift, estimate_bandwidth

    from strategies.rules.signguard import largest_cluster

    rng = np.random.default_rng(3)
    feats = np.concatenate([rng.normal(0.5, 0.01, (7, 3)), rng.normal(0.1, 0.01, (3, 3))])
    labels, mask = largest_cluster(feats)
    ref = MeanShift(bandwidth=estimate_bandwidth(feats, quantile=0.3)).fit(feats).labels_
    np.testing.assert_array_equal(labels, ref)
    assert mask.tolist() == (labels == np.bincount(labels).argmax()).tolist() and mask.sum() >= 3
    # 4 clients: the quantile is 2 / 4 = 0.5 (at least one neighbour besides the point itself)
    few = feats[[0, 1, 7, 8]]
    np.testing.assert_array_equal(largest_cluster(few)[0],
                                  MeanShift(bandwidth=estimate_bandwidth(few, quantile=0.5)).fit(few).labels_)
    # two clusters of two exact twins: zero bandwidth, equal features together; the tie goes to client 0's cluster
    twins = np.array([[0.1, 0.0, 0.9], [0.9, 0.0, 0.1], [0.9, 0.0, 0.1], [0.1, 0.0, 0.9]])
    labels, mask = largest_cluster(twins)
    assert labels[0] == labels[3] != labels[1] == labels[2] and mask.tolist() == [True, False, False, True]


def _line(norm: float, p: int = 4) -> np.ndarray:
    return np.full(p, norm / np.sqrt(p))  # all positive: one sign cluster


def test_the_norm_filter_keeps_both_bounds_and_drops_what_lies_beyond():
    # median M = 10: L M = 1 and R M = 30 are kept, 0.99 and 30.01 are not (ratios are inclusive)
    u = np.stack([_line(n) for n in (1.0, 10.0, 10.0, 10.0, 30.0, 0.99, 30.01)])
    agg = signguard(u, np.ones(7))
    assert agg.info["median_norm"] == pytest.approx(10.0)
    assert agg.info["norm_kept"] == [1, 1, 1, 1, 1, 0, 0] and agg.kept.tolist() == [True] * 5 + [False] * 2
    # each kept update clipped to M = 10, none scaled up: (1 + 10 + 10 + 10 + 10) / 5 along the line
    np.testing.assert_allclose(np.linalg.norm(agg.update), 41 / 5)
    assert agg.info["clip_factors"][4] == pytest.approx(1 / 3) and agg.info["clip_factors"][0] == 1.0


def test_example_weights_share_the_kept_updates_and_an_empty_intersection_falls_back_to_the_norm_filter():
    u = np.array([[1, 1, 1, 1], [1, 2, 1, 2], [2, 2, 2, 2], [-1, -1, -1, -1], [50, 50, 50, 50]], dtype=float)
    agg = signguard(u, np.array([1.0, 2.0, 1.0, 5.0, 5.0]), coord_fraction=1.0)
    np.testing.assert_allclose(agg.weights, [0.25, 0.5, 0.25, 0.0, 0.0])
    r = np.sqrt(10) / 2  # row 2 clipped to the median norm sqrt(10)
    np.testing.assert_allclose(agg.update, [(1 + 2 + r) / 4, (1 + 4 + r) / 4, (1 + 2 + r) / 4, (1 + 4 + r) / 4])
    # norms 2, 0.1, 100 (median 2): only row 0 passes the norm filter; rows 1 and 2 are the larger sign cluster
    odd = np.array([np.ones(4), -0.05 * np.ones(4), -50 * np.ones(4)])
    agg = signguard(odd, np.ones(3), coord_fraction=1.0)
    assert agg.kept.tolist() == [True, False, False] and "norm filter's set" in agg.info["fallback"]
    np.testing.assert_allclose(agg.update, np.ones(4))


def test_the_sign_statistics_use_ceil_fraction_times_p_coordinates_drawn_from_rng(monkeypatch):
    import strategies.rules.signguard as sg

    seen = []
    real = sg.sample_columns
    monkeypatch.setattr(sg, "sample_columns", lambda rng, p, count: seen.append((p, count)) or real(rng, p, count))
    u = np.random.default_rng(0).normal(size=(6, 10))
    signguard(u, np.ones(6), coord_fraction=0.25)
    signguard(u, np.ones(6), coord_fraction=0.01)
    assert seen == [(10, 3), (10, 1)]  # ceil(2.5) = 3; ceil(0.1) = 1
    a = signguard(u, np.ones(6), coord_fraction=0.5, rng=np.random.default_rng(1))
    b = signguard(u, np.ones(6), coord_fraction=0.5, rng=np.random.default_rng(1))
    assert a.info["sign_labels"] == b.info["sign_labels"]


def test_zero_updates_and_bad_bounds():
    agg = signguard(np.zeros((4, 3)), np.ones(4))
    assert agg.kept.all() and np.all(agg.update == 0) and agg.info["clip_factors"] == [1.0] * 4
    for kw, word in (({"lower": 1.5}, "lower <= 1"), ({"upper": 0.5}, "1 <= upper"), ({"lower": -0.1}, "0 <= lower"),
                     ({"coord_fraction": 0.0}, "coord-fraction"), ({"coord_fraction": 1.5}, "coord-fraction")):
        with pytest.raises(ValueError, match=word):
            signguard(np.ones((3, 2)), np.ones(3), **kw)
