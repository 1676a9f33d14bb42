"""What the robust rules of strategies/rules/robust.py share: input checks, column chunking, pairwise distances, degenerate inputs, parity with Flower's strategies."""

from __future__ import annotations

from robust_cases import federation_case, flower_aggregate, outlier_rows

import numpy as np
import pytest
from flwr.serverapp.strategy import Bulyan, FedMedian, FedTrimmedAvg, Krum, MultiKrum
from strategies.rules.fedavg_math import fedavg
from strategies.rules.robust import bulyan, krum, median, multi_krum, pairwise_sq_distances, repeated_median, trimmed_mean
from strategies.rules import robust as R
import tracemalloc
from strategies.rules import robust
from strategies.base import _stack_updates




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
    # the mutation run, which repeat them for every Bulyan mutant, keep bulyan-f0 and test_strategy_base's Bulyan).
    pytest.param(("bulyan-11", lambda: Bulyan(num_malicious_nodes=2),
                  lambda u, w: bulyan(u, w, num_byzantine=2, selection="flower"), 11, 2), marks=pytest.mark.slow),
    pytest.param(("bulyan-12", lambda: Bulyan(num_malicious_nodes=2),
                  lambda u, w: bulyan(u, w, num_byzantine=2, selection="flower"), 12, 2), marks=pytest.mark.slow),
    ("bulyan-f0", lambda: Bulyan(num_malicious_nodes=0), lambda u, w: bulyan(u, w, num_byzantine=0), 4, 0),
]


CASE_IDS = [c.values[0][0] if hasattr(c, "values") else c[0] for c in CASES]


def test_pairwise_distances_match_brute_force_even_far_from_origin():
    rng = np.random.default_rng(1)
    u = outlier_rows(rng, 6, 50) + 1e3  # a large common offset must not cost precision
    brute = np.array([[np.sum((a - b) ** 2) for b in u] for a in u])
    d = pairwise_sq_distances(u)
    np.testing.assert_allclose(d, brute, rtol=1e-9, atol=1e-12)
    assert np.all(np.diag(d) == 0) and np.array_equal(d, d.T)


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


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_flower_strategy(case, seed):
    _, make_strategy, ours, k, outliers = case
    _, locals_, counts, g_flat, u = federation_case(seed, k, outliers)
    expected = flower_aggregate(make_strategy(), locals_, counts)
    got = g_flat + ours(u, np.asarray(counts, dtype=float)).update
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_flower_strategy_float32_models(case):
    _, make_strategy, ours, k, outliers = case
    _, locals_, counts, g_flat, u = federation_case(7, k, outliers, dtype=np.float32)
    expected = flower_aggregate(make_strategy(), locals_, counts)
    got = g_flat + ours(u, np.asarray(counts, dtype=float)).update
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_pairwise_distances_gram_equals_loop_on_random_rows():
    rng = np.random.default_rng(3)
    u = rng.normal(size=(9, 40))
    brute = ((u[:, None, :] - u[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(pairwise_sq_distances(u), brute, rtol=1e-10, atol=1e-12)
    same = np.tile(u[:1], (3, 1))
    np.testing.assert_array_equal(pairwise_sq_distances(same), np.zeros((3, 3)))


def test_pure_defaults_are_the_run_key_defaults():
    import inspect

    from fl_poison.config import SCHEMA
    from strategies.rules.norm_clipping import ndc

    default = {k.name: k.default for k in SCHEMA}
    assert inspect.signature(trimmed_mean).parameters["beta"].default == default["trim-beta"]
    assert inspect.signature(ndc).parameters["mode"].default == default["ndc-mode"]
    assert inspect.signature(ndc).parameters["bound"].default == default["ndc-bound"]


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (3, 3), (2.0, 2), (np.int64(4), 4)])
def test_check_num_byzantine_accepts_non_negative_integers(value, expected):
    got = R.check_num_byzantine(value)
    assert got == expected and type(got) is int


@pytest.mark.parametrize("value", [-1, 1.5, True, None, "2"])
def test_check_num_byzantine_message_names_key_and_rule(value):
    """A bad ``num-byzantine`` is reported with the key, the rule and the value given."""
    with pytest.raises(ValueError) as err:
        R.check_num_byzantine(value)
    assert str(err.value) == f"num-byzantine must be an integer >= 0, got {value!r}"


@pytest.mark.parametrize(("value", "expected"), [(1, 1), (5, 5), (2.0, 2)])
def test_check_num_selected_accepts(value, expected):
    got = R._check_num_selected(value)
    assert got == expected and type(got) is int


@pytest.mark.parametrize("value", [0, -2, 1.5, True, None])
def test_check_num_selected_message(value):
    with pytest.raises(ValueError) as err:
        R._check_num_selected(value)
    assert str(err.value) == f"num-selected must be an integer >= 1, got {value!r}"


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.49])
def test_check_beta_accepts_the_half_open_range(beta):
    assert R.check_beta(beta) == beta


@pytest.mark.parametrize(
    ("beta", "text"),
    [
        ("x", "beta (fraction trimmed from each end) must be a number in [0, 0.5), got 'x'"),
        (None, "beta (fraction trimmed from each end) must be a number in [0, 0.5), got None"),
        (0.5, "beta (fraction trimmed from each end) must be a number in [0, 0.5), got 0.5"),
        (-0.1, "beta (fraction trimmed from each end) must be a number in [0, 0.5), got -0.1"),
        (True, "beta (fraction trimmed from each end) must be a number in [0, 0.5), got True"),
    ],
)
def test_check_beta_messages(beta, text):
    assert text.startswith(R.TRIM_BETA_RANGE.refusal("beta (fraction trimmed from each end)", beta))
    with pytest.raises(ValueError) as err:
        R.check_beta(beta)
    assert str(err.value) == text


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


def test_pairwise_distances_are_float64_even_for_float32_rows():
    """A float32 input is converted before the Gram product (float32 products would round at ~1e-7)."""
    u32 = np.random.default_rng(7).normal(size=(4, 50)).astype(np.float32)
    u64 = u32.astype(np.float64)
    brute = ((u64[:, None, :] - u64[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(R.pairwise_sq_distances(u32), brute, rtol=1e-12)


def _updates(k=9, p=5003, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((k, p)) * rng.uniform(1e-3, 1, (k, 1))).astype(np.float32)


def test_stack_is_float32_and_each_difference_rounded_once():
    rng = np.random.default_rng(1)
    g_arrays = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    local = [[a + rng.standard_normal(a.shape).astype(np.float32) * 1e-3 for a in g_arrays] for _ in range(4)]
    g = np.concatenate([a.reshape(-1).astype(np.float64) for a in g_arrays])
    buffers = np.zeros(17, dtype=bool)
    buffers[-2:] = True  # the last two columns play BatchNorm buffers: kept apart, in float64
    u, b = _stack_updates(local, g, buffers)
    exact = np.stack([np.concatenate([a.reshape(-1).astype(np.float64) for a in row]) for row in local]) - g
    assert u.dtype == np.float32 and u.shape == (4, 15) and b.dtype == np.float64 and b.shape == (4, 2)
    np.testing.assert_array_equal(u, exact[:, :15].astype(np.float32))
    np.testing.assert_array_equal(b, exact[:, 15:])


@pytest.mark.parametrize("rule,kwargs", [
    (robust.median, {}), (robust.trimmed_mean, {"beta": 0.2}),
    (robust.repeated_median, {}), (robust.repeated_median, {"reweight": True}),
])
def test_float32_input_equals_the_float64_reference(rule, kwargs):
    u32 = _updates()
    w = np.ones(u32.shape[0])
    got = rule(u32, w, **kwargs)
    want = rule(u32.astype(np.float64), w, **kwargs)
    assert got.update.dtype == np.float64
    np.testing.assert_array_equal(got.update, want.update)  # same float64 math, chunk by chunk
    np.testing.assert_array_equal(got.weights, want.weights)


def test_chunking_does_not_change_results_and_hand_median():
    u = _updates(k=6, p=1000)
    small = robust._columnwise(u, lambda b: np.median(b, axis=0), 24, budget=6 * 24 * 7)  # 7 columns per chunk
    np.testing.assert_array_equal(small, np.median(u.astype(np.float64), axis=0))
    r = robust.repeated_median(u, np.ones(6), reweight=True, max_chunk_bytes=10_000)
    ref = robust.repeated_median(u, np.ones(6), reweight=True)
    np.testing.assert_allclose(r.update, ref.update, rtol=1e-12, atol=1e-15)
    assert robust.median(np.array([[1.0], [5.0], [2.0], [9.0]], np.float32), np.ones(4)).update[0] == 3.5


@pytest.mark.parametrize("rule", [robust.median, robust.trimmed_mean, robust.repeated_median])
def test_peak_memory_is_a_chunk_not_a_float64_copy(rule, monkeypatch):
    monkeypatch.setattr(robust, "DEFAULT_CHUNK_BYTES", 2**20)
    u = _updates(k=20, p=200_000)  # 16 MB float32; a float64 copy would be 32 MB
    tracemalloc.start()
    got = rule(u, np.ones(20))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # ~2 chunks of 1 MiB + the float64 result (1.6 MB): far below one float64 copy
    assert peak < 2 * 2**20 + 2 * u.shape[1] * 8 + 2**20 < u.nbytes
    np.testing.assert_array_equal(got.update, rule(u.astype(np.float64), np.ones(20)).update)


def test_input_checks_still_apply():
    with pytest.raises(ValueError, match="rows"):
        robust.median(np.zeros((0, 3), np.float32), np.zeros(0))
    with pytest.raises(ValueError, match="weights has"):
        robust.trimmed_mean(np.zeros((2, 3), np.float32), np.ones(3))
    assert robust.median(np.arange(4, dtype=np.int64), np.ones(1)).update.tolist() == [0, 1, 2, 3]
