"""FedAvg math (strategies/rules/fedavg_math.py): weighted mean over the kept subset, shares, input checks."""

from __future__ import annotations

from robust_cases import outlier_rows

import numpy as np
import pytest
from strategies.rules.fedavg_math import fedavg
from strategies.rules.fedavg_math import check_updates, shares


def test_fedavg_weighted_mean_and_kept_subset():
    rng = np.random.default_rng(0)
    u = outlier_rows(rng, 5, 7)
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


def test_check_updates_keeps_float32_and_returns_flat_float64_weights():
    """float32 / float64 updates keep their dtype (no float64 copy of a float32 stack), ints become float64;
    weights are float64 and ``[K, 1]`` counts become ``[K]``."""
    f32 = np.ones((2, 3), dtype=np.float32)
    u, w = check_updates(f32, np.array([[1], [2]]))
    assert u.dtype == np.float32 and np.shares_memory(u, f32) and w.dtype == np.float64
    np.testing.assert_array_equal(w, [1.0, 2.0])
    u_int, _ = check_updates(np.ones((2, 3), dtype=np.int64), [1, 1])
    assert u_int.dtype == np.float64
    one, w1 = check_updates(np.arange(3.0), [4])  # a 1-D update is one client's
    np.testing.assert_array_equal(one, [[0.0, 1.0, 2.0]])
    np.testing.assert_array_equal(w1, [4.0])


@pytest.mark.parametrize(
    ("updates", "weights", "text"),
    [
        (np.zeros((0, 3)), np.zeros(0), "updates has no rows: at least one client update is needed"),
        (np.zeros((2, 3)), [1, 1, 1], "weights has 3 entries but updates has 2 rows"),
        (np.zeros((2, 3)), [1, float("nan")], "weights (example counts) must be finite and >= 0, got [1.0, nan]"),
        (np.zeros((2, 3)), [1, float("inf")], "weights (example counts) must be finite and >= 0, got [1.0, inf]"),
        (np.zeros((2, 3)), [1, -2], "weights (example counts) must be finite and >= 0, got [1.0, -2.0]"),
        (np.zeros((2, 3, 4)), [1, 1], "updates must be a [K, P] matrix, got shape (2, 3, 4)"),
    ],
)
def test_check_updates_messages(updates, weights, text):
    with pytest.raises(ValueError) as err:
        check_updates(updates, weights)
    assert str(err.value) == text


def test_fedavg_kept_length_message():
    with pytest.raises(ValueError) as err:
        fedavg(np.zeros((3, 2)), np.ones(3), kept=[True, False])
    assert str(err.value) == "kept has 2 entries but updates has 3 rows"


def test_fedavg_reads_a_0_1_kept_mask_as_booleans():
    """``kept`` given as 0/1 integers selects rows, it does not index them."""
    u = np.array([[1.0, 0.0], [0.0, 1.0], [4.0, 4.0]])
    agg = fedavg(u, [1.0, 1.0, 3.0], kept=np.array([1, 0, 1]))
    np.testing.assert_allclose(agg.update, (u[0] + 3 * u[2]) / 4)
    np.testing.assert_array_equal(agg.kept, [True, False, True])
    assert agg.info == {"num_kept": 2, "empty": False}


def test_fedavg_fractional_example_weights_are_shares_as_given():
    """Weights need not be counts >= 1: 0.25 / 0.75 are normalised like any other (total 1 > 0)."""
    u = np.array([[4.0], [8.0]])
    agg = fedavg(u, [0.25, 0.75])
    np.testing.assert_allclose(agg.weights, [0.25, 0.75])
    np.testing.assert_allclose(agg.update, [7.0])


def test_shares_degenerate_cases():
    """No kept client: every share 0; kept clients that all report 0 examples share equally (one -> 1)."""
    assert shares(np.array([3.0, 5.0]), np.array([False, False])).tolist() == [0.0, 0.0]
    np.testing.assert_array_equal(shares(np.array([0.0, 0.0]), np.array([True, False])), [1.0, 0.0])
    empty = fedavg(np.ones((2, 2)), [1, 1], kept=[False, False])
    assert empty.weights.tolist() == [0.0, 0.0]
    assert empty.info == {"num_kept": 0, "empty": True}
