"""Math of FedAvg, median, trimmed mean, repeated median, (Multi-)Krum and Bulyan.

Three kinds of checks: straightforward NumPy references (loops, sorting,
brute-force distances), hand-worked answers, and differential tests against
Flower 1.41's own strategies fed with offline reply Messages.
"""

from __future__ import annotations

import numpy as np
import pytest
from flower_replies import arrays_of, make_replies
from flwr.serverapp.strategy import Bulyan, FedMedian, FedTrimmedAvg, Krum, MultiKrum

from fl_poison.updates import flatten
from strategies.fedavg_math import fedavg
from strategies.robust import (
    bulyan,
    krum,
    krum_scores,
    median,
    multi_krum,
    pairwise_sq_distances,
    repeated_median,
    siegel_slopes,
    trimmed_mean,
)

SHAPES = [(4, 3), (5,), (2, 2, 2)]


def _rows(rng: np.random.Generator, k: int, p: int, outliers: int = 0) -> np.ndarray:
    u = rng.normal(0.0, 0.1, size=(k, p))
    if outliers:
        u[:outliers] += rng.normal(2.0, 1.0, size=(outliers, p))
    return u


# --------------------------------------------------------------------------- references


def ref_krum_scores(u: np.ndarray, f: int) -> np.ndarray:
    k = len(u)
    n = max(1, k - f - 2)
    scores = []
    for i in range(k):
        d = sorted(float(np.sum((u[i] - u[j]) ** 2)) for j in range(k) if j != i)
        scores.append(sum(d[:n]))
    return np.array(scores)


def ref_trimmed(u: np.ndarray, beta: float) -> np.ndarray:
    c = int(beta * len(u))
    s = np.sort(u, axis=0)
    return s[c : len(u) - c].mean(axis=0)


def ref_bulyan(u: np.ndarray, f: int) -> tuple[np.ndarray, list[int]]:
    k = len(u)
    theta, beta = k - 2 * f, k - 4 * f
    chosen = list(np.argsort(ref_krum_scores(u, f), kind="stable")[:theta])
    sel = u[chosen]
    out = np.empty(u.shape[1])
    for p in range(u.shape[1]):
        col = sel[:, p]
        med = np.median(col)
        closest = sorted(range(theta), key=lambda i: abs(col[i] - med))[:beta]
        out[p] = col[closest].mean()
    return out, chosen


def brute_siegel(y: np.ndarray) -> float:
    k = len(y)
    inner = [np.median([(y[i] - y[j]) / (i - j) for j in range(k) if j != i]) for i in range(k)]
    return float(np.median(inner))


def ref_fu_reweight(u: np.ndarray, lam: float = 2.0, thresh: float = 0.1):
    """Fu et al.'s residual reweighting, one coordinate at a time, written from their definitions."""
    k, p = u.shape
    conf_sum = np.zeros(k)
    restricted = np.empty_like(u)
    for c in range(p):
        y = u[:, c]
        ys = np.sort(y)
        slope = brute_siegel(ys)
        intercept = np.median(ys) - slope * (k - 1) / 2
        rank = np.argsort(np.argsort(y, kind="stable"), kind="stable").astype(float)
        x = np.stack([np.ones(k), rank], axis=1)
        hat = x @ np.linalg.inv(x.T @ x) @ x.T
        line = intercept + slope * rank
        res = y - line
        m = np.median(np.sort(np.abs(res))[1:])
        tau = 1.4826 * (1 + 5 / (k - 1)) * m + 1e-7
        e = res / tau
        ph = np.sqrt(1 - np.diag(hat))
        bound = lam * np.sqrt(2 / k)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = ph / e * np.clip(e / ph, -bound, bound)
        w[np.isnan(w)] = 1.0
        conf_sum += w * np.std(w, ddof=1)
        restricted[:, c] = np.where(w >= thresh, y, line)
    s = (conf_sum / conf_sum.max()) ** 2
    s /= s.sum()
    return s @ restricted, s


# --------------------------------------------------------------------------- FedAvg


def test_fedavg_weighted_mean_and_kept_subset():
    rng = np.random.default_rng(0)
    u = _rows(rng, 5, 7)
    n = np.array([10.0, 20.0, 30.0, 0.0, 40.0])
    agg = fedavg(u, n)
    np.testing.assert_allclose(agg.update, (n[:, None] * u).sum(0) / n.sum(), atol=1e-15)
    np.testing.assert_allclose(agg.weights, n / n.sum())
    assert agg.kept.all()

    kept = np.array([True, False, True, True, False])
    agg = fedavg(u, n, kept=kept)
    np.testing.assert_allclose(agg.update, (10 * u[0] + 30 * u[2]) / 40, atol=1e-15)
    np.testing.assert_allclose(agg.weights, [0.25, 0, 0.75, 0, 0])
    np.testing.assert_array_equal(agg.kept, kept)


def test_fedavg_degenerate_cases():
    u = np.array([[1.0, 2.0], [3.0, 4.0]])
    empty = fedavg(u, [1, 1], kept=[False, False])
    np.testing.assert_array_equal(empty.update, [0.0, 0.0])
    assert empty.info["empty"]
    zero_counts = fedavg(u, [0, 0])
    np.testing.assert_allclose(zero_counts.update, [2.0, 3.0])
    # a dropped row holding inf must not turn the mean into NaN
    bad = np.array([[1.0, 1.0], [np.inf, np.nan]])
    np.testing.assert_array_equal(fedavg(bad, [1, 1], kept=[True, False]).update, [1.0, 1.0])
    with pytest.raises(ValueError, match="weights"):
        fedavg(u, [1, -1])
    with pytest.raises(ValueError, match="weights"):
        fedavg(u, [1, 1, 1])


# --------------------------------------------------------------------------- distances / median / trimmed


def test_pairwise_distances_match_brute_force_even_far_from_origin():
    rng = np.random.default_rng(1)
    u = _rows(rng, 6, 50) + 1e3  # a large common offset must not cost precision
    brute = np.array([[np.sum((a - b) ** 2) for b in u] for a in u])
    d = pairwise_sq_distances(u)
    np.testing.assert_allclose(d, brute, rtol=1e-9, atol=1e-12)
    assert np.all(np.diag(d) == 0) and np.array_equal(d, d.T)


@pytest.mark.parametrize("k", [1, 2, 5, 6])
def test_median_is_np_median_and_ignores_weights(k):
    rng = np.random.default_rng(k)
    u = _rows(rng, k, 33, outliers=min(1, k - 1))
    agg = median(u, rng.integers(1, 100, size=k))
    np.testing.assert_array_equal(agg.update, np.median(u, axis=0))
    assert agg.kept.all() and np.isnan(agg.weights).all()


@pytest.mark.parametrize(("k", "beta"), [(10, 0.25), (10, 0.2), (9, 0.1), (7, 0.49), (1, 0.3), (20, 0.0)])
def test_trimmed_mean_matches_sorted_slicing_and_scipy(k, beta):
    from scipy.stats import trim_mean

    rng = np.random.default_rng(k)
    u = _rows(rng, k, 21, outliers=min(2, k - 1))
    agg = trimmed_mean(u, np.ones(k), beta=beta)
    np.testing.assert_allclose(agg.update, ref_trimmed(u, beta), atol=1e-15)
    np.testing.assert_allclose(agg.update, trim_mean(u, beta, axis=0), atol=1e-15)
    assert agg.info["trimmed_per_side"] == int(beta * k)


def test_trimmed_mean_rounds_the_cut_down():
    # K=10, beta=0.25: int(2.5) = 2 values cut from each end (not 3)
    u = np.arange(10.0)[:, None]
    assert trimmed_mean(u, np.ones(10), beta=0.25).update[0] == pytest.approx(np.mean(np.arange(2, 8)))


@pytest.mark.parametrize("beta", [0.5, -0.1, 0.7, "x", None, True])
def test_trimmed_mean_rejects_bad_beta(beta):
    with pytest.raises(ValueError, match="beta"):
        trimmed_mean(np.zeros((4, 2)), np.ones(4), beta=beta)


# --------------------------------------------------------------------------- repeated median


def test_siegel_slopes_match_brute_force_loop():
    rng = np.random.default_rng(2)
    for k in (2, 3, 4, 7, 8):
        y = rng.normal(size=(5, k))
        y[0] = np.sort(y[0])  # sorted and unsorted rows alike
        expected = [brute_siegel(row) for row in y]
        np.testing.assert_allclose(siegel_slopes(y), expected, atol=1e-14)
    np.testing.assert_array_equal(siegel_slopes(np.ones((3, 1))), [0, 0, 0])
    # a perfect line y = 3 + 2x has slope 2 whatever the noise-free spacing
    np.testing.assert_allclose(siegel_slopes(3 + 2 * np.arange(6.0)[None]), [2.0])


@pytest.mark.parametrize("k", [3, 4, 9, 10])
def test_repeated_median_fit_at_centre_equals_median(k):
    rng = np.random.default_rng(k)
    u = _rows(rng, k, 40, outliers=1)
    # LFighter's 'rmedian' by loops: sort each coordinate, Siegel slope against the ranks,
    # intercept through (median rank, median value), the line evaluated at the centre rank.
    import statistics

    fitted = []
    for col in u.T:
        ys = sorted(float(v) for v in col)
        slope = statistics.median(
            statistics.median((ys[i] - ys[j]) / (i - j) for j in range(k) if j != i) for i in range(k))
        intercept = statistics.median(ys) - slope * statistics.median(range(k))
        fitted.append(intercept + slope * (k - 1) / 2)
    agg = repeated_median(u, np.ones(k))
    np.testing.assert_allclose(agg.update, fitted, atol=1e-12)
    assert not np.allclose(agg.update, u.mean(axis=0), atol=1e-3)  # the outlier moves the mean, not this
    np.testing.assert_array_equal(agg.update, np.median(u, axis=0))
    assert agg.kept.all() and np.isnan(agg.weights).all()


@pytest.mark.parametrize("k", [3, 5, 8])
def test_repeated_median_reweight_matches_per_coordinate_reference(k):
    rng = np.random.default_rng(10 + k)
    u = _rows(rng, k, 12, outliers=1)
    expected_update, expected_shares = ref_fu_reweight(u)
    agg = repeated_median(u, np.ones(k), reweight=True)
    np.testing.assert_allclose(agg.weights, expected_shares, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(agg.update, expected_update, rtol=1e-10, atol=1e-14)
    # chunking is invisible
    small = repeated_median(u, np.ones(k), reweight=True, max_chunk_bytes=1)
    np.testing.assert_allclose(small.update, agg.update, rtol=1e-12, atol=1e-15)


def test_repeated_median_reweight_restricts_an_outlier():
    rng = np.random.default_rng(3)
    u = _rows(rng, 10, 200)
    u[0] += 5.0  # one client far from the others on every coordinate
    agg = repeated_median(u, np.ones(10), reweight=True)
    frac = agg.info["restricted_fraction"]
    assert frac[0] > 0.9 and max(frac[1:]) < 0.5
    assert np.abs(agg.update).max() < 1.0  # the mean would be ~0.5; the outlier is cut back
    assert agg.weights.sum() == pytest.approx(1.0)


# --------------------------------------------------------------------------- Krum / Multi-Krum


def test_krum_hand_worked_1d():
    # points 0, 1, 2, 3, 100 with f = 1: each score sums the K-f-2 = 2 nearest squared distances
    u = np.array([[0.0], [1.0], [2.0], [3.0], [100.0]])
    np.testing.assert_allclose(krum_scores(u, 1), [5.0, 2.0, 2.0, 5.0, 9409.0 + 9604.0])
    one = krum(u, np.ones(5), num_byzantine=1)
    assert one.info["selected"] == [1]  # tie 1 vs 2 goes to the lower index
    np.testing.assert_array_equal(one.update, [1.0])
    # Multi-Krum keeps {1, 2, 0} and averages them weighted by example counts
    multi = krum(u, np.array([1, 1, 3, 1, 1]), num_byzantine=1, num_selected=3)
    assert multi.info["selected"] == [1, 2, 0]
    np.testing.assert_array_equal(multi.kept, [True, True, True, False, False])
    np.testing.assert_allclose(multi.update, [(0 * 1 + 1 * 1 + 2 * 3) / 5])
    np.testing.assert_allclose(multi.weights, [0.2, 0.2, 0.6, 0, 0])


@pytest.mark.parametrize(("k", "f"), [(5, 0), (7, 2), (12, 3)])
def test_krum_scores_match_brute_force(k, f):
    rng = np.random.default_rng(k)
    u = _rows(rng, k, 30, outliers=f)
    np.testing.assert_allclose(krum_scores(u, f), ref_krum_scores(u, f), rtol=1e-9)


def test_multi_krum_default_selects_k_minus_f():
    rng = np.random.default_rng(4)
    u = _rows(rng, 9, 10, outliers=2)
    agg = multi_krum(u, np.ones(9), num_byzantine=2)
    assert agg.kept.sum() == 7 and not agg.kept[:2].any()


@pytest.mark.parametrize(("k", "f"), [(5, 3), (4, 2), (3, 1), (2, 1)])
def test_krum_rejects_too_many_byzantine(k, f):
    with pytest.raises(ValueError, match="num-byzantine"):
        krum(np.zeros((k, 3)), np.ones(k), num_byzantine=f)
    with pytest.raises(ValueError, match="num-byzantine"):
        krum_scores(np.zeros((k, 3)), f)


@pytest.mark.parametrize("f", [-1, 1.5, "2"])
def test_krum_rejects_bad_num_byzantine(f):
    with pytest.raises(ValueError, match="num-byzantine"):
        krum(np.zeros((6, 3)), np.ones(6), num_byzantine=f)


def test_krum_rejects_bad_num_selected():
    with pytest.raises(ValueError, match=r"^num-selected must be an integer >= 1, got 0$"):
        krum(np.zeros((6, 3)), np.ones(6), num_selected=0)


# --------------------------------------------------------------------------- Bulyan


@pytest.mark.parametrize(("k", "f"), [(7, 1), (8, 1), (11, 2), (12, 2), (5, 0)])
def test_bulyan_matches_loop_reference(k, f):
    rng = np.random.default_rng(k + f)
    u = _rows(rng, k, 25, outliers=f)
    expected, chosen = ref_bulyan(u, f)
    agg = bulyan(u, rng.integers(1, 9, size=k), num_byzantine=f, selection="flower")
    np.testing.assert_allclose(agg.update, expected, atol=1e-15)
    assert agg.info["selected"] == [int(i) for i in chosen]
    assert agg.kept.sum() == k - 2 * f and agg.info["beta"] == k - 4 * f
    assert np.isnan(agg.weights[agg.kept]).all() and (agg.weights[~agg.kept] == 0).all()


def test_bulyan_hand_worked_1d():
    # K=7, f=1: theta=5, beta=3. Points 0..5 and 100: Krum (4 neighbours) drops 100 and one end.
    u = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0], [100.0]])
    agg = bulyan(u, np.ones(7), num_byzantine=1)
    # scores: 0->1+4+9+16=30, 1->1+1+4+9=15, 2->1+1+4+4=10, 3->10, 4->15, 5->30, 100->big
    assert agg.info["selected"] == [2, 3, 1, 4, 0]
    # selected {0,1,2,3,4}: median 2, the 3 closest are 1,2,3 -> mean 2
    np.testing.assert_allclose(agg.update, [2.0])


@pytest.mark.parametrize(("k", "f"), [(6, 1), (10, 2), (3, 1)])
def test_bulyan_rejects_too_many_byzantine(k, f):
    with pytest.raises(ValueError, match="num-byzantine"):
        bulyan(np.zeros((k, 3)), np.ones(k), num_byzantine=f)


# --------------------------------------------------------------------------- degenerate inputs

DEGENERATE = {
    "median": lambda u, w: median(u, w),
    "trimmed_mean": lambda u, w: trimmed_mean(u, w, beta=0.2),
    "repeated_median": lambda u, w: repeated_median(u, w),
    "repeated_median_reweight": lambda u, w: repeated_median(u, w, reweight=True),
    "krum": lambda u, w: krum(u, w),
    "multi_krum": lambda u, w: multi_krum(u, w),
    "bulyan": lambda u, w: bulyan(u, w),
    "fedavg": lambda u, w: fedavg(u, w),
}


@pytest.mark.parametrize("name", sorted(DEGENERATE))
def test_degenerate_inputs(name):
    fn = DEGENERATE[name]
    row = np.array([0.5, -1.0, 2.0])
    # one client: its own update
    np.testing.assert_allclose(fn(row[None], np.ones(1)).update, row, atol=1e-12)
    # two clients
    two = fn(np.stack([row, 2 * row]), np.ones(2)).update
    assert np.all(np.isfinite(two))
    # identical rows: that row
    same = fn(np.tile(row, (6, 1)), np.arange(1, 7)).update
    np.testing.assert_allclose(same, row, atol=1e-12)
    # all-zero updates: zero
    zero = fn(np.zeros((5, 4)), np.ones(5))
    np.testing.assert_array_equal(zero.update, np.zeros(4))
    assert zero.kept.dtype == bool and zero.kept.shape == (5,)
    with pytest.raises(ValueError):
        fn(np.zeros((0, 3)), np.zeros(0))


# --------------------------------------------------------------------------- differential vs Flower


def _federation(seed: int, k: int, outliers: int, dtype=np.float64):
    rng = np.random.default_rng(seed)
    global_arrays = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    locals_ = []
    for i in range(k):
        shift = 3.0 if i < outliers else 0.0
        locals_.append([(g + rng.normal(shift, 0.1, size=g.shape)).astype(dtype) for g in global_arrays])
    counts = [int(c) for c in rng.integers(5, 200, size=k)]
    g_flat = flatten(global_arrays)
    u = np.stack([flatten(a) for a in locals_]) - g_flat
    return global_arrays, locals_, counts, g_flat, u


def _flower(strategy, locals_, counts) -> np.ndarray:
    arrays, _ = strategy.aggregate_train(1, make_replies(locals_, counts))
    return flatten(arrays_of(arrays))


CASES = [
    # (name, flower strategy factory, our function, K, outliers)
    ("median-odd", lambda: FedMedian(), lambda u, w: median(u, w), 7, 2),
    ("median-even", lambda: FedMedian(), lambda u, w: median(u, w), 8, 2),
    ("trimmed-0.2", lambda: FedTrimmedAvg(beta=0.2), lambda u, w: trimmed_mean(u, w, beta=0.2), 9, 2),
    ("trimmed-0.25", lambda: FedTrimmedAvg(beta=0.25), lambda u, w: trimmed_mean(u, w, beta=0.25), 10, 2),
    ("krum", lambda: Krum(num_malicious_nodes=2), lambda u, w: krum(u, w, num_byzantine=2), 9, 2),
    (
        "multikrum",
        lambda: MultiKrum(num_malicious_nodes=2, num_nodes_to_select=4),
        lambda u, w: krum(u, w, num_byzantine=2, num_selected=4),
        9,
        2,
    ),
    (
        "multikrum-all",
        lambda: MultiKrum(num_malicious_nodes=1, num_nodes_to_select=6),
        lambda u, w: multi_krum(u, w, num_byzantine=1, num_selected=6),
        6,
        0,
    ),
    # Flower's Bulyan takes 1.5-3 s per comparison: the f > 0 cases are `slow` (CI runs them; the fast set and
    # the mutation run, which repeat them for every Bulyan mutant, keep bulyan-f0 and test_strategies' Bulyan).
    pytest.param(("bulyan-11", lambda: Bulyan(num_malicious_nodes=2),
                  lambda u, w: bulyan(u, w, num_byzantine=2, selection="flower"), 11, 2), marks=pytest.mark.slow),
    pytest.param(("bulyan-12", lambda: Bulyan(num_malicious_nodes=2),
                  lambda u, w: bulyan(u, w, num_byzantine=2, selection="flower"), 12, 2), marks=pytest.mark.slow),
    ("bulyan-f0", lambda: Bulyan(num_malicious_nodes=0), lambda u, w: bulyan(u, w, num_byzantine=0), 4, 0),
]

CASE_IDS = [c.values[0][0] if hasattr(c, "values") else c[0] for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_flower_strategy(case, seed):
    _, make_strategy, ours, k, outliers = case
    _, locals_, counts, g_flat, u = _federation(seed, k, outliers)
    expected = _flower(make_strategy(), locals_, counts)
    got = g_flat + ours(u, np.asarray(counts, dtype=float)).update
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_flower_strategy_float32_models(case):
    _, make_strategy, ours, k, outliers = case
    _, locals_, counts, g_flat, u = _federation(7, k, outliers, dtype=np.float32)
    expected = _flower(make_strategy(), locals_, counts)
    got = g_flat + ours(u, np.asarray(counts, dtype=float)).update
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_krum_weighting_is_by_examples_like_flower():
    # MultiKrum with all clients selected is FedAvg: Flower weights by num-examples, so must we
    _, locals_, counts, g_flat, u = _federation(3, 5, 0)
    counts = [1, 1, 1, 1, 100]
    expected = _flower(MultiKrum(num_malicious_nodes=0, num_nodes_to_select=5), locals_, counts)
    got = g_flat + krum(u, np.asarray(counts, float), num_selected=5).update
    np.testing.assert_allclose(got, expected, atol=1e-10)
    uniform = g_flat + u.mean(axis=0)
    assert not np.allclose(expected, uniform, atol=1e-6)


# --------------------------------------------------------------------------- paper defaults vs switches


def test_krum_lfighter_code_distance_changes_the_choice_hand_worked():
    # K=6, f=1, n = K-f-2 = 3.  Paper (squared, 3 nearest OTHER rows):
    #   8 -> 1+1+9 = 11,  9 -> 1+4+4 = 9  => Krum picks 9 (index 4).
    # LFighter's code (|d|, the 3 smallest of the row INCLUDING the zero self-distance = 2 others):
    #   8 -> 0+1+1 = 2,   9 -> 0+1+2 = 3  => picks 8 (index 3).
    u = np.array([[2.0], [4.0], [7.0], [8.0], [9.0], [11.0]])
    np.testing.assert_allclose(krum_scores(u, 1), [65, 29, 14, 11, 9, 29])
    np.testing.assert_allclose(krum_scores(u, 1, "lfighter-code"), [7, 5, 3, 2, 3, 5])
    assert krum(u, np.ones(6), num_byzantine=1).info["selected"] == [4]
    assert krum(u, np.ones(6), num_byzantine=1, distance="lfighter-code").info["selected"] == [3]
    code = multi_krum(u, np.ones(6), num_byzantine=1, num_selected=3, distance="lfighter-code")
    assert sorted(code.info["selected"]) == [2, 3, 4]
    with pytest.raises(ValueError, match="distance"):
        krum_scores(u, 1, "cosine")


def test_pairwise_distances_gram_equals_loop_on_random_rows():
    rng = np.random.default_rng(3)
    u = rng.normal(size=(9, 40))
    brute = ((u[:, None, :] - u[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(pairwise_sq_distances(u), brute, rtol=1e-10, atol=1e-12)
    same = np.tile(u[:1], (3, 1))
    np.testing.assert_array_equal(pairwise_sq_distances(same), np.zeros((3, 3)))


def test_bulyan_iterated_differs_from_flower_shortcut_hand_worked():
    # K=7, f=1, theta=5, beta=3; points 1, 2, 7, 8, 13, 15, 20 (squared distances).
    # One Krum pass (n=4 neighbours): 1:230, 2:183, 7:98, 8:111, 13:114, 15:142, 20:387.
    #   Flower keeps the 5 lowest: 7, 8, 13, 15, 2 = indices {1, 2, 3, 4, 5}.
    # Paper: Krum on what is left, 5 times (n = |R|-3, at least 1; ties -> lower index):
    #   7 (98); R={1,2,8,13,15,20}, n=3: 13 and 15 tie at 78 -> 13; R={1,2,8,15,20}, n=2: 2 (1+36);
    #   R={1,8,15,20}, n=1: 15 (25, tie with 20); R={1,8,20}, n=1: 1 (49, tie with 8).
    #   => indices [2, 4, 1, 5, 0]: 8 is NOT kept, 1 is.
    u = np.array([[1.0], [2.0], [7.0], [8.0], [13.0], [15.0], [20.0]])
    scores = krum_scores(u, 1)
    np.testing.assert_allclose(scores, [230, 183, 98, 111, 114, 142, 387])
    flower = bulyan(u, np.ones(7), num_byzantine=1, selection="flower")
    paper = bulyan(u, np.ones(7), num_byzantine=1)
    assert sorted(flower.info["selected"]) == [1, 2, 3, 4, 5]
    assert paper.info["selected"] == [2, 4, 1, 5, 0] and paper.info["selection"] == "iterated"
    assert paper.kept.tolist() != flower.kept.tolist()
    # coordinate-wise: selected {1, 2, 7, 13, 15}: median 7, beta=3 closest: 2, 7, 13 (|Δ| 5, 0, 6) -> 22/3
    np.testing.assert_allclose(paper.update, [22.0 / 3.0])
    with pytest.raises(ValueError, match="selection"):
        bulyan(u, np.ones(7), num_byzantine=1, selection="other")


def test_bulyan_iterated_rejects_the_outliers_on_random_rows():
    rng = np.random.default_rng(11)
    u = _rows(rng, 11, 20, outliers=2)
    agg = bulyan(u, np.ones(11), num_byzantine=2)
    assert not agg.kept[:2].any() and agg.kept.sum() == 7


def test_pure_defaults_are_the_run_key_defaults():
    import inspect

    from fl_poison.config import SCHEMA
    from strategies.norm_clipping import ndc

    default = {k.name: k.default for k in SCHEMA}
    assert inspect.signature(trimmed_mean).parameters["beta"].default == default["trim-beta"]
    assert inspect.signature(ndc).parameters["mode"].default == default["ndc-mode"]
    assert inspect.signature(ndc).parameters["bound"].default == default["ndc-bound"]
