"""FoolsGold: hand-worked weights, pardoning, and a loop re-implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fl_poison.updates import make_layout
from strategies.rules.foolsgold import foolsgold, foolsgold_features, foolsgold_weights, pardoned_similarity
from strategies import defenses as D
from test_lfighter import layout_of
from fl_poison.config import resolve
from fl_poison.updates import infer_layout
from strategies.rules import foolsgold as fg
from strategies.registry import build_strategy

LOGIT_099 = math.log(0.99 / 0.01) + 0.5  # ≈ 5.095 -> clipped to 1


def tiny_layout(c: int = 3, h: int = 2):
    arrays = [np.zeros((h, 2)), np.zeros(h), np.zeros((c, h)), np.zeros(c)]
    return make_layout(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"], arrays, "fc2")


def loop_foolsgold(grads: np.ndarray) -> np.ndarray:
    """Direct transcription of the published algorithm, element by element."""
    n = grads.shape[0]
    cs = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                cs[i, j] = grads[i] @ grads[j] / (np.linalg.norm(grads[i]) * np.linalg.norm(grads[j]))
    maxcs = [max(cs[i]) for i in range(n)]
    for i in range(n):
        for j in range(n):
            if i != j and maxcs[i] < maxcs[j]:
                cs[i, j] = cs[i, j] * maxcs[i] / maxcs[j]
    wv = [min(1.0, max(0.0, 1.0 - max(cs[i]))) for i in range(n)]
    top = max(wv)
    wv = [w / top for w in wv]
    out = []
    for w in wv:
        if w == 1.0:
            w = 0.99
        v = 0.0 if w == 0 else math.log(w / (1 - w)) + 0.5
        out.append(min(1.0, max(0.0, v)))
    return np.array(out)


def test_identical_sybils_get_zero_and_honest_one():
    # sybils s = e1 (x3), honest h1 = e2, h2 = (0, 1, 1): cos(h1, h2) = 1/sqrt 2.
    # maxcs = [1, 1, 1, .7071, .7071]; pardoning only rescales honest-sybil
    # entries, which are 0. wv = [0, 0, 0, .2929, .2929] -> /max -> [0,0,0,1,1]
    # -> 1 becomes .99 -> logit 5.095 -> clip 1; 0 -> 0.
    hist = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 1]], dtype=float)
    np.testing.assert_allclose(foolsgold_weights(hist), [0, 0, 0, 1, 1], atol=0)


def test_all_orthogonal_clients_weight_one():
    # cs = 0 -> wv = 1 -> rescale 1 -> .99 -> ln 99 + .5 = 5.095 -> clipped to 1.
    assert LOGIT_099 > 1
    np.testing.assert_array_equal(foolsgold_weights(np.eye(4)), np.ones(4))


def test_pardoning_hand_case():
    # a=(1,0,0), b=(.6,.8,0), c=(0,1,0), d=(0,0,1):
    # cs_ab=.6, cs_bc=.8, others 0; v = [.6, .8, .8, 0].
    # Pardoning: v_a < v_b -> cs_ab = .6 * .6/.8 = .45 (cs_ac, cs_ad are 0).
    # wv = [1-.45, 1-.8, 1-.8, 1] = [.55, .2, .2, 1]; max 1; d -> .99.
    # logit: a: ln(.55/.45)+.5 = .70067; b, c: ln(.25)+.5 < 0 -> 0; d -> 1.
    hist = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0], [0, 0, 1]])
    cs = pardoned_similarity(hist)
    assert cs[0, 1] == pytest.approx(0.45)
    assert cs[1, 0] == pytest.approx(0.6)  # v_b > v_a: not pardoned
    expected_a = math.log(0.55 / 0.45) + 0.5
    np.testing.assert_allclose(foolsgold_weights(hist), [expected_a, 0, 0, 1], rtol=1e-12)
    # without pardoning a would get ln(.4/.6)+.5 = .0945: the step matters here
    assert abs(expected_a - (math.log(0.4 / 0.6) + 0.5)) > 0.5


def test_rescale_and_logit_interior_values():
    # wv before rescale [.55, .2, .2] (no d): max .55 -> [1, .3636, .3636]
    # -> a: .99 -> 1; b, c: ln(.3636/.6364)+.5 = -.0596 -> 0
    hist = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0]])
    np.testing.assert_allclose(foolsgold_weights(hist), [1, 0, 0])


def test_matches_loop_implementation_on_random_data():
    rng = np.random.default_rng(0)
    for trial in range(20):
        k, f = rng.integers(3, 12), rng.integers(2, 30)
        base = rng.normal(size=(k, f))
        # a few near-duplicates so that pardoning and rescaling matter
        base[1] = base[0] + 0.1 * rng.normal(size=f)
        base[2] = base[0] + 0.3 * rng.normal(size=f)
        np.testing.assert_allclose(foolsgold_weights(base), loop_foolsgold(base), atol=1e-12)


def test_all_identical_histories_give_zero_update():
    layout = tiny_layout()
    upd = np.tile(np.arange(layout.num_params, dtype=float), (3, 1))
    agg = foolsgold(upd, np.ones(3), layout, history=foolsgold_features(upd, layout))
    assert not agg.kept.any()
    np.testing.assert_array_equal(agg.update, 0)
    assert "fallback" in agg.info


def test_single_client_gets_weight_one():
    np.testing.assert_array_equal(foolsgold_weights(np.array([[1.0, 2.0]])), [1.0])
    np.testing.assert_array_equal(foolsgold_weights(np.zeros((1, 3))), [1.0])


def test_aggregate_is_wv_weighted_mean_ignoring_example_counts():
    layout = tiny_layout()
    rng = np.random.default_rng(1)
    upd = rng.normal(size=(4, layout.num_params))
    hist = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0], [0, 0, 1]])
    agg = foolsgold(upd, np.array([1.0, 50.0, 7.0, 3.0]), layout, history=hist)
    wa = math.log(0.55 / 0.45) + 0.5
    np.testing.assert_allclose(agg.update, (wa * upd[0] + upd[3]) / (wa + 1))
    np.testing.assert_array_equal(agg.kept, [True, False, False, True])
    np.testing.assert_allclose(agg.weights, [wa / (wa + 1), 0, 0, 1 / (wa + 1)])
    np.testing.assert_allclose(agg.info["wv"], [wa, 0, 0, 1])


def test_features_and_default_history():
    layout = tiny_layout()
    rng = np.random.default_rng(2)
    upd = rng.normal(size=(5, layout.num_params))
    np.testing.assert_array_equal(foolsgold_features(upd, layout), layout.output_layer(upd))
    np.testing.assert_array_equal(foolsgold_features(upd, layout, "all"), upd)
    # sybils identical on the output layer only (the rest differs): caught by
    # "output-layer", not by "all"
    upd[1, layout.slice_of(2)] = upd[0, layout.slice_of(2)]
    upd[1, layout.slice_of(3)] = upd[0, layout.slice_of(3)]
    agg = foolsgold(upd, np.ones(5), layout)  # history=None: this round alone
    assert agg.info["wv"][0] == 0 and agg.info["wv"][1] == 0
    with pytest.raises(ValueError):
        foolsgold_features(upd, layout, "nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        foolsgold(upd, np.ones(5), layout, history=np.ones((4, 3)))


# ---------------------------------------------------------------- whose histories are compared


def _one_hot_updates(layout, dirs: list[int]) -> np.ndarray:
    """Updates whose output-layer features are the unit vectors ``e_d`` (other params 0)."""
    upd = np.zeros((len(dirs), layout.num_params))
    sl = layout.slice_of(layout.output_weight)
    for k, d in enumerate(dirs):
        upd[k, sl.start + d] = 1.0
    return upd


def test_partial_participation_all_seen_history_catches_a_sybil_whose_twin_is_absent():
    # round 1: sybils 0, 1 (direction e0), honest 2 (e1), 3 (e2) all sampled.
    # round 2: only 0 and 2 sampled. Histories: 0: 2e0, 1: e0, 2: 2e1, 3: e2.
    # all-seen (FoolsGold / LFighter code): cos(0, 1) = 1 -> wv_0 = 0; 2 and 3 unique -> 1.
    # round only (scope=round): 0 vs 2 are orthogonal -> both weight 1, the sybil is kept.
    from strategies.defenses import FoolsGold

    layout = tiny_layout()
    r1 = _one_hot_updates(layout, [0, 0, 1, 2])
    r2 = _one_hot_updates(layout, [0, 1])
    new, old = FoolsGold(clients_per_round=4), FoolsGold(clients_per_round=4, scope="round")
    for strat in (new, old):
        first = strat.aggregate_updates(r1, np.ones(4), layout, [10, 11, 12, 13], 1)
        np.testing.assert_array_equal(first.kept, [False, False, True, True])
    a = new.aggregate_updates(r2, np.ones(2), layout, [10, 12], 2)
    b = old.aggregate_updates(r2, np.ones(2), layout, [10, 12], 2)
    np.testing.assert_array_equal(a.kept, [False, True])
    assert a.info["history_rows"] == 4
    np.testing.assert_array_equal(b.kept, [True, True])
    np.testing.assert_allclose(a.update, r2[1])


def test_sampled_rows_are_the_full_history_weights():
    rng = np.random.default_rng(5)
    hist = rng.normal(size=(7, 9))
    layout = tiny_layout()
    upd = rng.normal(size=(3, layout.num_params))
    agg = foolsgold(upd, np.ones(3), layout, history=hist, sampled=np.array([4, 0, 6]))
    np.testing.assert_allclose(agg.info["wv"], foolsgold_weights(hist)[[4, 0, 6]])
    with pytest.raises(ValueError, match="sampled"):
        foolsgold(upd, np.ones(3), layout, history=hist, sampled=np.array([1, 7, 2]))


def test_bad_scope_rejected():
    from strategies.defenses import FoolsGold

    with pytest.raises(ValueError, match="scope"):
        FoolsGold(clients_per_round=2, scope="everyone")


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


@pytest.mark.parametrize(("scope", "features"), [("all-seen", "output-layer"), ("all-seen", "all"),
                                                ("round", "output-layer"), ("round", "all")])
def test_foolsgold_strategy_history_per_scope(scope, features):
    # round 1: clients 0-3, round 2: clients 2-5. History = per-client sum of feature rows;
    # "all-seen" compares every client seen so far (first-seen order) and weighs the sampled,
    # "round" only this round's clients.
    from strategies.rules import foolsgold as fg

    layout = layout_of(4, 3)
    rng = np.random.default_rng(8)
    u1, u2 = rng.normal(size=(4, layout.num_params)), rng.normal(size=(4, layout.num_params))
    u2[2:] = u2[2] + 0.01 * rng.normal(size=(2, layout.num_params))  # 4 and 5: near-sybils
    n = np.array([10.0, 20.0, 30.0, 40.0])
    s = D.FoolsGold(scope=scope, features=features)
    s.aggregate_updates(u1, n, layout, [0, 1, 2, 3], 1)
    got = s.aggregate_updates(u2, n, layout, [2, 3, 4, 5], 2)
    f1, f2 = fg.foolsgold_features(u1, layout, features), fg.foolsgold_features(u2, layout, features)
    seen = np.stack([f1[0], f1[1], f1[2] + f2[0], f1[3] + f2[1], f2[2], f2[3]])
    if scope == "round":
        ref = fg.foolsgold(u2, n, layout, history=seen[2:], features=features)
    else:
        ref = fg.foolsgold(u2, n, layout, history=seen, sampled=np.array([2, 3, 4, 5]), features=features)
    np.testing.assert_allclose(got.update, ref.update)
    np.testing.assert_allclose(got.weights, ref.weights)
    np.testing.assert_array_equal(got.kept, ref.kept)
    assert got.info == ref.info and got.info["features"] == features
    assert sorted(s.history) == [0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(np.stack([s.history[c] for c in range(6)]), seen)


SMALL = {"dataset": "digits", "num-clients": 4, "clients-per-round": 4, "num-rounds": 1, "seed": 3,
         "figures": False}


# --- 4. FoolsGold accumulates each client's history across rounds ---------------------------------------
def test_foolsgold_strategy_weights_come_from_the_accumulated_history():
    names = ["w", "b"]
    arrays = [np.zeros((2, 3)), np.zeros(2)]
    layout = infer_layout(names, arrays)
    # this round's clients only: the accumulation is what is under test (the all-seen scope: the tests above)
    strat = build_strategy(resolve({**SMALL, "defense": "foolsgold", "foolsgold-features": "all",
                                    "foolsgold-scope": "round"}))
    rng = np.random.default_rng(5)
    r1 = rng.normal(size=(4, 8))
    r2 = rng.normal(size=(4, 8))
    r2[1] = r2[0]  # in round 2 alone, clients 0 and 1 look like sybils
    strat.aggregate_updates(r1, np.ones(4), layout, [0, 1, 2, 3], 1)
    agg = strat.aggregate_updates(r2, np.ones(4), layout, [0, 1, 2, 3], 2)
    expected = fg.foolsgold_weights(r1 + r2)
    assert np.allclose(agg.info["wv"], expected)
    assert not np.allclose(expected, fg.foolsgold_weights(r2))  # history matters for this data
    # a client absent in round 2 keeps its history for round 3
    agg3 = strat.aggregate_updates(r1[[0, 2]], np.ones(2), layout, [0, 2], 3)
    assert np.allclose(agg3.info["wv"], fg.foolsgold_weights((r1 + r2 + r1)[[0, 2]]))
