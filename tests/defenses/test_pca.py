"""PCA filter (Tolpegin et al. §4): planted attackers, projection vs scikit-learn, degenerate cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from fl_poison.updates import make_layout
from strategies.pca_filter import pca_2d, pca_filter, standardise

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
