"""FLDetector: the L-BFGS product, the one-dimensional clustering, a hand-worked round and simulated federations."""

from __future__ import annotations

import numpy as np
import pytest

from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve
from strategies.rules.fldetector import History, fldetector, gap_says_two, larger_cluster, lbfgs_hvp, within_ss


def _spd(seed: int, p: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(p, p))
    return a @ a.T + p * np.eye(p)


# --------------------------------------------------------------------------- L-BFGS


def test_lbfgs_equals_the_hessian_product_on_a_quadratic_along_conjugate_steps():
    # f(w) = 1/2 w^T H w: gradient differences are y = H s exactly; conjugate gradient's steps are H-conjugate,
    # so every BFGS update keeps the earlier secant equations and after P steps the matrix is H itself
    p = 5
    h = _spd(0, p)
    w, r = np.ones(p), -h @ np.ones(p)
    d, steps = r.copy(), []
    for _ in range(p):
        alpha = (r @ r) / (d @ h @ d)
        steps.append(alpha * d)
        w = w + alpha * d
        r_new = r - alpha * h @ d
        d, r = r_new + (r_new @ r_new) / (r @ r) * d, r_new
    s = np.array(steps)
    v = np.random.default_rng(1).normal(size=p)
    np.testing.assert_allclose(lbfgs_hvp(s, s @ h, v), h @ v, rtol=1e-8, atol=1e-8)


def test_lbfgs_meets_the_last_secant_equation_and_flips_with_the_pairs():
    rng = np.random.default_rng(2)
    h = _spd(3, 6)
    s = rng.normal(size=(3, 6))
    y = s @ h
    np.testing.assert_allclose(lbfgs_hvp(s, y, s[-1]), y[-1], rtol=1e-8)
    v = rng.normal(size=6)
    # updates are minus a step times gradients: BFGS on negated pairs is the negated matrix
    np.testing.assert_allclose(lbfgs_hvp(s, -y, v), -lbfgs_hvp(s, y, v), rtol=1e-10)


def test_lbfgs_with_one_pair_in_one_dimension_is_the_secant_slope():
    np.testing.assert_allclose(lbfgs_hvp(np.array([[2.0]]), np.array([[-1.0]]), np.array([3.0])), [-1.5])


# --------------------------------------------------------------------------- clustering


def test_two_means_in_one_dimension_by_hand():
    # 0, 1, 3: W1 = (16 + 1 + 25) / 9; the best split is {0, 1} | {3} with W2 = 1/2
    w1, w2, cut = within_ss(np.array([3.0, 0.0, 1.0]))
    assert w1 == pytest.approx(42 / 9) and w2 == pytest.approx(0.5) and cut == 2
    np.testing.assert_array_equal(larger_cluster(np.array([0.1, 0.9, 0.12, 0.8, 0.11])),
                                  [False, True, False, True, False])


def test_gap_statistic_finds_two_groups_and_not_one():
    rng = np.random.default_rng(0)
    two = np.concatenate([rng.normal(0.05, 0.002, 16), rng.normal(0.2, 0.002, 4)])
    assert gap_says_two(two, np.random.default_rng(1))[0]
    assert gap_says_two(two, np.random.default_rng(1), gap="authors")[0]
    one = rng.normal(0.05, 0.002, 20)
    assert not gap_says_two(one, np.random.default_rng(1))[0]
    assert not gap_says_two(np.full(5, 0.2), np.random.default_rng(1))[0]


# --------------------------------------------------------------------------- one round by hand


def test_one_round_by_hand():
    # one parameter; the last pair s = 1, y = -1/2 gives B = -1/2; v = w_t - w_{t-1} = 2, so B v = -1.
    # Previous updates 1, 2, 4 predict 0, 1, 3; received 0, 1, 1: d = 0, 0, 2, normalised 0, 0, 1.
    # Window 1: the scores take two values, so the gap statistic says two clusters and client 12 is removed;
    # the median of the others (0 and 1) is 1/2.
    hist = History(round=4, model=np.array([1.0]), aggregate=np.array([0.0]), s_pairs=[np.array([1.0])],
                   y_pairs=[np.array([-0.5])], last={10: np.array([1.0]), 11: np.array([2.0]), 12: np.array([4.0])})
    agg, nxt = fldetector(np.array([[0.0], [1.0], [1.0]]), np.ones(3), [10, 11, 12], np.array([3.0]), hist, 5,
                          window=1)
    assert agg.info["scores"] == pytest.approx([0.0, 0.0, 1.0])
    np.testing.assert_array_equal(agg.kept, [True, True, False])
    np.testing.assert_allclose(agg.update, [0.5])
    assert nxt.removed == {12} and nxt.detected_round == 5
    # the next pair: s = 3 - 1, y = 0.5 - 0
    np.testing.assert_allclose(nxt.s_pairs[-1], [2.0])
    np.testing.assert_allclose(nxt.y_pairs[-1], [0.5])


def _brute_within(v: np.ndarray, k: int) -> float:
    """Within-cluster sum of squares of the best k-means partition, over every partition (k = 1 or 2)."""
    if k == 1:
        return float(((v - v.mean()) ** 2).sum())
    best = np.inf
    for bits in range(1, 2 ** (len(v) - 1)):  # every split into two non-empty groups, each once
        side = np.array([(bits >> i) & 1 for i in range(len(v))], dtype=bool)
        best = min(best, sum(float(((g - g.mean()) ** 2).sum()) for g in (v[side], v[~side])))
    return best


@pytest.mark.parametrize("gap", ["tibshirani", "authors"])
def test_the_gap_statistics_numbers_equal_a_brute_force_computation(gap):
    # Tibshirani et al.: Gap(k) = E*[log W_k] - log W_k with E* the mean over B = 10 uniform reference sets
    # (the authors' code: the log of the mean), s_2 = sqrt(1 + 1/B) * sd(log W*_2); two clusters iff
    # Gap(1) < Gap(2) - s_2. Scores min-max scaled to [0, 1]; references drawn in order from the same generator.
    x = np.array([0.10, 0.12, 0.11, 0.50, 0.55, 0.13, 0.115])
    says, info = gap_says_two(x, np.random.default_rng(7), gap)
    xs = (x - x.min()) / (x.max() - x.min())
    rng = np.random.default_rng(7)
    refs = np.array([[_brute_within(r, 1), _brute_within(r, 2)] for r in (rng.uniform(0, 1, len(x)) for _ in range(10))])
    expected = np.log(refs).mean(axis=0) if gap == "tibshirani" else np.log(refs.mean(axis=0))
    gaps = expected - np.log([_brute_within(xs, 1), _brute_within(xs, 2)])
    sd2 = np.sqrt(1.1) * np.log(refs[:, 1]).std()
    np.testing.assert_allclose(info["gap"], gaps, rtol=1e-10)
    assert info["gap_sd2"] == pytest.approx(sd2, rel=1e-10)
    assert says == bool(gaps[0] < gaps[1] - sd2) and says  # two groups: 0.10-0.13 and 0.50-0.55


def _round_of_three(**kw):
    """The hand-worked round above (B v = -1; previous updates 1, 2, 4) with the received updates in ``kw``."""
    hist = History(round=4, model=np.array([1.0]), aggregate=np.array([0.0]), s_pairs=[np.array([1.0])],
                   y_pairs=[np.array([-0.5])], last={10: np.array([1.0]), 11: np.array([2.0]), 12: np.array([4.0])},
                   **kw.pop("history", {}))
    u = kw.pop("updates", np.array([[0.0], [1.0], [1.0]]))
    return fldetector(u, kw.pop("weights", np.ones(3)), [10, 11, 12], np.array([3.0]), hist, 5, **kw)


def test_the_mean_rule_weights_the_kept_clients_by_their_shares_and_gives_the_removed_none():
    agg, _ = _round_of_three(window=1, rule="mean", weights=np.array([1.0, 3.0, 2.0]))
    np.testing.assert_array_equal(agg.kept, [True, True, False])
    np.testing.assert_allclose(agg.weights, [0.25, 0.75, 0.0])
    np.testing.assert_allclose(agg.update, [0.75])  # (1 * 0 + 3 * 1) / 4
    med, _ = _round_of_three(window=1)
    assert np.isnan(med.weights).all()


def test_predictions_that_all_hit_share_the_distance_equally_and_a_rounding_miss_is_none():
    # predictions 0, 1, 3 received exactly (the third one off by 1e-7 of its norm: float32 rounding): every d = 0,
    # so each normalised distance is 1/3; equal scores, one cluster, nobody removed
    agg, nxt = _round_of_three(window=1, updates=np.array([[0.0], [1.0], [3.0 + 3e-7]]))
    assert nxt.distances == {10: [pytest.approx(1 / 3)], 11: [pytest.approx(1 / 3)], 12: [pytest.approx(1 / 3)]}
    assert agg.kept.all() and nxt.detected_round is None
    # a miss of 1e-5 of the norm is no rounding: it is the whole distance
    _, far = _round_of_three(window=1, updates=np.array([[0.0], [1.0], [3.0 + 3e-5]]))
    assert far.distances[12] == [pytest.approx(1.0)] and far.distances[10] == [0.0]


def test_windows_keep_the_last_n_distances_and_pairs():
    _, hist = _federation(9, 3)
    assert len(hist.s_pairs) == len(hist.y_pairs) == 3
    assert all(len(d) == 3 for d in hist.distances.values()) and len(hist.distances) == 10
    # distances exist from round 3 on: 7 rounds, normalised each round, so each round's distances sum to one
    _, short = _federation(3, 10)
    assert all(len(d) == 1 for d in short.distances.values())
    assert sum(d[0] for d in short.distances.values()) == pytest.approx(1.0)


def test_too_few_scored_clients_wait_and_a_round_of_removed_clients_keeps_everyone():
    hist = dict(distances={10: [0.1]}, removed=frozenset())
    agg, _ = _round_of_three(window=2, history=hist)
    assert "1 client(s) with a full window of 2: too few to judge" in agg.info["waiting"]
    gone = dict(removed=frozenset({10, 11, 12}), detected_round=3)
    agg, nxt = _round_of_three(window=1, history=gone)
    assert agg.kept.all() and "all kept this round" in agg.info["fallback"]
    assert nxt.removed == {10, 11, 12} and nxt.detected_round == 3
    np.testing.assert_allclose(agg.update, [1.0])  # the median of 0, 1, 1


# --------------------------------------------------------------------------- simulated federations


def _federation(rounds: int, window: int, attacker=None, k: int = 10, p: int = 6, seed: int = 0,
                noise: float = 1e-3):
    """Clients on quadratics 1/2 (w - c_i)^T A (w - c_i), one noisy gradient step each round; returns the rounds'
    aggregations. ``attacker(u, rng)`` rewrites client 0's update."""
    rng = np.random.default_rng(seed)
    a = np.diag(np.linspace(0.5, 2.0, p))
    centres = rng.normal(size=(k, p)) * 0.3
    w, hist, out = np.full(p, 3.0), History(), []
    for t in range(1, rounds + 1):
        u = -0.1 * (w - centres) @ a + rng.normal(scale=noise, size=(k, p))
        if attacker is not None:
            u[0] = attacker(u[0], rng)
        agg, hist = fldetector(u, np.ones(k), list(range(k)), w, hist, t, window=window, rule="mean",
                               rng=np.random.default_rng([0, t]))
        out.append(agg)
        w = w + agg.update
    return out, hist


def test_a_planted_attacker_is_flagged_once_its_window_is_full():
    # distances start in round 3 (one L-BFGS pair); with window 4 the first scores exist in round 6
    rounds, hist = _federation(12, 4, attacker=lambda u, rng: u + rng.normal(scale=0.5, size=u.shape))
    assert all(r.kept.all() for r in rounds[:5])
    assert hist.detected_round == 6 and hist.removed == {0}
    assert all(list(r.kept) == [False] + [True] * 9 for r in rounds[5:])


def test_scaled_updates_are_inconsistent_too():
    rounds, hist = _federation(10, 3, attacker=lambda u, rng: 10 * u)
    assert hist.removed == {0}


def test_no_flags_when_everyone_is_honest_and_equally_consistent():
    # noise-free quadratics of one curvature: every honest update moves by the same -0.1 A dw, so every
    # prediction misses by the same vector, the scores are equal and the gap statistic sees one cluster
    rounds, hist = _federation(30, 5, noise=0.0)
    assert hist.detected_round is None and hist.removed == frozenset()
    assert all(r.kept.all() for r in rounds)
    assert all("one cluster" in r.info.get("note", "") for r in rounds[7:])


def test_gap_statistic_rarely_splits_unimodal_scores():
    # one Gaussian group of 50 honest scores: one cluster in (nearly) every draw. The test runs every round, so
    # over a long run a chance split of honest scores becomes likelier (the paper's algorithm does the same).
    rng = np.random.default_rng(5)
    splits = sum(gap_says_two(rng.normal(0.02, 0.001, 50), np.random.default_rng(i))[0] for i in range(100))
    assert splits <= 2


def test_degenerate_rounds():
    # a single round, or every update equal: nothing to compare, everyone kept, and said so
    agg, hist = fldetector(np.ones((4, 3)), np.ones(4), [0, 1, 2, 3], np.zeros(3), History(), 1, window=1)
    assert agg.kept.all() and "no L-BFGS pair" in agg.info["waiting"]
    w = np.zeros(3)
    for t in range(2, 6):
        w = w + agg.update
        agg, hist = fldetector(np.ones((4, 3)), np.ones(4), [0, 1, 2, 3], w, hist, t, window=1)
        assert agg.kept.all()
    assert hist.detected_round is None
    # a skipped round (no valid reply) breaks the chain of consecutive rounds: no distances that round
    agg, _ = fldetector(np.ones((4, 3)), np.ones(4), [0, 1, 2, 3], w, hist, 8, window=1)
    assert "skipped" in agg.info["waiting"]


def test_strategy_keeps_its_history_and_reads_the_global_model():
    from flwr.app import ArrayRecord

    from strategies.defenses.fldetector import FLDetector

    s = FLDetector(window=2, rule="mean")
    w = np.zeros(2, dtype=np.float32)
    for t in range(1, 7):
        s._global = ArrayRecord([w])
        u = np.stack([-0.1 * (w - c) for c in np.linspace(-1, 1, 6)[:, None] * np.ones(2)]).astype(np.float32)
        u[5] = np.random.default_rng(t).normal(size=2)
        agg = s.aggregate_updates(u, np.ones(6), None, list(range(6)), t)
        w = (w + agg.update).astype(np.float32)
    assert s.history.removed == {5}


# --------------------------------------------------------------------------- bad input


def test_bad_keys_name_the_key():
    with pytest.raises(ConfigError) as err:
        resolve({"defense": "fldetector", "fldetector-window": 0})
    assert err.value.key == "fldetector-window"
    with pytest.raises(ConfigError) as err:
        resolve({"defense": "fldetector", "num-clients": 10, "clients-per-round": 5})
    assert err.value.key == "clients-per-round" and "num-clients" in str(err.value)
    with pytest.raises(ConfigError) as err:
        resolve({"defense": "fldetector", "num-clients": 10, "clients-per-round": 10, "pre-aggregation": "nnm"})
    assert err.value.key == "pre-aggregation"


@pytest.mark.parametrize("sets,key", [(["fldetector-window=0"], "fldetector-window"),
                                      (["num-clients=10", "clients-per-round=5"], "clients-per-round")])
def test_cli_refuses_before_training(sets, key, capsys, monkeypatch):
    import fl_poison.data.datasets as ds

    def boom(*a, **k):
        raise AssertionError("data must not be loaded for an invalid config")

    monkeypatch.setattr(ds, "load_dataset", boom)
    args = ["run", "--set", "dataset=mnist", "--set", "defense=fldetector"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1


def test_the_round_record_names_scores_removals_and_reasons():
    agg, nxt = _round_of_three(window=1)
    assert agg.info["note"] == "the scores take two values: two clusters"
    assert agg.info["removed"] == [12] and agg.info["detected_round"] == 5
    # the next round: detection is done, client 12 stays out and gets no distance, the others score
    agg2, _ = fldetector(np.array([[0.0], [1.0], [9.0]]), np.ones(3), [10, 11, 12], np.array([3.5]), nxt, 6, window=2)
    assert agg2.info["removed"] == [12] and agg2.info["detected_round"] == 5
    scores = agg2.info["scores"]
    assert scores[2] == -1.0 and min(scores[:2]) >= 0  # a removed client has no score: -1 stands for "none"
    first, _ = fldetector(np.ones((3, 1)), np.ones(3), [10, 11, 12], np.zeros(1), History(), 1, window=1)
    assert first.info["waiting"] == "no L-BFGS pair yet (or a round was skipped): no distances this round"
    assert first.info["scores"] == [-1.0] * 3 and first.info["removed"] == [] and first.info["detected_round"] is None
    with pytest.raises(ValueError, match="fldetector-rule must be one of"):
        fldetector(np.ones((3, 1)), np.ones(3), [0, 1, 2], np.zeros(1), History(), 1, rule="mode")
    with pytest.raises(ValueError, match="fldetector-gap must be one of"):
        fldetector(np.ones((3, 1)), np.ones(3), [0, 1, 2], np.zeros(1), History(), 1, gap="elbow")
    with pytest.raises(ValueError, match="fldetector-window must be an integer >= 1, got 0"):
        fldetector(np.ones((3, 1)), np.ones(3), [0, 1, 2], np.zeros(1), History(), 1, window=0)
    # a float32 global model is kept in float64 (the L-BFGS pairs are differences of models)
    _, h = fldetector(np.ones((3, 1)), np.ones(3), [0, 1, 2], np.zeros(1, np.float32), History(), 1, window=1)
    assert h.model.dtype == np.float64
