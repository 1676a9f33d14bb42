"""Mutation-run survivors in the defenses.

Covers the thin Strategy plug-ins (``strategies/defenses/*``: their config checks, the run keys that reach
their parameters, and that ``aggregate_updates`` hands every parameter on), the plug-in registry
(``strategies.registry``), and corner cases of LFighter (``strategies.lfighter``) and the PCA filter
(``strategies.pca_filter``) that the main test files leave open. Expected values are worked by hand or
computed with numpy / scikit-learn next to the test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fl_poison.config import ConfigError, resolve
from strategies import defenses as D
from strategies.base import DefenseStrategy
from strategies.lfighter import code_dissimilarity, inverse_density, lfighter
from strategies.registry import build_strategy
from test_lfighter import extreme_updates, layout_of, with_output_rows
from test_pca import SRC
from test_pca import planted as pca_planted

BUILTIN = {"bulyan", "fedavg", "foolsgold", "krum", "lfighter", "median", "multi-krum", "ndc", "pca",
           "repeated-median", "trimmed-mean"}


def config_error(**over) -> ConfigError:
    """The ConfigError ``resolve`` raises for these run keys (fails the test if there is none)."""
    with pytest.raises(ConfigError) as e:
        resolve(over)
    return e.value


def built(**over) -> DefenseStrategy:
    """The Strategy a run config builds (11 clients, all sampled)."""
    return build_strategy(resolve({"num-clients": 11, "clients-per-round": 11, **over}))


# ---------------------------------------------------------------- registry


def test_registry_lists_every_builtin_defense_when_asked_at_run_time():
    # read inside the test, not at import: the registry is a live view (module __getattr__)
    import strategies.registry as registry

    found = registry.STRATEGIES
    assert BUILTIN <= set(found)
    for name, cls in found.items():
        assert issubclass(cls, DefenseStrategy) and cls.name == name
    assert found["lfighter"] is D.LFighter and found["multi-krum"] is D.MultiKrum


def test_registry_unknown_attribute_names_itself():
    import strategies.registry as registry

    with pytest.raises(AttributeError, match=r"^NO_SUCH_THING$"):
        registry.NO_SUCH_THING  # noqa: B018
    assert not hasattr(registry, "strategies")  # the name is case-sensitive


# ---------------------------------------------------------------- config checks of the plug-ins


def test_bulyan_budget_error_names_the_rule_and_the_largest_f():
    # 11 clients: 4f + 3 <= 11 -> f <= 2; f = 3 must be refused with that hint
    resolve({"defense": "bulyan", "num-clients": 11, "clients-per-round": 11, "num-byzantine": 2})
    e = config_error(defense="bulyan", **{"num-clients": 11, "clients-per-round": 11, "num-byzantine": 3})
    assert (e.key, e.value) == ("num-byzantine", 3)
    assert e.allowed == "Bulyan needs clients-per-round >= 4*f + 3; with 11 clients f <= 2"


def test_multi_krum_keep_may_equal_but_not_exceed_clients_per_round():
    assert built(defense="multi-krum", **{"multi-krum-keep": 11}).keep == 11
    e = config_error(defense="multi-krum", **{"num-clients": 11, "clients-per-round": 11, "multi-krum-keep": 12})
    assert (e.key, e.value) == ("multi-krum-keep", 12)
    assert "at most clients-per-round (11)" in str(e)


def test_multi_krum_keep_zero_is_refused():
    """0 is no count of kept updates: a check of ``v >= -1`` would let it through to mean -1 silently."""
    e = config_error(defense="multi-krum", **{"multi-krum-keep": 0})
    assert e.key == "multi-krum-keep"


def test_pca_class_must_be_a_class_of_the_data_set():
    # digits has classes 0..9: 9 is fine, 10 is not
    assert built(defense="pca", **{"pca-class": 9}).source_class == 9
    e = config_error(defense="pca", dataset="digits", **{"pca-class": 10})
    assert (e.key, e.value) == ("pca-class", 10)
    assert "a class of digits: 0..9, or -1" in str(e)


def test_pca_class_zero_is_a_class_and_minus_one_chooses_each_round():
    assert built(defense="pca", **{"pca-class": 0}).source_class == 0
    assert built(defense="pca", **{"pca-class": -1}).source_class is None


def test_lfighter_min_samples_minus_one_means_hdbscan_default():
    assert built(defense="lfighter").min_samples is None  # -1: the paper's min_cluster_size=2 only
    assert built(defense="lfighter", **{"lfighter-min-samples": 1}).min_samples == 1


def test_krum_budget_error_names_the_rule_and_the_largest_f():
    # Krum needs K - f - 2 >= 1: with 6 clients f <= 3
    resolve({"defense": "krum", "num-clients": 6, "clients-per-round": 6, "num-byzantine": 3})
    e = config_error(defense="krum", **{"num-clients": 6, "clients-per-round": 6, "num-byzantine": 4})
    assert (e.key, e.value) == ("num-byzantine", 4)
    assert e.allowed == "Krum needs clients-per-round - num-byzantine - 2 >= 1; with 6 clients f <= 3"


@pytest.mark.parametrize(("defense", "k"), [("krum", 3), ("bulyan", 3), ("bulyan", 6)])
def test_round_that_fits_only_f_zero_says_f_le_0(defense, k):
    # Krum with 3 clients and Bulyan with 3..6 work with f = 0 only: the hint is "f <= 0", not "no f works"
    e = config_error(defense=defense, **{"num-clients": k, "clients-per-round": k, "num-byzantine": 1})
    assert e.allowed.endswith(f"with {k} clients f <= 0")


@pytest.mark.parametrize("defense", ["krum", "multi-krum", "bulyan"])
def test_two_clients_per_round_leave_no_byzantine_budget(defense):
    e = config_error(defense=defense, **{"num-clients": 2, "clients-per-round": 2})
    assert e.key == "num-byzantine"
    assert e.allowed.endswith("with 2 clients no f works: at least 3 clients per round are needed")


@pytest.mark.parametrize("defense", ["krum", "multi-krum", "bulyan"])
def test_three_clients_per_round_fit_every_krum_rule_with_f_zero(defense):
    # the smallest round each rule accepts: K - 0 - 2 = 1 neighbour; Bulyan 4*0 + 3 = 3
    assert built(defense=defense, **{"num-clients": 3, "clients-per-round": 3}).f_for(3) == 0


def test_largest_byzantine_budget_per_rule():
    # -1: the largest f the round tolerates; Krum-like K - f - 2 >= 1 (f <= (K-3)/2), Bulyan K >= 4f + 3
    assert [D.Krum().f_for(k) for k in (1, 3, 4, 5, 11)] == [0, 0, 0, 1, 4]
    assert [D.MultiKrum().f_for(k) for k in (3, 9, 10)] == [0, 3, 3]
    assert [D.Bulyan().f_for(k) for k in (1, 6, 7, 11, 15)] == [0, 0, 1, 2, 3]
    assert D.Krum(num_byzantine=0).f_for(11) == 0 and D.Bulyan(num_byzantine=1).f_for(11) == 1


def test_ndc_bound_values():
    from strategies.norm_clipping import check_bound

    assert check_bound("median") == "median"
    assert check_bound("0.5") == 0.5 and check_bound(2) == 2.0
    for bad in ("0", "-1", "inf", "nan"):
        with pytest.raises(ValueError, match=f"^bound must be a positive finite number or 'median', got '{bad}'$"):
            check_bound(bad)
        e = config_error(defense="ndc", **{"ndc-bound": bad})
        assert e.key == "ndc-bound" and "a number > 0, or 'median'" in str(e)
    assert D.NormDifferenceClipping(bound="0.5").bound == 0.5


def test_build_strategy_samples_clients_per_round_of_num_clients():
    s = build_strategy(resolve({"defense": "median", "num-clients": 8, "clients-per-round": 6}))
    assert (s.clients_per_round, s.min_train_nodes, s.min_available_nodes) == (6, 6, 8)
    assert s.fraction_train == pytest.approx(0.75)
    assert s.capture_updates is False


# ---------------------------------------------------------------- Strategies pass their parameters on


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


def test_ndc_strategy_uses_its_bound_and_mode():
    # norms 0.5, 0.8, 3: with bound 1 "drop" keeps the first two (the median bound 0.8 would keep one,
    # "clip" would keep the third, scaled to norm 1)
    upd = np.array([[0.3, 0.4, 0.0], [0.0, 0.0, 0.8], [3.0, 0.0, 0.0]])
    n = np.array([10.0, 30.0, 20.0])
    agg = D.NormDifferenceClipping(bound=1.0, mode="drop").aggregate_updates(upd, n, None, [0, 1, 2], 1)
    np.testing.assert_array_equal(agg.kept, [True, True, False])
    np.testing.assert_allclose(agg.update, (10 * upd[0] + 30 * upd[1]) / 40)


def krum_line():
    """Five clients on a line (first coordinate): 0, 0.1, 3, 4, 5; f = 1, so n = K - f - 2 = 2.

    squared (paper): s = the 2 smallest squared distances to the others: 9.01, 8.42, 5, 2, 5 -> client 3.
    lfighter-code: plain distances, the zero self-distance counted: s = 0 + nearest other
    = 0.1, 0.1, 1, 1, 1 -> client 0 (tie with 1: the lower index).
    """
    upd = np.zeros((5, 3))
    upd[:, 0] = [0.0, 0.1, 3.0, 4.0, 5.0]
    return upd


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


def test_lfighter_strategy_runs_extreme_mode_with_its_min_samples():
    # two label flippers (7 -> 1) among one-class clients, a lone class-9 client: with HDBSCAN
    # min_samples=1 the pair forms its own cluster (dropped: smaller than the honest class-1
    # cluster with the same top neuron) and the loner is noise (dropped); see test_lfighter.py
    spec = [(1, 1)] * 4 + [(1, 7, 7)] * 2 + [(7, 7)] * 3 + [(4, 4)] * 2 + [(5, 5)] * 2 + [(9, 9)]
    layout, upd = extreme_updates(0, spec)
    strat = D.LFighter(mode="extreme", min_samples=1, clients_per_round=len(spec))
    agg = strat.aggregate_updates(upd, np.ones(len(spec)), layout, list(range(len(spec))), 1)
    expected = np.ones(len(spec), bool)
    expected[[4, 5, 13]] = False
    np.testing.assert_array_equal(agg.kept, expected)
    assert agg.info["mode"] == "extreme"


# ---------------------------------------------------------------- LFighter corner cases


def test_lfighter_extreme_reports_integer_labels_and_cluster_sizes():
    spec = [(1, 1)] * 4 + [(1, 7, 7)] * 2 + [(7, 7)] * 3 + [(4, 4)] * 2 + [(5, 5)] * 2 + [(9, 9)]
    layout, upd = extreme_updates(0, spec)
    info = lfighter(upd, np.ones(len(spec)), layout, mode="extreme", min_samples=1).info
    labels = info["cluster"]
    assert all(type(x) is int for x in labels)  # JSON reports: 0, not 0.0
    ids = sorted(set(labels) - {-1})
    assert info["cluster_size"] == [labels.count(j) for j in ids]
    assert sorted(info["cluster_size"]) == [2, 2, 2, 3, 4]  # classes 4, 5, the flippers; 7; 1


@pytest.mark.parametrize("mode", ["mild", "extreme"])
def test_lfighter_identical_output_rows_fall_back_before_clustering(mode):
    # the same output rows for every client (their entries differ from each other): no clustering at all
    layout = layout_of(3, 2)
    upd = np.tile(np.random.default_rng(5).normal(size=layout.num_params), (5, 1))
    info = lfighter(upd, np.ones(5), layout, mode=mode).info
    assert info["fallback"].startswith("all extracted gradients identical")
    assert "cluster" not in info


def test_lfighter_bad_arguments_name_the_allowed_values():
    layout = layout_of(3, 2)
    upd = np.random.default_rng(0).normal(size=(4, layout.num_params))
    for kw, msg in (({"mode": "iid"}, "mode must be 'mild' or 'extreme', got 'iid'"),
                    ({"score": "x"}, "score must be one of ('paper', 'code'), got 'x'"),
                    ({"n_init": 0}, "n_init must be >= 1, got 0")):
        with pytest.raises(ValueError) as e:
            lfighter(upd, np.ones(4), layout, **kw)
        assert str(e.value) == msg
    assert "cluster" in lfighter(upd, np.ones(4), layout, n_init=1).info  # one initialisation is enough


def test_lfighter_needs_three_clients_to_cluster():
    layout = layout_of(3, 2)
    upd = np.random.default_rng(1).normal(size=(3, layout.num_params))
    assert lfighter(upd[:2], np.ones(2), layout).info["fallback"].startswith("fewer than 3 clients")
    info = lfighter(upd, np.ones(3), layout).info
    assert "fallback" not in info and len(info["cluster"]) == 3


def test_lfighter_without_output_bias_keeps_every_weight_column():
    # no bias array: the rows are the weights alone, nothing to strip. Honest clients and two identical
    # attackers differ only in the LAST weight column of the two top neurons (+1 vs -1)
    layout = layout_of(3, 2, bias=False)
    upd = np.zeros((5, layout.num_params))
    w = upd[:, layout.slice_of(layout.output_weight)].reshape(5, 3, 2)
    w[:, :2, 0] = 1.0
    w[:3, :2, 1] = np.array([[1.0, 1.0], [1.1, 1.0], [1.0, 1.1]])
    w[3:, :2, 1] = -1.0
    upd[:, layout.slice_of(layout.output_weight)] = w.reshape(5, -1)
    agg = lfighter(upd, np.ones(5), layout)
    np.testing.assert_array_equal(agg.kept, [True, True, True, False, False])
    assert agg.info["score"] == "paper" and agg.info["include_bias"] is False
    assert lfighter(upd, np.ones(5), layout, score="code").info["score"] == "code"
    # no bias to add: include_bias changes nothing but is reported as asked
    with_bias = lfighter(upd, np.ones(5), layout, include_bias=True)
    np.testing.assert_array_equal(with_bias.kept, agg.kept)
    assert with_bias.info["include_bias"] is True


def test_lfighter_all_noise_fallback_says_so():
    layout, upd = extreme_updates(0, [(1, 1), (4, 4), (5, 5)])
    info = lfighter(upd, np.ones(3), layout, mode="extreme").info
    assert info["fallback"].startswith("HDBSCAN labelled every client noise")


def test_code_dissimilarity_averages_each_rows_own_minimum():
    # [1,0], [-1,0], [0,1]: cos − I rows [0,-1,0], [-1,0,0], [0,0,0] -> minima -1, -1, 0
    # -> 1 − mean(-1, -1, 0) = 5/3 (the global minimum would give 2)
    v = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    assert code_dissimilarity(v) == pytest.approx(5 / 3)


def test_cluster_statistics_of_no_rows_are_zero():
    empty = np.empty((0, 4))
    assert code_dissimilarity(empty) == 0.0
    assert inverse_density(empty) == 0.0
    assert math.isfinite(code_dissimilarity(np.ones((1, 4))))


# ---------------------------------------------------------------- Strategies with state across rounds


def test_pca_strategy_pools_a_window_of_earlier_rounds():
    # rounds of 4, 5, 6, 7 clients: pca-history-rounds = 3 pools the 2 rounds before this one
    # (0, 4, 4+5, 5+6 rows), -1 every earlier round (0, 4, 9, 15), 1 none
    rounds = [pca_planted(seed=r, n_honest=r + 1, n_att=3)[:2] for r in range(4)]
    for history, expected in ((3, [0, 4, 9, 11]), (-1, [0, 4, 9, 15]), (1, [0, 0, 0, 0])):
        s = D.PCAFilter(source_class=SRC, history_rounds=history)
        got = [s.aggregate_updates(upd, np.ones(len(upd)), layout, list(range(len(upd))), r + 1).info["pooled_rows"]
               for r, (layout, upd) in enumerate(rounds)]
        assert got == expected, history


def test_pca_strategy_visualise_only_keeps_the_flagged_clients():
    layout, upd, attackers = pca_planted(seed=0)
    agg = D.PCAFilter(source_class=SRC, visualise_only=True).aggregate_updates(
        upd, np.ones(len(upd)), layout, list(range(len(upd))), 1)
    assert agg.kept.all() and agg.info["flagged"] == attackers.tolist()
    np.testing.assert_allclose(agg.update, upd.mean(axis=0))


def test_pca_strategy_inspects_the_configured_class():
    # the planted attackers differ in class 3's rows; told to inspect class 5, the filter must not
    # wander off to the best-separated class by itself
    layout, upd, _ = pca_planted(seed=0)
    agg = D.PCAFilter(source_class=5).aggregate_updates(upd, np.ones(len(upd)), layout, list(range(len(upd))), 1)
    assert agg.info["source_class"] == 5 and "silhouette_per_class" not in agg.info


def test_pca_strategy_seeds_kmeans_with_seed_plus_round():
    # which cluster k-means calls 0 depends on its seed (here seeds 4 and 6 swap the labels):
    # round r of a run with seed s must cluster exactly as pca_filter with seed s + r
    from strategies.pca_filter import pca_filter

    layout, upd, _ = pca_planted(seed=0)
    n = np.ones(len(upd))
    s = D.PCAFilter(source_class=SRC, seed=1)
    got = [s.aggregate_updates(upd, n, layout, list(range(len(upd))), r).info["cluster"] for r in range(1, 7)]
    ref = [pca_filter(upd, n, layout, source_class=SRC, seed=1 + r).info["cluster"] for r in range(1, 7)]
    assert got == ref
    assert len({tuple(c) for c in ref}) == 2  # the seed does matter on this data


@pytest.mark.parametrize(("scope", "features"), [("all-seen", "output-layer"), ("all-seen", "all"),
                                                ("round", "output-layer"), ("round", "all")])
def test_foolsgold_strategy_history_per_scope(scope, features):
    # round 1: clients 0-3, round 2: clients 2-5. History = per-client sum of feature rows;
    # "all-seen" compares every client seen so far (first-seen order) and weighs the sampled,
    # "round" only this round's clients.
    from strategies import foolsgold as fg

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


# --- strategies/pca_filter.py (survivors of the last run) -----------------------------------------------
from strategies.pca_filter import _split, pca_2d, pca_filter  # noqa: E402


def test_pca_2d_equals_scikit_learn_on_uncentred_data_with_its_signs():
    """Off-centre, unscaled rows: centring, the component signs and the variance ratios all show.

    scikit-learn's PCA flips each component so its largest-|.| loading is positive, the convention pca_2d
    documents, so scores must agree with their signs, not only up to sign.
    """
    from sklearn.decomposition import PCA

    z = np.random.default_rng(4).normal(size=(9, 5)) * [3.0, 1.0, 0.5, 0.2, 0.1] + 7.0
    proj, ratio = pca_2d(z)
    ref = PCA(n_components=2, svd_solver="full").fit(z)
    np.testing.assert_allclose(proj, ref.transform(z), atol=1e-10)
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, atol=1e-12)
    small, small_ratio = pca_2d(z * 1e-3)  # total variance < 1: the ratios are still shares, not zeros
    np.testing.assert_allclose(small_ratio, ratio, atol=1e-9)


@pytest.mark.parametrize("z", [np.ones((4, 3)), np.arange(3.0)[None, :]], ids=["identical rows", "one row"])
def test_pca_2d_without_spread_is_all_zero_without_nan(z):
    proj, ratio = pca_2d(z)
    assert np.array_equal(proj, np.zeros((len(z), 2))) and np.array_equal(ratio, np.zeros(2))


def test_three_distinct_rows_are_enough_to_split():
    """K = 3 is the smallest round the filter acts on (below it there is no minority to drop)."""
    rows = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0]])
    got = _split(rows, seed=0)
    assert got is not None and sorted(np.bincount(got["labels"])) == [1, 2]
    assert _split(rows[:2], seed=0) is None


def test_source_class_zero_is_a_class_and_the_report_says_whether_it_only_visualises():
    layout, upd, _ = pca_planted()
    for visualise in (True, False):
        agg = pca_filter(upd, np.ones(len(upd)), layout, source_class=0, visualise_only=visualise)
        assert agg.info["source_class"] == 0 and agg.info["visualise_only"] is visualise


def test_a_single_pooled_row_is_pooled():
    layout, upd, attackers = pca_planted()
    history = layout.output_rows(upd[:1])  # one earlier row, [1, C, H+1]
    agg = pca_filter(upd, np.ones(len(upd)), layout, source_class=SRC, history_rows=history)
    assert agg.info["pooled_rows"] == 1


# --- strategies/pca_filter.py: fallbacks, the report, seeds, pooling per class (second run's survivors) -----
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.metrics import silhouette_score  # noqa: E402

from strategies.pca_filter import standardise  # noqa: E402
from test_pca import layout_of as pca_layout_of  # noqa: E402


def with_source_rows(rows: np.ndarray, classes: tuple[int, ...] = (SRC,)):
    """A layout and updates that are zero except the rows (incoming weights, then bias) of ``classes``.

    ``rows`` is ``[K, H+1]``; every class in ``classes`` gets the same rows, other classes stay all-zero
    and so never split.
    """
    k, h = rows.shape[0], rows.shape[1] - 1
    layout = pca_layout_of(h=h)
    out = np.zeros((k, layout.num_classes, h + 1))
    out[:, list(classes)] = rows[:, None, :]
    return layout, with_output_rows(layout, out, np.zeros((k, layout.num_params)))


def same_partition(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return bool(np.array_equal(a, b) or np.array_equal(a, 1 - b))


def unstructured_rows(seed: int) -> np.ndarray:
    """12 clients x 6 columns of plain noise: no clear split, so k-means' start points decide it."""
    return np.random.default_rng(seed).normal(size=(12, 6))


def test_pca_split_counts_the_pooled_rows_towards_the_three_it_needs():
    rows = np.random.default_rng(0).normal(size=(3, 4))
    assert _split(rows[:2], 0) is None
    # pooling switched on but empty: still two rows in all -> nothing to split
    assert _split(rows[:2], 0, pooled=np.empty((0, 4))) is None
    # one client this round + two pooled rows = three rows: a split, reported for this round's client
    got = _split(rows[:1], 0, pooled=rows[1:])
    assert got is not None and got["labels"].shape == (1,) and got["pooled_sizes"].sum() == 3
    # two clients this round, many pooled rows: the pooled rows make the split possible
    got = _split(rows[:2], 0, pooled=np.random.default_rng(1).normal(size=(6, 4)))
    assert got is not None and got["labels"].shape == (2,) and got["pooled_sizes"].sum() == 8


def test_pca_kmeans_is_scikit_learns_with_ten_seeded_restarts():
    """Step 4: ``KMeans(2, n_init=10, random_state=seed)`` on the projection; cluster labels are ints.

    The data are chosen so that a single start (scikit-learn's default ``n_init`` for k-means++) ends
    in another partition, so the number of restarts shows.
    """
    rows = unstructured_rows(2)
    proj, _ = pca_2d(standardise(rows))
    got = _split(rows, 0)
    assert np.array_equal(got["labels"], KMeans(n_clusters=2, n_init=10, random_state=0).fit(proj).labels_)
    assert not same_partition(got["labels"], KMeans(n_clusters=2, n_init=1, random_state=0).fit(proj).labels_)
    assert got["labels"].dtype.kind == "i"
    layout, upd = with_source_rows(rows)
    agg = pca_filter(upd, np.ones(12), layout, source_class=SRC)
    assert all(type(c) is int for c in agg.info["cluster"])


def test_pca_filter_seed_defaults_to_zero_and_reaches_kmeans_in_both_modes():
    layout, upd = with_source_rows(unstructured_rows(5))
    w = np.ones(12)
    for mode in (SRC, None):  # class given, or chosen per round (only SRC's rows can split here)
        default = pca_filter(upd, w, layout, source_class=mode)
        by_seed = {s: pca_filter(upd, w, layout, source_class=mode, seed=s) for s in (0, 1)}
        assert default.info["cluster"] == by_seed[0].info["cluster"]
        assert not same_partition(by_seed[0].info["cluster"], by_seed[1].info["cluster"])
        for s, agg in by_seed.items():  # the chosen class is split exactly as when it is given
            assert agg.info["source_class"] == SRC
            assert agg.info["cluster"] == pca_filter(upd, w, layout, source_class=SRC, seed=s).info["cluster"]


def test_pca_fallbacks_say_why_and_report_every_client_at_the_origin():
    rng = np.random.default_rng(3)
    layout = pca_layout_of()
    cases = {
        "fewer than 3 clients": rng.normal(size=(2, layout.num_params)),
        "no split (rows identical)": np.tile(rng.normal(size=layout.num_params), (3, 1)),
    }
    for reason, upd in cases.items():
        k = len(upd)
        agg = pca_filter(upd, np.ones(k), layout, source_class=SRC)
        assert agg.info["fallback"] == reason
        assert agg.info["projection"] == [[0.0, 0.0]] * k and agg.info["cluster"] == [0] * k
        assert "silhouette" not in agg.info and agg.info["flagged"] == [] and agg.kept.all()


def test_pca_reported_silhouette_is_scikit_learns_and_a_split_at_the_threshold_acts():
    layout, upd, attackers = pca_planted()
    w = np.ones(len(upd))
    agg = pca_filter(upd, w, layout, source_class=SRC)
    sil = silhouette_score(np.array(agg.info["projection"]), agg.info["cluster"])
    assert agg.info["silhouette"] == pytest.approx(sil, abs=1e-12)
    # "below min_silhouette" is strict: a split exactly at the threshold still drops its minority
    at = pca_filter(upd, w, layout, source_class=SRC, min_silhouette=agg.info["silhouette"])
    assert at.info["flagged"] == attackers.tolist() and "fallback" not in at.info


def test_pca_visualise_only_keeps_a_boolean_mask():
    layout, upd, _ = pca_planted()
    agg = pca_filter(upd, np.ones(len(upd)), layout, source_class=SRC, visualise_only=True)
    assert agg.kept.dtype == bool and agg.kept.all() and agg.info["flagged"]


def test_pca_class_chosen_per_round_pools_its_history_like_a_given_class():
    layout, upd1, _ = pca_planted(seed=2)
    upd2 = upd1[:5] + 0.05 * np.random.default_rng(9).normal(size=(5, layout.num_params))
    history = layout.output_rows(upd1)
    w = np.ones(5)
    auto = pca_filter(upd2, w, layout, source_class=None, history_rows=history)
    chosen = auto.info["source_class"]
    fixed = pca_filter(upd2, w, layout, source_class=chosen, history_rows=history)
    alone = pca_filter(upd2, w, layout, source_class=chosen)
    assert auto.info["pooled_rows"] == 11
    np.testing.assert_allclose(auto.info["projection"], fixed.info["projection"], atol=1e-12)
    assert auto.info["cluster"] == fixed.info["cluster"]
    assert not np.allclose(np.abs(auto.info["projection"]), np.abs(alone.info["projection"]))


def test_pca_equal_silhouettes_choose_the_lowest_class():
    """Classes 2 and 5 get identical rows, so their silhouettes tie exactly; the lowest index wins."""
    rows = np.concatenate([np.zeros((6, 5)), np.full((3, 5), 2.0)]) + np.random.default_rng(1).normal(
        scale=0.1, size=(9, 5)
    )
    layout, upd = with_source_rows(rows, classes=(5, 2))
    agg = pca_filter(upd, np.ones(9), layout, source_class=None)
    sils = agg.info["silhouette_per_class"]
    assert sils[2] == sils[5] and sils[2] is not None and agg.info["source_class"] == 2


def test_pca_source_class_error_states_the_allowed_range():
    layout, upd, _ = pca_planted()
    with pytest.raises(ValueError, match=r"source_class 10 outside \[0, 10\)"):
        pca_filter(upd, np.ones(len(upd)), layout, source_class=10)


@pytest.mark.parametrize("step", [standardise, lambda z: pca_2d(z)[0]], ids=["standardise", "pca_2d"])
def test_pca_steps_compute_in_double_precision_whatever_the_input(step):
    z32 = (np.random.default_rng(6).normal(size=(9, 5)) * [3.0, 1.0, 0.5, 0.2, 0.1]).astype(np.float32)
    got = step(z32)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, step(z32.astype(np.float64)), rtol=0, atol=1e-12)


# --- strategies/lfighter.py: mild mode's k-means, scores and fallback; helpers (second run's survivors) ----
from strategies.defaults import KMEANS_N_INIT  # noqa: E402
from strategies.lfighter import _neuron_data, neuron_magnitudes, top_two  # noqa: E402


def mild_case():
    """12 clients of plain noise: k-means' start points decide the mild split (10 classes, 5 hidden)."""
    layout = layout_of(10, 5)
    return layout, np.random.default_rng(2).normal(size=(12, layout.num_params))


def mild_data(layout, upd, neurons) -> np.ndarray:
    """Procedure 1's input, built by hand: each client's weight rows of the two neurons, concatenated."""
    rows = layout.output_rows(upd)[:, :, :-1]
    return np.concatenate([rows[:, n] for n in neurons], axis=1)


def test_lfighter_mild_clusters_as_seeded_scikit_learn_kmeans_with_its_restarts():
    layout, upd = mild_case()
    w = np.ones(len(upd))
    infos = {s: lfighter(upd, w, layout, seed=s).info for s in (0, 1)}
    data = mild_data(layout, upd, infos[0]["neurons"])
    for s, info in infos.items():
        ref = KMeans(n_clusters=2, n_init=KMEANS_N_INIT, random_state=s).fit(data).labels_
        assert info["cluster"] == ref.tolist() and all(type(c) is int for c in info["cluster"])
    assert lfighter(upd, w, layout).info["cluster"] == infos[0]["cluster"]  # the default seed is 0
    # the data are chosen so that the seed and the number of restarts both change the partition
    assert not same_partition(infos[0]["cluster"], infos[1]["cluster"])
    assert not same_partition(infos[0]["cluster"], KMeans(n_clusters=2, n_init=1, random_state=0).fit(data).labels_)


@pytest.mark.parametrize("score,dns_of", [("paper", inverse_density), ("code", code_dissimilarity)])
def test_lfighter_mild_scores_each_cluster_by_its_own_members(score, dns_of):
    layout, upd = mild_case()
    info = lfighter(upd, np.ones(len(upd)), layout, score=score).info
    data = mild_data(layout, upd, info["neurons"])
    labels = np.array(info["cluster"])
    np.testing.assert_allclose(info["dns"], [dns_of(data[labels == j]) for j in (0, 1)], rtol=1e-12)


def test_lfighter_mild_keeps_everyone_when_kmeans_finds_one_cluster():
    """Rows that differ by 1e-200: not identical, but their squared distances underflow to 0, so k-means
    puts every client in one cluster (scikit-learn warns) -- there is nothing to compare."""
    layout = layout_of(10, 5)
    upd = np.zeros((6, layout.num_params))
    upd[2, layout.slice_of(2).start] = 1e-200
    with pytest.warns(Warning, match="distinct clusters"):
        agg = lfighter(upd, np.ones(6), layout)
    assert agg.info["fallback"] == "k-means found one cluster" and agg.kept.all()
    assert len(set(agg.info["cluster"])) == 1


def test_neuron_data_concatenates_the_chosen_neurons_rows():
    rows = np.random.default_rng(0).normal(size=(3, 4, 2))
    np.testing.assert_array_equal(_neuron_data(rows, np.array([2, 0])), np.concatenate([rows[:, 2], rows[:, 0]], 1))
    per_client = np.array([[1, 2], [0, 3], [3, 1]])  # extreme mode: each client its own two neurons
    expected = np.stack([np.concatenate([rows[k, i], rows[k, j]]) for k, (i, j) in enumerate(per_client)])
    np.testing.assert_array_equal(_neuron_data(rows, per_client), expected)


def test_top_two_breaks_ties_by_the_lower_index_in_long_rows():
    """Many ties in 50 neurons (beyond the sizes where numpy's default sort happens to keep order)."""
    mags = np.random.default_rng(0).integers(0, 3, size=(4, 50)).astype(float)
    expected = [sorted(range(50), key=lambda i: -row[i])[:2] for row in mags]  # Python's sort is stable
    np.testing.assert_array_equal(top_two(mags), expected)


def test_neuron_magnitudes_are_computed_in_double_precision_whatever_the_input():
    layout = layout_of(10, 5)
    u32 = np.random.default_rng(9).normal(size=(4, layout.num_params)).astype(np.float32)
    got = neuron_magnitudes(u32, layout)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, neuron_magnitudes(u32.astype(np.float64), layout), rtol=1e-13, atol=0)


def test_pca_and_lfighter_strategies_built_without_a_seed_use_seed_zero():
    """The registry always passes the run's seed; a Strategy built by hand must still be reproducible, as seed 0."""
    w, ids = np.ones(12), list(range(12))

    def clusters(cls, layout, upd, **kw):
        return [cls(**kw, **seed).aggregate_updates(upd, w, layout, ids, 1).info["cluster"]
                for seed in ({}, {"seed": 0}, {"seed": 1})]

    for got in (clusters(D.PCAFilter, *with_source_rows(unstructured_rows(5)), source_class=SRC),
                clusters(D.LFighter, *mild_case())):
        default, zero, one = got
        assert default == zero and not same_partition(zero, one)
