"""The repeated median (strategies/rules/robust.py, strategies/defenses/repeated_median.py): Siegel slopes, the reweighted variant, chunking."""

from __future__ import annotations

from robust_cases import outlier_rows

import numpy as np
import pytest
from strategies.rules.robust import repeated_median, siegel_slopes
from strategies.rules import robust as R
from strategies import defenses as D


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
    u = outlier_rows(rng, k, 40, outliers=1)
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
    u = outlier_rows(rng, k, 12, outliers=1)
    expected_update, expected_shares = ref_fu_reweight(u)
    agg = repeated_median(u, np.ones(k), reweight=True)
    np.testing.assert_allclose(agg.weights, expected_shares, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(agg.update, expected_update, rtol=1e-10, atol=1e-14)
    # chunking is invisible
    small = repeated_median(u, np.ones(k), reweight=True, max_chunk_bytes=1)
    np.testing.assert_allclose(small.update, agg.update, rtol=1e-12, atol=1e-15)


def test_repeated_median_reweight_restricts_an_outlier():
    rng = np.random.default_rng(3)
    u = outlier_rows(rng, 10, 200)
    u[0] += 5.0  # one client far from the others on every coordinate
    agg = repeated_median(u, np.ones(10), reweight=True)
    frac = agg.info["restricted_fraction"]
    assert frac[0] > 0.9 and max(frac[1:]) < 0.5
    assert np.abs(agg.update).max() < 1.0  # the mean would be ~0.5; the outlier is cut back
    assert agg.weights.sum() == pytest.approx(1.0)


def _integer_rows(seed: int, k: int = 20, p: int = 6) -> np.ndarray:
    """Updates with many exactly tied values and distances (small integers)."""
    return np.random.default_rng(seed).integers(-3, 4, size=(k, p)).astype(float)


def _spy_blocks(monkeypatch, name):
    """Replace module function ``name`` by a wrapper that records the width of each column block it handles.

    ``_reweight_block`` gets a ``[C, K]`` block (C = columns); ``_columnwise`` hands ``fn`` ``[K, C]`` blocks.
    """
    original = getattr(R, name)
    widths = []

    def reweight_spy(block, *args):
        widths.append(block.shape[0])
        return original(block, *args)

    def columnwise_spy(updates, fn, *args, **kwargs):
        def record(block):
            widths.append(block.shape[1])
            return fn(block)
        return original(updates, record, *args, **kwargs)

    monkeypatch.setattr(R, name, reweight_spy if name == "_reweight_block" else columnwise_spy)
    return widths


def test_repeated_median_reweight_ranks_ties_in_client_order():
    """Tied values get ranks in client order (stable), as the reference's argsort(argsort(y, stable))."""
    u = _integer_rows(0)
    expected_update, expected_shares = ref_fu_reweight(u)
    agg = R.repeated_median(u, np.ones(20), reweight=True)
    np.testing.assert_allclose(agg.weights, expected_shares, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(agg.update, expected_update, rtol=1e-10, atol=1e-14)


def test_repeated_median_reports_the_variant():
    u = np.arange(12.0).reshape(4, 3)
    assert R.repeated_median(u, np.ones(4)).info == {"reweight": False}
    info = R.repeated_median(u, np.ones(4), reweight=True).info
    assert info["reweight"] is True and len(info["restricted_fraction"]) == 4


def test_repeated_median_reweight_one_and_two_clients():
    """K = 1 is the update itself with share 1; K = 2 fits both exactly: uniform shares, the plain mean."""
    row = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    one = R.repeated_median(row[None], np.ones(1), reweight=True)
    assert one.update.dtype == np.float64
    np.testing.assert_array_equal(one.update, row.astype(np.float64))
    assert one.kept.dtype == bool and one.kept.tolist() == [True]
    assert one.weights.tolist() == [1.0]
    assert one.info == {"reweight": True, "restricted_fraction": [0.0]}
    two = R.repeated_median(np.stack([row, 3 * row]).astype(float), np.ones(2), reweight=True)
    np.testing.assert_allclose(two.weights, [0.5, 0.5])
    np.testing.assert_allclose(two.update, 2 * row.astype(float))


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"reweight_lambda": 0.0}, "repeated-median lambda must be a positive number, got 0.0"),
        ({"reweight_lambda": -1.0}, "repeated-median lambda must be a positive number, got -1.0"),
        ({"reweight_lambda": float("nan")}, "repeated-median lambda must be a positive number, got nan"),
        ({"reweight_lambda": float("inf")}, "repeated-median lambda must be a positive number, got inf"),
        ({"reweight_threshold": float("nan")}, "repeated-median threshold must be a finite number, got nan"),
        ({"reweight_threshold": float("inf")}, "repeated-median threshold must be a finite number, got inf"),
    ],
)
def test_repeated_median_reweight_parameter_messages(kwargs, text):
    with pytest.raises(ValueError) as err:
        R.repeated_median(np.zeros((4, 2)), np.ones(4), reweight=True, **kwargs)
    assert str(err.value) == text


def test_repeated_median_reweight_accepts_a_small_positive_lambda():
    """Any finite lambda > 0 is valid (0.5 < 1 included); a smaller lambda restricts at least as much."""
    rng = np.random.default_rng(5)
    u = rng.normal(size=(9, 15))
    small = R.repeated_median(u, np.ones(9), reweight=True, reweight_lambda=0.5)
    default = R.repeated_median(u, np.ones(9), reweight=True)
    assert np.all(np.array(small.info["restricted_fraction"]) >= np.array(default.info["restricted_fraction"]))


def test_repeated_median_restricted_fraction_of_one_coordinate():
    """With P = 1 each client's fraction is 0 or 1: the far outlier's single value is replaced by the line."""
    u = np.array([0.0, 0.1, -0.1, 0.2, -0.2, 0.05, -0.05, 0.15, -0.15, 50.0])[:, None]
    agg = R.repeated_median(u, np.ones(10), reweight=True)
    frac = agg.info["restricted_fraction"]
    assert frac[-1] == 1.0 and set(frac) <= {0.0, 1.0}
    # one coordinate: every confidence is below 1, still rescaled by the largest -- not uniform shares
    assert agg.weights[-1] < 1e-6 and agg.weights[:-1] == pytest.approx(np.full(9, 1 / 9), rel=1e-6)


def test_repeated_median_reweight_chunks_by_max_chunk_bytes(monkeypatch):
    """Columns go through the reweighting in blocks that fit ``max_chunk_bytes`` (48 B per K*K entry);
    splitting changes nothing, the restricted fraction included."""
    rng = np.random.default_rng(6)
    u = rng.normal(size=(10, 7))
    u[0] += 5.0  # one client far off on every coordinate: some of its 7 values get restricted
    whole = R.repeated_median(u, np.ones(10), reweight=True)
    frac = np.array(whole.info["restricted_fraction"])
    assert 0 < frac[0] <= 1 and np.all(frac[1:] == 0)
    np.testing.assert_allclose(frac * 7, np.round(frac * 7))  # a count of coordinates out of P = 7
    widths = _spy_blocks(monkeypatch, "_reweight_block")
    parts = R.repeated_median(u, np.ones(10), reweight=True, max_chunk_bytes=10 * 10 * 48 * 3)
    assert widths == [3, 3, 1]
    np.testing.assert_allclose(parts.update, whole.update, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(parts.info["restricted_fraction"], frac)  # counted over every block
    widths.clear()
    R.repeated_median(u, np.ones(10), reweight=True)  # default budget: one block
    assert widths == [7]


def test_repeated_median_plain_chunks_by_max_chunk_bytes(monkeypatch):
    """The plain (median) variant honours ``max_chunk_bytes`` too (24 B per entry)."""
    u = np.arange(21.0).reshape(3, 7)
    widths = _spy_blocks(monkeypatch, "_columnwise")
    agg = R.repeated_median(u, np.ones(3), max_chunk_bytes=3 * 24 * 2)
    assert widths == [2, 2, 2, 1]
    np.testing.assert_array_equal(agg.update, np.median(u, axis=0))


def test_repeated_median_strategy_reweights_when_asked():
    rng = np.random.default_rng(0)
    upd = rng.normal(size=(7, 12))
    upd[0] += 8.0  # an outlier the residual reweighting down-weights
    plain = D.RepeatedMedian().aggregate_updates(upd, np.ones(7), None, list(range(7)), 1)
    np.testing.assert_allclose(plain.update, np.median(upd, axis=0))
    assert np.isnan(plain.weights).all()  # no client gets a single share
    rw = D.RepeatedMedian(reweight=True).aggregate_updates(upd, np.ones(7), None, list(range(7)), 1)
    assert np.isfinite(rw.weights).all() and rw.weights.sum() == pytest.approx(1.0)
    assert rw.weights[0] == rw.weights.min() and not np.allclose(rw.update, plain.update)
