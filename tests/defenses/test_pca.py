"""PCA filter (Tolpegin et al. §4): planted attackers, projection vs scikit-learn, degenerate cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from fl_poison.updates import make_layout
from strategies.rules.pca_filter import pca_2d, pca_filter, standardise
from strategies import defenses as D
from test_lfighter import with_output_rows
from strategies.rules.pca_filter import _split  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.metrics import silhouette_score  # noqa: E402
from config_errors import config_error
from defense_helpers import built, same_partition

C, H, SRC = 10, 12, 3


def layout_of(c: int = C, h: int = H, bias: bool = True):
    names = ["fc1.weight", "fc1.bias", "fc2.weight"] + (["fc2.bias"] if bias else [])
    arrays = [np.zeros((h, 5)), np.zeros(h), np.zeros((c, h))] + ([np.zeros(c)] if bias else [])
    return make_layout(names, arrays, "fc2")


def planted(seed: int = 0, n_honest: int = 8, n_att: int = 3):
    """Honest clients: one shared direction + noise everywhere. Attackers: the
    same, except the source neuron's rows (weights and bias) are shifted."""
    layout = layout_of()
    rng = np.random.default_rng(seed)
    k = n_honest + n_att
    direction = rng.normal(size=layout.num_params)
    upd = 0.5 * direction + 0.1 * rng.normal(size=(k, layout.num_params))
    w = layout.slice_of(2)
    b = layout.slice_of(3)
    shift = rng.normal(size=H)
    for a in range(n_honest, k):
        wa = upd[a, w].reshape(C, H)
        wa[SRC] -= 2.0 * shift
        upd[a, w] = wa.ravel()
        upd[a, b.start + SRC] += 1.0
    return layout, upd, np.arange(n_honest, k)


def test_planted_attackers_dropped():
    layout, upd, attackers = planted()
    weights = np.arange(1, len(upd) + 1, dtype=float)
    agg = pca_filter(upd, weights, layout, source_class=SRC)
    expected = np.ones(len(upd), dtype=bool)
    expected[attackers] = False
    np.testing.assert_array_equal(agg.kept, expected)
    assert agg.info["flagged"] == attackers.tolist()
    w = weights * expected
    np.testing.assert_allclose(agg.update, w @ upd / w.sum())
    np.testing.assert_allclose(agg.weights, w / w.sum())


def test_unknown_source_class_picks_the_separated_neuron():
    layout, upd, attackers = planted(seed=1)
    agg = pca_filter(upd, np.ones(len(upd)), layout, source_class=None)
    assert agg.info["source_class"] == SRC
    sils = agg.info["silhouette_per_class"]
    assert len(sils) == C and int(np.argmax(sils)) == SRC
    assert sorted(np.flatnonzero(~agg.kept).tolist()) == attackers.tolist()


def test_projection_matches_sklearn_pca_on_standardised_rows():
    layout, upd, _ = planted(seed=2)
    agg = pca_filter(upd, np.ones(len(upd)), layout, source_class=SRC)
    rows = layout.output_rows(upd)[:, SRC, :]
    ref = PCA(n_components=2, svd_solver="full").fit_transform(StandardScaler().fit_transform(rows))
    got = np.array(agg.info["projection"])
    assert got.shape == (len(upd), 2)
    for j in range(2):  # a principal component is defined up to sign
        sign = np.sign(got[:, j] @ ref[:, j])
        np.testing.assert_allclose(got[:, j], sign * ref[:, j], atol=1e-9)
    # and the variance ratios agree
    ratio = PCA(n_components=2, svd_solver="full").fit(StandardScaler().fit_transform(rows))
    np.testing.assert_allclose(agg.info["variance_ratio"], ratio.explained_variance_ratio_, atol=1e-12)


def test_rows_are_the_source_neuron_weights_then_bias():
    layout, upd, _ = planted(seed=3)
    # wipe the source neuron's bias shift: the projection must change
    a = pca_filter(upd, np.ones(len(upd)), layout, source_class=SRC)
    upd2 = upd.copy()
    upd2[:, layout.slice_of(3).start + SRC] = 0.0
    b = pca_filter(upd2, np.ones(len(upd)), layout, source_class=SRC)
    assert not np.allclose(np.abs(a.info["projection"]), np.abs(b.info["projection"]))
    # changing another neuron does not
    upd3 = upd.copy()
    upd3[:, layout.slice_of(3).start + SRC + 1] = 7.0
    c = pca_filter(upd3, np.ones(len(upd)), layout, source_class=SRC)
    np.testing.assert_allclose(a.info["projection"], c.info["projection"])


def test_visualise_only_keeps_everyone_but_reports_clusters():
    layout, upd, attackers = planted()
    weights = np.full(len(upd), 2.0)
    agg = pca_filter(upd, weights, layout, source_class=SRC, visualise_only=True)
    assert agg.kept.all()
    np.testing.assert_allclose(agg.update, upd.mean(axis=0))
    assert agg.info["flagged"] == attackers.tolist()
    labels = np.array(agg.info["cluster"])
    assert len(set(labels[attackers])) == 1 and labels[attackers[0]] not in labels[: attackers[0]]
    assert np.array(agg.info["projection"]).shape == (len(upd), 2)


def test_standardise_and_pca_helpers():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(7, 4))
    x[:, 2] = 3.0  # zero-variance column -> 0 after standardising
    z = standardise(x)
    np.testing.assert_allclose(z[:, 2], 0.0)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z[:, [0, 1, 3]].std(axis=0), 1.0)
    proj, ratio = pca_2d(z)
    assert proj.shape == (7, 2) and 0 < ratio[1] <= ratio[0] <= 1
    # one feature only: the second column is padded with zeros
    proj1, _ = pca_2d(rng.normal(size=(5, 1)))
    np.testing.assert_array_equal(proj1[:, 1], 0.0)


def test_degenerate_inputs_keep_everyone():
    layout = layout_of()
    rng = np.random.default_rng(5)
    # fewer than 3 clients
    two = rng.normal(size=(2, layout.num_params))
    agg = pca_filter(two, np.ones(2), layout, source_class=SRC)
    assert agg.kept.all() and "fallback" in agg.info
    agg = pca_filter(two[:1], np.ones(1), layout, source_class=None)
    assert agg.kept.all()
    # all rows identical
    same = np.tile(rng.normal(size=layout.num_params), (6, 1))
    for src in (SRC, None):
        agg = pca_filter(same, np.ones(6), layout, source_class=src)
        assert agg.kept.all() and "fallback" in agg.info
        np.testing.assert_allclose(agg.update, same[0])
    # zero updates
    agg = pca_filter(np.zeros((5, layout.num_params)), np.ones(5), layout, source_class=None)
    assert agg.kept.all()
    np.testing.assert_array_equal(agg.update, 0.0)
    # two equal-size groups: no majority -> nobody dropped
    four = np.zeros((4, layout.num_params))
    four[2:, layout.slice_of(2)] = 1.0
    agg = pca_filter(four, np.ones(4), layout, source_class=SRC)
    assert agg.kept.all() and agg.info["fallback"] == "equal-size clusters"
    with pytest.raises(ValueError):
        pca_filter(four, np.ones(4), layout, source_class=C)


def test_min_silhouette_and_no_bias_layout():
    layout, upd, _ = planted(seed=6)
    agg = pca_filter(upd, np.ones(len(upd)), layout, source_class=SRC, min_silhouette=0.99)
    assert agg.kept.all() and agg.info["fallback"] == "silhouette below min_silhouette"
    nb = layout_of(bias=False)
    rng = np.random.default_rng(7)
    x = 0.1 * rng.normal(size=(9, nb.num_params))
    w = nb.slice_of(2)
    x[6:, w.start + SRC * H : w.start + (SRC + 1) * H] += 3.0
    agg = pca_filter(x, np.ones(9), nb, source_class=SRC)
    np.testing.assert_array_equal(np.flatnonzero(~agg.kept), [6, 7, 8])


# ---------------------------------------------------------------- pooled history (Algorithm 1)


def test_pooled_history_keeps_an_all_honest_round_that_alone_loses_its_minority():
    # Round 1: 8 honest + 3 planted attackers (shifted source rows). Round 2: 5 honest clients only.
    # This round alone (default): k-means always splits, so the smaller half of the honest
    # round-2 clients is dropped. Pooled (Algorithm 1: U collects the rows of every round, then
    # standardise + PCA): the split is honest vs the round-1 attackers, and every round-2 client
    # lies in the honest majority cluster -> nobody is dropped.
    from strategies.defenses import PCAFilter

    layout, upd1, attackers = planted(seed=2)
    rng = np.random.default_rng(9)
    upd2 = upd1[:5] + 0.05 * rng.normal(size=(5, layout.num_params))
    alone = pca_filter(upd2, np.ones(5), layout, source_class=SRC)
    assert 0 < (~alone.kept).sum() < 5 and alone.info["pooled_rows"] == 0
    pooled = pca_filter(upd2, np.ones(5), layout, source_class=SRC, history_rows=layout.output_rows(upd1))
    assert pooled.kept.all() and pooled.info["pooled_rows"] == 11 and pooled.info["flagged"] == []
    # the Strategy keeps the window: history_rounds=-1 pools every earlier round, 1 none
    strat = PCAFilter(source_class=SRC, history_rounds=-1, clients_per_round=11)
    first = strat.aggregate_updates(upd1, np.ones(11), layout, list(range(11)), 1)
    assert sorted(np.flatnonzero(~first.kept).tolist()) == attackers.tolist()
    second = strat.aggregate_updates(upd2, np.ones(5), layout, list(range(5)), 2)
    assert second.kept.all() and second.info["pooled_rows"] == 11
    plain = PCAFilter(source_class=SRC, clients_per_round=11)
    plain.aggregate_updates(upd1, np.ones(11), layout, list(range(11)), 1)
    assert plain.aggregate_updates(upd2, np.ones(5), layout, list(range(5)), 2).info["pooled_rows"] == 0
    assert plain.past == []


pca_planted = planted
pca_layout_of = layout_of


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


def unstructured_rows(seed: int) -> np.ndarray:
    """12 clients x 6 columns of plain noise: no clear split, so k-means' start points decide it."""
    return np.random.default_rng(seed).normal(size=(12, 6))


def test_pca_class_must_be_a_class_of_the_data_set():
    # digits has classes 0..9: 9 is fine, 10 is not
    assert built(defense="pca", **{"pca-class": 9}).source_class == 9
    e = config_error(defense="pca", dataset="digits", **{"pca-class": 10})
    assert (e.key, e.value) == ("pca-class", 10)
    assert "a class of digits: 0..9, or -1" in str(e)


def test_pca_class_zero_is_a_class_and_minus_one_chooses_each_round():
    assert built(defense="pca", **{"pca-class": 0}).source_class == 0
    assert built(defense="pca", **{"pca-class": -1}).source_class is None


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
    from strategies.rules.pca_filter import pca_filter

    layout, upd, _ = pca_planted(seed=0)
    n = np.ones(len(upd))
    s = D.PCAFilter(source_class=SRC, seed=1)
    got = [s.aggregate_updates(upd, n, layout, list(range(len(upd))), r).info["cluster"] for r in range(1, 7)]
    ref = [pca_filter(upd, n, layout, source_class=SRC, seed=1 + r).info["cluster"] for r in range(1, 7)]
    assert got == ref
    assert len({tuple(c) for c in ref}) == 2  # the seed does matter on this data


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
