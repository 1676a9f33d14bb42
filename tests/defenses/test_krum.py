"""Krum and multi-Krum (strategies/rules/robust.py, strategies/defenses/krum.py): brute force, budgets, distances, selection."""

from __future__ import annotations

from robust_cases import federation_case, flower_aggregate, outlier_rows, ref_krum_scores

import numpy as np
import pytest
from flwr.serverapp.strategy import MultiKrum
from strategies.rules.robust import krum, krum_scores, multi_krum
from strategies.rules import robust as R
from fl_poison.config import resolve
from strategies import defenses as D
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from config_errors import config_error
from defense_helpers import built
from robust_cases import clear_selection as _clear_selection


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
    u = outlier_rows(rng, k, 30, outliers=f)
    np.testing.assert_allclose(krum_scores(u, f), ref_krum_scores(u, f), rtol=1e-9)


def test_multi_krum_default_selects_k_minus_f():
    rng = np.random.default_rng(4)
    u = outlier_rows(rng, 9, 10, outliers=2)
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


def test_krum_weighting_is_by_examples_like_flower():
    # MultiKrum with all clients selected is FedAvg: Flower weights by num-examples, so must we
    _, locals_, counts, g_flat, u = federation_case(3, 5, 0)
    counts = [1, 1, 1, 1, 100]
    expected = flower_aggregate(MultiKrum(num_malicious_nodes=0, num_nodes_to_select=5), locals_, counts)
    got = g_flat + krum(u, np.asarray(counts, float), num_selected=5).update
    np.testing.assert_allclose(got, expected, atol=1e-10)
    uniform = g_flat + u.mean(axis=0)
    assert not np.allclose(expected, uniform, atol=1e-6)


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


def test_lowest_is_stable_on_tied_krum_scores():
    """Multi-Krum ties go to the lower index, in index order (argsort kind='stable', not quicksort)."""
    # six points at 0 and four at 5, interleaved; f = 0, n = 8 neighbours:
    # a 0-point sums 5 zeros + 3 * 25 = 75, a 5-point 3 zeros + 5 * 25 = 125
    u = np.array([0, 5, 0, 5, 0, 5, 0, 5, 0, 0], dtype=float)[:, None]
    np.testing.assert_allclose(R.krum_scores(u, 0), np.where(u[:, 0] == 0, 75.0, 125.0))
    agg = R.krum(u, np.ones(10), num_selected=5)
    assert agg.info["selected"] == [0, 2, 4, 6, 8]


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


def krum_line():
    """Five clients on a line (first coordinate): 0, 0.1, 3, 4, 5; f = 1, so n = K - f - 2 = 2.

    squared (paper): s = the 2 smallest squared distances to the others: 9.01, 8.42, 5, 2, 5 -> client 3.
    lfighter-code: plain distances, the zero self-distance counted: s = 0 + nearest other
    = 0.1, 0.1, 1, 1, 1 -> client 0 (tie with 1: the lower index).
    """
    upd = np.zeros((5, 3))
    upd[:, 0] = [0.0, 0.1, 3.0, 4.0, 5.0]
    return upd


def test_multi_krum_keep_may_equal_but_not_exceed_clients_per_round():
    assert built(defense="multi-krum", **{"multi-krum-keep": 11}).keep == 11
    e = config_error(defense="multi-krum", **{"num-clients": 11, "clients-per-round": 11, "multi-krum-keep": 12})
    assert (e.key, e.value) == ("multi-krum-keep", 12)
    assert "at most clients-per-round (11)" in str(e)


def test_multi_krum_keep_zero_is_refused():
    """0 is no count of kept updates: a check of ``v >= -1`` would let it through to mean -1 silently."""
    e = config_error(defense="multi-krum", **{"multi-krum-keep": 0})
    assert e.key == "multi-krum-keep"


def test_krum_budget_error_names_the_rule_and_the_largest_f():
    # Krum needs K - f - 2 >= 1: with 6 clients f <= 3
    resolve({"defense": "krum", "num-clients": 6, "clients-per-round": 6, "num-byzantine": 3})
    e = config_error(defense="krum", **{"num-clients": 6, "clients-per-round": 6, "num-byzantine": 4})
    assert (e.key, e.value) == ("num-byzantine", 4)
    assert e.allowed == "Krum needs clients-per-round - num-byzantine - 2 >= 1; with 6 clients f <= 3"


@pytest.mark.parametrize("cls", [D.Krum, D.MultiKrum])
def test_krum_strategies_use_their_distance(cls):
    extra = {"keep": 1} if cls is D.MultiKrum else {}
    for distance, chosen in (("squared", 3), ("lfighter-code", 0)):
        s = cls(num_byzantine=1, krum_distance=distance, **extra)
        agg = s.aggregate_updates(krum_line(), np.ones(5), None, list(range(5)), 1)
        assert np.flatnonzero(agg.kept).tolist() == [chosen], distance


def test_multi_krum_keeps_k_minus_f_by_default_or_exactly_keep():
    upd = np.random.default_rng(3).normal(size=(9, 4))
    def kept(**kw):
        return int(D.MultiKrum(**kw).aggregate_updates(upd, np.ones(9), None, list(range(9)), 1).kept.sum())
    assert kept(num_byzantine=2) == 7  # paper: m = K - f
    assert kept(num_byzantine=2, keep=1) == 1  # keep = 1 is Krum, not "unset"
    assert kept(num_byzantine=2, keep=3) == 3


SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


def _row_matrices(seed: int, k: int, p: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(k, p))


shapes = st.tuples(st.integers(0, 2**31), st.integers(3, 12), st.integers(1, 6), st.integers(0, 2))


@SETTINGS
@given(shape=shapes)
def test_krum_selects_the_lowest_brute_force_score(shape):
    seed, k, p, f = shape
    assume(k - f - 2 >= 1)
    u = _row_matrices(seed, k, p)
    n = k - f - 2
    scores = [sum(sorted(float(((u[i] - u[j]) ** 2).sum()) for j in range(k) if j != i)[:n]) for i in range(k)]
    agg = krum(u, np.ones(k), num_byzantine=f)
    assume(_clear_selection(agg))
    assert np.flatnonzero(agg.kept).tolist() == [int(np.argmin(scores))]
    assert np.allclose(agg.update, u[int(np.argmin(scores))])
    m = multi_krum(u, np.ones(k), num_byzantine=f)
    assume(_clear_selection(m))
    assert sorted(np.flatnonzero(m.kept).tolist()) == sorted(np.argsort(scores)[: max(1, k - f)].tolist())
