"""Bulyan (strategies/rules/robust.py, strategies/defenses/bulyan.py): loop reference, hand-worked cases, ties, budget."""

from __future__ import annotations

from robust_cases import outlier_rows, ref_krum_scores

import numpy as np
import pytest
from strategies.rules.robust import bulyan, krum_scores
from strategies.rules import robust as R
from fl_poison.config import resolve
from config_errors import config_error


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


@pytest.mark.parametrize(("k", "f"), [(7, 1), (8, 1), (11, 2), (12, 2), (5, 0)])
def test_bulyan_matches_loop_reference(k, f):
    rng = np.random.default_rng(k + f)
    u = outlier_rows(rng, k, 25, outliers=f)
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
    u = outlier_rows(rng, 11, 20, outliers=2)
    agg = bulyan(u, np.ones(11), num_byzantine=2)
    assert not agg.kept[:2].any() and agg.kept.sum() == 7


def _integer_rows(seed: int, k: int = 20, p: int = 6) -> np.ndarray:
    """Updates with many exactly tied values and distances (small integers)."""
    return np.random.default_rng(seed).integers(-3, 4, size=(k, p)).astype(float)


# K=7, f=1 points of the hand-worked example of test_bulyan_hand_worked_1d: iterated selection [2, 4, 1, 5, 0]
_BULYAN_POINTS = np.array([[1.0], [2.0], [7.0], [8.0], [13.0], [15.0], [20.0]])


@pytest.mark.parametrize("seed", [0, 2])
def test_bulyan_ties_follow_the_loop_reference(seed):
    """With tied scores / distances the lower index (selection order) wins, as in the stable loop reference."""
    u = _integer_rows(seed)
    expected, chosen = ref_bulyan(u, 2)
    agg = R.bulyan(u, np.ones(20), num_byzantine=2, selection="flower")
    assert agg.info["selected"] == [int(i) for i in chosen]
    np.testing.assert_allclose(agg.update, expected, atol=1e-15)


@pytest.mark.parametrize(("k", "f", "need"), [(6, 1, 7), (10, 2, 11)])
def test_bulyan_message_states_the_requirement(k, f, need):
    with pytest.raises(ValueError) as err:
        R.bulyan(np.zeros((k, 3)), np.ones(k), num_byzantine=f)
    assert k < need == 4 * f + 3
    assert str(err.value) == (
        f"num-byzantine={f} is too large for K={k} clients: Bulyan needs K >= 4 * num-byzantine + 3, "
        f"i.e. num-byzantine <= {(k - 3) // 4}"
    )


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


def test_bulyan_budget_error_names_the_rule_and_the_largest_f():
    # 11 clients: 4f + 3 <= 11 -> f <= 2; f = 3 must be refused with that hint
    resolve({"defense": "bulyan", "num-clients": 11, "clients-per-round": 11, "num-byzantine": 2})
    e = config_error(defense="bulyan", **{"num-clients": 11, "clients-per-round": 11, "num-byzantine": 3})
    assert (e.key, e.value) == ("num-byzantine", 3)
    assert e.allowed == "Bulyan needs clients-per-round >= 4 * num-byzantine + 3; with 11 clients f <= 2"
