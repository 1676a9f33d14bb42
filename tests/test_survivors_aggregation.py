"""Behaviour of the aggregation rules that no fast test pinned (found by mutation testing).

Covers ``strategies.norm_clipping`` (NDC report fields), ``strategies.robust``
(median, trimmed mean, repeated median, Krum / Multi-Krum, Bulyan and their
helpers), ``strategies.fedavg_math``, ``strategies.similarity``,
``strategies.foolsgold`` and the Flower glue in ``strategies.base``. Every
expected value is worked out by hand in the comments, or compared against a
plain numpy reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from flower_replies import StubGrid as _Grid, array_record, arrays_of, make_reply
from flwr.app import ArrayRecord, ConfigRecord, Error, Message, RecordDict
from test_robust_math import ref_bulyan, ref_fu_reweight  # loop references written from the papers

from fl_poison.updates import make_layout
from strategies import base as B
from strategies import defenses as D
from strategies import robust as R
from strategies.fedavg_math import check_updates, fedavg, shares
from strategies.foolsgold import foolsgold, foolsgold_features, foolsgold_weights
from strategies.norm_clipping import ndc
from strategies.similarity import angle_matrix, cosine_matrix


def _on_a_line(norms) -> np.ndarray:
    """Updates pointing the same way (3-4-5 direction) with the given L2 norms."""
    direction = np.array([3.0, 4.0, 0.0]) / 5.0
    return np.asarray(norms, dtype=float)[:, None] * direction


# --------------------------------------------------------------------------- norm clipping (NDC)


@pytest.mark.parametrize(
    ("mode", "flagged"),
    [
        # bound 3: clip flags r > 3 (4, 5); drop flags r >= 3 (3, 4, 5) -- strict r < M keeps 1, 2
        ("clip", 2),
        ("drop", 3),
    ],
)
def test_ndc_info_reports_mode_and_flag_count(mode, flagged):
    """The round report's ``mode`` and ``num_flagged`` say what the defense did (drop counts the dropped)."""
    agg = ndc(_on_a_line([1, 2, 3, 4, 5]), np.ones(5), bound=3.0, mode=mode)
    assert agg.info["mode"] == mode
    assert agg.info["num_flagged"] == flagged == int((~agg.kept).sum())
    assert agg.info["empty"] is False


# --------------------------------------------------------------------------- robust: argument checks



@pytest.mark.parametrize(("value", "expected"), [(0, 0), (3, 3), (2.0, 2), (np.int64(4), 4)])
def test_check_num_byzantine_accepts_non_negative_integers(value, expected):
    got = R.check_num_byzantine(value)
    assert got == expected and type(got) is int


@pytest.mark.parametrize("value", [-1, 1.5, True, None, "2"])
def test_check_num_byzantine_message_names_key_and_rule(value):
    """A bad ``num-byzantine`` is reported with the key, the rule and the value given."""
    with pytest.raises(ValueError) as err:
        R.check_num_byzantine(value)
    assert str(err.value) == f"num-byzantine must be a non-negative integer, got {value!r}"


@pytest.mark.parametrize(("value", "expected"), [(1, 1), (5, 5), (2.0, 2)])
def test_check_positive_int_accepts(value, expected):
    got = R._check_positive_int(value, "num-selected")
    assert got == expected and type(got) is int


@pytest.mark.parametrize("value", [0, -2, 1.5, True, None])
def test_check_positive_int_message(value):
    with pytest.raises(ValueError) as err:
        R._check_positive_int(value, "num-selected")
    assert str(err.value) == f"num-selected must be an integer >= 1, got {value!r}"


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.49])
def test_check_beta_accepts_the_half_open_range(beta):
    assert R.check_beta(beta) == beta


@pytest.mark.parametrize(
    ("beta", "text"),
    [
        ("x", "beta (fraction trimmed from each end) must be a number, got 'x'"),
        (None, "beta (fraction trimmed from each end) must be a number, got None"),
        (0.5, "beta (fraction trimmed from each end) must be in [0, 0.5), got 0.5"),
        (-0.1, "beta (fraction trimmed from each end) must be in [0, 0.5), got -0.1"),
        (True, "beta (fraction trimmed from each end) must be in [0, 0.5), got True"),
    ],
)
def test_check_beta_messages(beta, text):
    with pytest.raises(ValueError) as err:
        R.check_beta(beta)
    assert str(err.value) == text


@pytest.mark.parametrize(
    ("k", "f", "n"),
    [(5, 0, 3), (10, 2, 6), (4, 1, 1), (2, 0, 1), (1, 0, 1)],  # n = K - f - 2, clamped to 1 only for f = 0
)
def test_krum_num_closest_values(k, f, n):
    assert R.krum_num_closest(k, f) == n


@pytest.mark.parametrize(("k", "f", "most"), [(3, 1, 0), (2, 1, 0), (6, 4, 3), (7, 5, 4)])
def test_krum_num_closest_message_gives_the_largest_allowed_f(k, f, most):
    """The message names ``num-byzantine``, both numbers, and the largest f that would work (K - 3, >= 0)."""
    with pytest.raises(ValueError) as err:
        R.krum_num_closest(k, f)
    assert str(err.value) == (
        f"num-byzantine={f} is too large for K={k} clients: Krum needs "
        f"K - num-byzantine - 2 >= 1, i.e. num-byzantine <= {most}"
    )


# --------------------------------------------------------------------------- robust: chunking helpers


@pytest.mark.parametrize(
    ("rows", "cols", "cost", "budget", "step"),
    [
        (4, 100, 8, 64, 2),  # one column costs 4 * 8 = 32 bytes: 64 // 32 = 2 columns
        (4, 100, 8, 10, 1),  # not even one column fits: still 1 (progress is guaranteed)
        (4, 3, 8, 10_000, 3),  # never more columns than there are
        (0, 10, 8, 5, 5),  # no rows: a column costs at least 1 byte
        (3, 0, 8, 64, 1),  # no columns: step 1 (range(0, 0, 1) is empty)
    ],
)
def test_chunk_cols_hand_worked(rows, cols, cost, budget, step):
    assert R._chunk_cols(rows, cols, cost, budget) == step


def test_columnwise_splits_by_budget_and_hands_float64_blocks():
    """``fn`` sees float64 column blocks of the budgeted width; the pieces concatenate to fn(whole)."""
    u = np.arange(30, dtype=np.float32).reshape(3, 10)
    seen = []

    def col_sum(block):
        seen.append((block.dtype, block.shape))
        return block.sum(axis=0)

    out = R._columnwise(u, col_sum, cost_per_entry=8, budget=3 * 8 * 4)  # 4 columns per block
    assert seen == [(np.float64, (3, 4)), (np.float64, (3, 4)), (np.float64, (3, 2))]
    np.testing.assert_array_equal(out, u.astype(np.float64).sum(axis=0))
    seen.clear()
    R._columnwise(u, col_sum)  # default budget (64 MiB): one block
    assert seen == [(np.float64, (3, 10))]


def test_check_keep_dtype_keeps_float32_without_a_copy():
    """A float32 matrix is passed on as it is (no float64 copy); other dtypes become float64; a row becomes [1, P]."""
    u32 = np.ones((3, 4), dtype=np.float32)
    assert R._check_keep_dtype(u32, np.ones(3)) is u32
    as_int = R._check_keep_dtype(np.ones((2, 3), dtype=np.int64), np.ones(2))
    assert as_int.dtype == np.float64
    assert R._check_keep_dtype(np.ones(5), np.ones(1)).shape == (1, 5)


def test_coordinatewise_rules_report_the_given_shape_of_a_bad_matrix():
    """The error for a 3-D input names the shape the caller passed, not a sliced view of it."""
    with pytest.raises(ValueError, match=r"\[K, P\] matrix, got shape \(2, 3, 4\)"):
        R.median(np.zeros((2, 3, 4)), np.ones(2))


def test_lowest_is_stable_on_tied_krum_scores():
    """Multi-Krum ties go to the lower index, in index order (argsort kind='stable', not quicksort)."""
    # six points at 0 and four at 5, interleaved; f = 0, n = 8 neighbours:
    # a 0-point sums 5 zeros + 3 * 25 = 75, a 5-point 3 zeros + 5 * 25 = 125
    u = np.array([0, 5, 0, 5, 0, 5, 0, 5, 0, 0], dtype=float)[:, None]
    np.testing.assert_allclose(R.krum_scores(u, 0), np.where(u[:, 0] == 0, 75.0, 125.0))
    agg = R.krum(u, np.ones(10), num_selected=5)
    assert agg.info["selected"] == [0, 2, 4, 6, 8]


# --------------------------------------------------------------------------- robust: ties on integer-valued updates



def _integer_rows(seed: int, k: int = 20, p: int = 6) -> np.ndarray:
    """Updates with many exactly tied values and distances (small integers)."""
    return np.random.default_rng(seed).integers(-3, 4, size=(k, p)).astype(float)


@pytest.mark.parametrize("seed", [0, 2])
def test_bulyan_ties_follow_the_loop_reference(seed):
    """With tied scores / distances the lower index (selection order) wins, as in the stable loop reference."""
    u = _integer_rows(seed)
    expected, chosen = ref_bulyan(u, 2)
    agg = R.bulyan(u, np.ones(20), num_byzantine=2, selection="flower")
    assert agg.info["selected"] == [int(i) for i in chosen]
    np.testing.assert_allclose(agg.update, expected, atol=1e-15)


def test_repeated_median_reweight_ranks_ties_in_client_order():
    """Tied values get ranks in client order (stable), as the reference's argsort(argsort(y, stable))."""
    u = _integer_rows(0)
    expected_update, expected_shares = ref_fu_reweight(u)
    agg = R.repeated_median(u, np.ones(20), reweight=True)
    np.testing.assert_allclose(agg.weights, expected_shares, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(agg.update, expected_update, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------- robust: report fields and small-K edges


def test_trimmed_mean_reports_beta():
    agg = R.trimmed_mean(np.arange(10.0)[:, None], np.ones(10), beta=0.25)
    assert agg.info == {"beta": 0.25, "trimmed_per_side": 2}


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


def test_krum_report_fields():
    """``scores`` are the Krum scores, ``num_closest`` the neighbour count actually summed, ``distance`` the rule."""
    u = np.array([[0.0], [1.0], [2.0], [3.0], [100.0]])
    agg = R.krum(u, np.ones(5), num_byzantine=1)
    assert agg.info["scores"] == [5.0, 2.0, 2.0, 5.0, 9409.0 + 9604.0]
    assert agg.info["num_closest"] == 2 and agg.info["distance"] == "squared"
    assert R.krum(u, np.ones(5), distance="lfighter-code").info["distance"] == "lfighter-code"
    # fewer rows than the neighbour count: K = 2 sums its one other row, K = 1 sums none
    assert R.krum(u[:2], np.ones(2)).info["num_closest"] == 1
    assert R.krum(u[:1], np.ones(1)).info["num_closest"] == 0


def test_krum_scores_small_k():
    """K = 1 scores 0; K = 2 each sums its distance to the other; K = 4, f = 1 sums the single nearest."""
    np.testing.assert_array_equal(R.krum_scores(np.array([[3.0, 4.0]]), 0), [0.0])
    np.testing.assert_array_equal(R.krum_scores(np.array([[0.0, 0.0], [3.0, 4.0]]), 0), [25.0, 25.0])
    u = np.array([[0.0], [1.0], [3.0], [10.0]])
    np.testing.assert_array_equal(R.krum_scores(u, 1), [1.0, 1.0, 4.0, 49.0])


def test_pairwise_distances_are_float64_even_for_float32_rows():
    """A float32 input is converted before the Gram product (float32 products would round at ~1e-7)."""
    u32 = np.random.default_rng(7).normal(size=(4, 50)).astype(np.float32)
    u64 = u32.astype(np.float64)
    brute = ((u64[:, None, :] - u64[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(R.pairwise_sq_distances(u32), brute, rtol=1e-12)


# --------------------------------------------------------------------------- robust: Bulyan reports


@pytest.mark.parametrize(("k", "f", "need"), [(6, 1, 7), (10, 2, 11)])
def test_bulyan_message_states_the_requirement(k, f, need):
    with pytest.raises(ValueError) as err:
        R.bulyan(np.zeros((k, 3)), np.ones(k), num_byzantine=f)
    assert str(err.value) == (
        f"num-byzantine={f} is too large for K={k} clients: Bulyan needs K >= 4 * num-byzantine + 3 = {need}"
    )


# K=7, f=1 points of the hand-worked example in test_robust_math: iterated selection [2, 4, 1, 5, 0]
_BULYAN_POINTS = np.array([[1.0], [2.0], [7.0], [8.0], [13.0], [15.0], [20.0]])


def test_bulyan_reports_scores_theta_and_the_steps_decided_by_a_tie():
    """Iterated steps (n = |R| - 3, at least 1): step 0 picks 7 (98, unique); step 1: 13 and 15 tie (78);
    step 2: 2 (37 vs 50, unique); step 3: 15 and 20 tie (25); step 4: 1 and 8 tie (49)."""
    agg = R.bulyan(_BULYAN_POINTS, np.ones(7), num_byzantine=1)
    assert agg.info["scores"] == R.krum_scores(_BULYAN_POINTS, 1).tolist() == [230, 183, 98, 111, 114, 142, 387]
    assert agg.info["theta"] == 5 and agg.info["selection_ties"] == [1, 3, 4]


def test_bulyan_ties_that_do_not_matter_are_not_reported():
    """f = 0 keeps every row (theta = K): a tie cannot change the set, so none is reported."""
    assert R.bulyan(_BULYAN_POINTS, np.ones(7), num_byzantine=0).info["selection_ties"] == []


def test_bulyan_select_defaults_to_the_iterated_rule_and_needs_no_tie_list():
    np.testing.assert_array_equal(R.bulyan_select(_BULYAN_POINTS, 1, 5), [2, 4, 1, 5, 0])
    ties: list[int] = []
    R.bulyan_select(_BULYAN_POINTS, 1, 5, "iterated", ties)
    assert ties == [1, 3, 4]


def test_bulyan_select_counts_rounding_level_differences_as_ties():
    """Scores within 1e-9 * (1 + |s|) of each other count as a tie (rounding), not only exact equality."""
    # f = 0, theta = 2, points -3, -1, 1 + d, 3 with d = 1e-10. Step 0 (n = 2 nearest):
    #   s(-1) = 4 + (2 + d)^2 = 8 + 4d + d^2,  s(1 + d) = (2 + d)^2 + (2 - d)^2 = 8 + 2d^2
    #   -> 1 + d wins by ~4e-10 (relative 5e-11): a tie. Step 1 (n = 1): -3 and -1 both score 4: a tie.
    u = np.array([[-3.0], [-1.0], [1.0 + 1e-10], [3.0]])
    ties: list[int] = []
    np.testing.assert_array_equal(R.bulyan_select(u, 0, 2, "iterated", ties), [2, 0])
    assert ties == [0, 1]


# --------------------------------------------------------------------------- fedavg_math



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


# --------------------------------------------------------------------------- similarity



def test_cosine_matrix_message_and_float64_math():
    with pytest.raises(ValueError) as err:
        cosine_matrix(np.ones(3))
    assert str(err.value) == "expected a [K, F] matrix, got shape (3,)"
    # float32 rows are compared in float64: cos(e0, e0 + e1) = 1 / sqrt(2) to full precision
    cos = cosine_matrix(np.array([[1.0, 0.0], [1.0, 1.0]], dtype=np.float32))
    assert cos.dtype == np.float64
    assert cos[0, 1] == pytest.approx(1 / np.sqrt(2), rel=1e-15)


def test_cosine_matrix_small_and_zero_rows():
    """Rows of norm < 1 are normalised too; a zero row has cosine 0 with everything, itself included."""
    x = np.array([[0.03, 0.04], [0.0, 0.0], [0.0, 0.5]])
    expected = np.array([[1.0, 0.0, 0.8], [0.0, 0.0, 0.0], [0.8, 0.0, 1.0]])
    np.testing.assert_allclose(cosine_matrix(x), expected, rtol=1e-15, atol=0)
    theta = angle_matrix(x)
    np.testing.assert_array_equal(np.diag(theta), [0.0, 0.0, 0.0])
    assert theta[0, 1] == pytest.approx(np.pi / 2)


def test_parallel_and_opposite_rows_are_snapped_to_exactly_plus_minus_one():
    """Rounding leaves u.v of parallel unit vectors at 1 - 1e-16; the snap makes copies exactly parallel."""
    x = np.random.default_rng(0).normal(size=(7, 7))[6]  # a row whose raw products miss +-1 by ~1e-16
    rows = np.stack([x, 3 * x, -x])
    unit = rows / np.linalg.norm(rows, axis=1)[:, None]
    raw = unit @ unit.T
    assert raw[0, 1] != 1.0 and raw[0, 2] != -1.0  # the precondition that makes this test meaningful
    cos = cosine_matrix(rows)
    np.testing.assert_array_equal(cos, [[1, 1, -1], [1, 1, -1], [-1, -1, 1]])
    np.testing.assert_array_equal(angle_matrix(rows)[0], [0.0, 0.0, np.pi])


# --------------------------------------------------------------------------- foolsgold



def _fg_layout(c: int = 3, h: int = 2):
    """A two-layer MLP layout whose output layer ``fc2`` has ``c`` neurons of ``h`` inputs."""
    arrays = [np.zeros((h, 2)), np.zeros(h), np.zeros((c, h)), np.zeros(c)]
    return make_layout(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"], arrays, "fc2")


def test_foolsgold_features_default_is_the_output_layer():
    layout = _fg_layout()
    upd = np.arange(2.0 * layout.num_params).reshape(2, -1)
    np.testing.assert_array_equal(foolsgold_features(upd, layout), layout.output_layer(upd))
    # the base hands defenses float32 updates; the features (summed into the history) are float64
    for features in ("output-layer", "all"):
        assert foolsgold_features(upd.astype(np.float32), layout, features).dtype == np.float64


def test_foolsgold_weights_of_no_and_one_client():
    assert foolsgold_weights(np.zeros((0, 3))).shape == (0,)
    np.testing.assert_array_equal(foolsgold_weights(np.array([[2.0, 1.0]])), [1.0])


def test_foolsgold_weights_clip_a_negative_logit_to_zero():
    """A client whose rescaled alpha is below 1 / (1 + e^0.5) ~ 0.38 gets a negative logit + 0.5: weight 0."""
    # cos(a, b) = 0.8 (b is a's near twin); c orthogonal to both: alpha_a = alpha_b = 0.2, alpha_c = 1
    hist = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]])
    wv = foolsgold_weights(hist)
    assert np.log(0.2 / 0.8) + 0.5 < 0
    np.testing.assert_array_equal(wv, [0.0, 0.0, 1.0])


def test_foolsgold_single_client_is_its_own_update():
    """K = 1: weight 1, total 1 -- the update itself, not the all-zero fallback."""
    layout = _fg_layout()
    row = np.linspace(-1, 1, layout.num_params)
    agg = foolsgold(row[None], np.ones(1), layout)
    np.testing.assert_allclose(agg.update, row)
    assert agg.kept.tolist() == [True] and "fallback" not in agg.info


def test_foolsgold_report_fields_and_kept():
    layout = _fg_layout()
    upd = np.random.default_rng(3).normal(size=(3, layout.num_params))
    hist = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])  # 0, 1 sybils; 2 honest
    agg = foolsgold(upd, np.ones(3), layout, history=hist, features="all")
    assert agg.info == {"wv": [0.0, 0.0, 1.0], "features": "all", "history_rows": 3}  # rows, not the 4 features
    np.testing.assert_array_equal(agg.kept, [False, False, True])
    np.testing.assert_allclose(agg.update, upd[2])


def test_foolsgold_all_zero_fallback_report():
    layout = _fg_layout()
    upd = np.tile(np.arange(layout.num_params, dtype=float), (2, 1))
    agg = foolsgold(upd, np.ones(2), layout)
    assert agg.info["fallback"] == "all FoolsGold weights are 0: zero update"
    assert agg.kept.dtype == bool and agg.kept.tolist() == [False, False]
    np.testing.assert_array_equal(agg.weights, [0.0, 0.0])
    np.testing.assert_array_equal(agg.update, np.zeros(layout.num_params))


def test_foolsgold_history_row_count_message():
    layout = _fg_layout()
    with pytest.raises(ValueError) as err:
        foolsgold(np.zeros((2, layout.num_params)), np.ones(2), layout, history=np.ones((3, 5)))
    assert str(err.value) == "history has 3 rows for 2 updates"


@pytest.mark.parametrize(
    "sampled",
    [
        [0, -1],  # negative index (even though the largest is in range)
        [0, 3],  # one past the last history row
        [0, 1, 2],  # three indices for two updates (all in range)
    ],
)
def test_foolsgold_rejects_bad_sampled_rows(sampled):
    layout = _fg_layout()
    hist = np.eye(3, 5)  # 3 history rows of 5 features
    with pytest.raises(ValueError) as err:
        foolsgold(np.zeros((2, layout.num_params)), np.ones(2), layout, history=hist, sampled=np.array(sampled))
    assert str(err.value) == "sampled must hold 2 row indices into a history of 3 rows"


def test_foolsgold_sampled_accepts_row_zero_and_a_one_row_history():
    layout = _fg_layout()
    row = np.linspace(-1, 1, layout.num_params)
    agg = foolsgold(row[None], np.ones(1), layout, history=np.array([[1.0, 2.0]]), sampled=np.array([0]))
    np.testing.assert_allclose(agg.update, row)


# --------------------------------------------------------------------------- base: the Flower glue


def _primed(strategy, global_arrays, nodes=range(4)):
    strategy.configure_train(1, array_record(global_arrays), ConfigRecord(), _Grid(nodes))
    return strategy


_G = [np.zeros((2, 3), np.float32), np.zeros(2, np.float32)]  # a 2x3 output layer and its bias


@pytest.mark.parametrize(
    ("node", "signed"), [(5, 5), (2**63 - 1, 2**63 - 1), (2**63, -(2**63)), (2**64 - 1, -1)]
)
def test_node_ids_become_signed_int64(node, signed):
    assert B._to_signed(node) == signed


def test_invalid_reply_reasons_name_the_problem(server_identity):
    s = _primed(D.FedAvgDefense(), _G)
    ok = [np.ones((2, 3), np.float32), np.ones(2, np.float32)]
    replies = [
        make_reply(ok, 1, 1),  # one example is a valid count
        make_reply([np.full((2, 3), np.nan, np.float32), ok[1]], 10, 2),
        make_reply([np.zeros((3, 2), np.float32), ok[1]], 10, 3),
        make_reply(ok, 0, 4),
        Message(Error(code=2, reason="boom"), reply_to=Message(RecordDict(), 5, "train")),
        make_reply(ok, 10, 6, {"num-examples": float("inf")}),
        make_reply(ok + [np.ones(1, np.float32)], 10, 7),  # a third array: names "0", "1", "2"
    ]
    s.aggregate_train(1, replies)
    assert s.last_report.clients == [1]
    assert s.last_report.invalid == {
        2: "non-finite values (NaN / Inf) in the arrays",
        3: "array shapes differ from the global model's (0)",
        4: "'num-examples' is 0, must be a positive number",
        5: "error reply (code 2): boom",
        6: "'num-examples' is inf, must be a positive number",
        7: "array names differ from the global model's",
    }
    # a reply with every array mis-shaped names the first three
    wide = _primed(D.FedAvgDefense(), [np.zeros(2, np.float32)] * 3 + [np.zeros((2, 3), np.float32)])
    wide.aggregate_train(1, [make_reply([np.zeros(3, np.float32)] * 3 + [np.zeros((3, 3), np.float32)], 10, 8)])
    assert wide.last_report.invalid == {8: "array shapes differ from the global model's (0, 1, 2)"}


def test_round_metrics_and_report_of_a_mixed_round(server_identity):
    """Counts, flags, NaN-free means of the client metrics, per-client norms and extra metrics."""
    s = _primed(D.Krum(num_byzantine=0), _G)  # f = 0: Krum keeps the one best client
    near = [np.full((2, 3), 0.1, np.float32), np.zeros(2, np.float32)]
    far = [np.full((2, 3), 3.0, np.float32), np.full(2, 4.0, np.float32)]
    replies = [
        make_reply(near, 10, 1, {"train-loss": 1.0, "train-accuracy": 0.5, "received-model-accuracy": 0.25,
                                 "chosen-target": 3}),
        make_reply(near, 10, 2, {"train-loss": 3.0, "train-accuracy": float("nan"), "received-model-accuracy": 0.75,
                                 "chosen-target": 4}),
        make_reply(far, 10, 3, {"train-loss": 5.0, "train-accuracy": 0.7, "received-model-accuracy": 0.5,
                                "chosen-target": 5}),
        make_reply([np.zeros((3, 3), np.float32), near[1]], 10, 4, {"train-loss": 0.0, "train-accuracy": 0.0,
                                                                     "received-model-accuracy": 0.0,
                                                                     "chosen-target": 6}),
    ]
    arrays, m = s.aggregate_train(2, replies)
    rep = s.last_report
    assert rep.server_round == 2 and rep.updated and rep.clients == [1, 2, 3]
    assert rep.kept == [True, False, False] and rep.flagged == [2, 3] and list(rep.invalid) == [4]
    np.testing.assert_allclose(rep.update_norms, [np.sqrt(6 * 0.01), np.sqrt(6 * 0.01), np.sqrt(6 * 9 + 2 * 16)],
                               rtol=1e-6)
    assert rep.client_metrics == [{"chosen-target": 3.0}, {"chosen-target": 4.0}, {"chosen-target": 5.0}]
    assert rep.train_loss == [1.0, 3.0, 5.0]
    assert (m["num-clients"], m["num-valid"], m["num-invalid"], m["num-flagged"], m["updated"]) == (4, 3, 1, 2, 1)
    assert m["train-loss"] == pytest.approx(3.0) and m["train-accuracy"] == pytest.approx(0.6)
    assert m["received-model-accuracy"] == pytest.approx(0.5)
    assert m["clients"] == [1, 2, 3] and m["kept"] == [1, 0, 0] and m["invalid-clients"] == [4]
    assert m["weights"] == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(arrays_of(arrays)[0], near[0])


def test_a_rule_that_cannot_aggregate_keeps_everyone_and_reports_why(server_identity):
    s = _primed(D.Krum(num_byzantine=2), _G)
    ok = [np.ones((2, 3), np.float32), np.ones(2, np.float32)]
    arrays, m = s.aggregate_train(1, [make_reply(ok, 10, i) for i in range(3)])
    assert arrays is None and m["updated"] == 0 and m["kept"] == [1, 1, 1]
    assert s.last_report.info["error"].startswith("num-byzantine=2 is too large for K=3 clients")


def test_capture_updates_keeps_the_output_rows(server_identity):
    s = _primed(D.FedAvgDefense(capture_updates=True), _G)
    local = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([7.0, 8.0], np.float32)]
    s.aggregate_train(1, [make_reply(local, 10, 1)])
    np.testing.assert_array_equal(s.last_report.output_rows, [[[0, 1, 2, 7], [3, 4, 5, 8]]])
    plain = _primed(D.FedAvgDefense(), _G)
    plain.aggregate_train(1, [make_reply(local, 10, 1)])
    assert plain.last_report.output_rows is None


def test_default_sampling_size_uses_fraction_and_minimum(server_identity):
    """With a sampler: ``clients_per_round``, else ``max(int(n * fraction_train), min_train_nodes)``, at most n."""
    seen = []

    def sampler(rnd, nodes, k):
        seen.append((rnd, list(nodes), k))
        return nodes[:k]

    kw = dict(sampler=sampler, fraction_train=0.5, min_train_nodes=2, min_available_nodes=1)
    msgs = list(D.FedAvgDefense(**kw).configure_train(4, ArrayRecord(_G), ConfigRecord(), _Grid([9, 3, 7, 5, 1, 2])))
    assert seen[-1] == (4, [1, 2, 3, 5, 7, 9], 3) and len(msgs) == 3
    assert [m.metadata.dst_node_id for m in msgs] == [1, 2, 3] and msgs[0].content["config"]["server-round"] == 4
    D.FedAvgDefense(**kw).configure_train(1, ArrayRecord(_G), ConfigRecord(), _Grid([4, 8]))
    assert seen[-1][2] == 2  # int(2 * 0.5) = 1 < min_train_nodes = 2
    D.FedAvgDefense(clients_per_round=5, **kw).configure_train(1, ArrayRecord(_G), ConfigRecord(), _Grid([4, 8]))
    assert seen[-1][2] == 2  # never more than the connected nodes


def test_foolsgold_without_history_uses_the_features_asked_for():
    """No memory: this round's features are the history -- of the whole update when ``features="all"``.

    Clients 0 and 1 share their output layer but point opposite ways elsewhere: sybils for the
    output-layer features, not for the whole update.
    """
    layout = _fg_layout()
    rng = np.random.default_rng(5)
    upd = rng.normal(size=(3, layout.num_params))
    out = layout.slice_of(2).start
    upd[1, out:] = upd[0, out:]
    upd[0, :out] *= 10.0  # the rest of the update dominates, and points opposite ways for 0 and 1
    upd[1, :out] = -upd[0, :out]
    for features in ("output-layer", "all"):
        agg = foolsgold(upd, np.ones(3), layout, features=features)
        want = foolsgold_weights(foolsgold_features(upd, layout, features))
        np.testing.assert_allclose(agg.info["wv"], want, atol=1e-12)
    assert foolsgold(upd, np.ones(3), layout).info["wv"][:2] == [0.0, 0.0]
    assert foolsgold(upd, np.ones(3), layout, features="all").info["wv"][:2] != [0.0, 0.0]


def test_foolsgold_features_error_names_the_allowed_values():
    with pytest.raises(ValueError, match=r"features must be 'output-layer' or 'all', got 'last'"):
        foolsgold_features(np.zeros((2, _fg_layout().num_params)), _fg_layout(), "last")


def test_foolsgold_weights_of_sybils_only_are_zero_without_a_numpy_warning():
    """Every client a copy of another: all alphas 0; no 0/0 or log(0) on the way (they would flood a run's log)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(foolsgold_weights(np.array([[1.0, 2.0], [2.0, 4.0], [1.0, 2.0]])), 0.0)
        # one honest client among sybils: the sybils' alpha is 0 (log(0) is never taken), the honest one 1
        np.testing.assert_array_equal(foolsgold_weights(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])), [0, 0, 1])


def test_aggregate_train_before_configure_train_says_so():
    with pytest.raises(RuntimeError, match="^aggregate_train called before configure_train$"):
        D.FedAvgDefense().aggregate_train(1, [make_reply(_G, 10, 1)])


def test_the_log_names_each_dropped_client_and_a_round_left_unchanged(server_identity, caplog):
    s = _primed(D.FedAvgDefense(), _G)
    with caplog.at_level("WARNING", logger="fl_poison.strategy"):
        arrays, _ = s.aggregate_train(3, [make_reply([np.full((2, 3), np.nan, np.float32), _G[1]], 10, 2)])
    assert arrays is None
    assert "round 3: dropping client 2: non-finite values (NaN / Inf) in the arrays" in caplog.messages
    assert "round 3: no valid client update; the global model is unchanged" in caplog.messages


def test_the_log_names_the_defense_that_cannot_aggregate(server_identity, caplog):
    s = _primed(D.Krum(num_byzantine=2), _G)
    with caplog.at_level("WARNING", logger="fl_poison.strategy"):
        s.aggregate_train(1, [make_reply(_G, 10, i) for i in range(3)])
    assert any(m.startswith("round 1: krum cannot aggregate 3 update(s): num-byzantine=2") for m in caplog.messages)


def test_a_named_output_layer_is_the_one_the_defense_reads(server_identity):
    """``output_layer="fc1"``: the captured rows are fc1's, although inference would pick fc2 (the last 2-D array)."""
    names = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")
    shapes = ((2, 3), (2,), (4, 2), (4,))
    zero = {n: np.zeros(sh, np.float32) for n, sh in zip(names, shapes)}
    local = {n: np.arange(np.prod(sh), dtype=np.float32).reshape(sh) + 10 * i for i, (n, sh) in
             enumerate(zip(names, shapes))}
    s = _primed(D.FedAvgDefense(capture_updates=True, output_layer="fc1"), zero)
    s.aggregate_train(1, [make_reply(local, 10, 1)])
    np.testing.assert_array_equal(s.last_report.output_rows, [[[0, 1, 2, 10], [3, 4, 5, 11]]])


def test_the_report_carries_the_defense_info(server_identity):
    s = _primed(D.Krum(num_byzantine=0), _G)
    near = [np.full((2, 3), 0.1, np.float32), np.zeros(2, np.float32)]
    s.aggregate_train(1, [make_reply(near, 10, 1), make_reply(near, 10, 2), make_reply(_G, 10, 3)])
    u = np.stack([np.r_[np.full(6, 0.1, np.float32), np.zeros(2, np.float32)]] * 2 + [np.zeros(8, np.float32)])
    assert s.last_report.info == R.krum(u, np.full(3, 10.0), num_byzantine=0).info


def test_a_non_finite_aggregate_leaves_the_model_unchanged_and_says_so(server_identity, caplog):
    """A rule (here a broken plug-in) that returns NaN must not reach the global model."""
    from strategies.aggregation import Aggregation

    class NaNRule(D.FedAvgDefense):
        def aggregate_updates(self, updates, weights, layout, clients, server_round):
            agg = super().aggregate_updates(updates, weights, layout, clients, server_round)
            return Aggregation(np.full_like(agg.update, np.nan), agg.kept, agg.weights, {"rule": "nan"})

    s = _primed(NaNRule(), _G)
    with caplog.at_level("WARNING", logger="fl_poison.strategy"):
        arrays, m = s.aggregate_train(2, [make_reply(_G, 10, 1)])
    assert arrays is None and m["updated"] == 0 and m["kept"] == [1]
    assert s.last_report.info == {"rule": "nan", "non_finite_aggregate": True}
    assert "round 2: the aggregate is not finite; the global model is unchanged" in caplog.messages


def test_a_new_strategy_has_no_report_yet():
    assert D.FedAvgDefense().last_report is None
