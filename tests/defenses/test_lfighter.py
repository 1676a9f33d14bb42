"""LFighter: hand-worked cases, planted mild / extreme attacks, helpers, degenerate inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fl_poison.updates import make_layout
from strategies.rules.lfighter import inverse_density, lfighter, neuron_magnitudes, top_two
from fl_poison.config import resolve
from strategies import defenses as D
from strategies.rules.lfighter import code_dissimilarity
from strategies.registry import build_strategy
from sklearn.cluster import KMeans  # noqa: E402
from strategies.defaults import KMEANS_N_INIT  # noqa: E402
from strategies.rules.lfighter import _neuron_data  # noqa: E402
from defense_helpers import built, same_partition


def layout_of(c: int, h: int, bias: bool = True):
    names = ["fc1.weight", "fc1.bias", "fc2.weight"] + (["fc2.bias"] if bias else [])
    arrays = [np.zeros((h, 3)), np.zeros(h), np.zeros((c, h))] + ([np.zeros(c)] if bias else [])
    return make_layout(names, arrays, "fc2")


def with_output_rows(layout, rows: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Client updates whose output rows ([K, C, H+1]) are ``rows``, other params ``rest``."""
    upd = rest.copy()
    c, hp1 = rows.shape[1:]
    upd[:, layout.slice_of(layout.output_weight)] = rows[:, :, : hp1 - 1].reshape(len(rows), -1)
    upd[:, layout.slice_of(layout.output_bias)] = rows[:, :, -1]
    return upd


# ---------------------------------------------------------------- helpers


def test_inverse_density_hand_computed():
    # unit vectors at 0°, 30°, 90° (scaled arbitrarily): pairwise angles 30, 90, 60
    # max per vector: 90, 60, 90 -> mean 80° = 4π/9
    deg = np.radians([0.0, 30.0, 90.0])
    v = np.stack([np.cos(deg), np.sin(deg)], axis=1) * np.array([[1.0], [5.0], [0.2]])
    assert inverse_density(v) == pytest.approx(4 * math.pi / 9, rel=1e-12)
    assert inverse_density(v[:1]) == 0.0  # one member: only θ_ii = 0
    assert inverse_density(np.tile(v[1], (4, 1))) == 0.0  # identical: exactly 0
    # opposite directions: π
    assert inverse_density(np.array([[1.0, 1.0], [-2.0, -2.0]])) == pytest.approx(math.pi)


def test_neuron_magnitudes_against_loop():
    rng = np.random.default_rng(0)
    for bias in (True, False):
        layout = layout_of(5, 4, bias=bias)
        upd = rng.normal(size=(6, layout.num_params))
        w = upd[:, layout.slice_of(2)].reshape(6, 5, 4)
        got = neuron_magnitudes(upd, layout)
        for k in range(6):
            for i in range(5):
                expected = math.sqrt(sum(x * x for x in w[k, i]))
                if bias:
                    expected += abs(upd[k, layout.slice_of(3)][i])
                assert got[k, i] == pytest.approx(expected, rel=1e-12)


def test_top_two_order_and_ties():
    np.testing.assert_array_equal(top_two(np.array([1.0, 5.0, 3.0, 5.0])), [1, 3])
    np.testing.assert_array_equal(top_two(np.array([[0.0, 2.0, 1.0], [3.0, 1.0, 2.0]])), [[1, 2], [0, 2]])


# ---------------------------------------------------------------- mild


def sybil_case():
    """C=3, H=2. Rows per neuron are [w1, w2, b].

    sybils S (x3): n0 = [-4,0,0], n1 = [3,0,0]; H1: n0=[3,0,0], n1=[0,-3,0];
    H2: n0=[0,3,0], n1=[-3,0,0]; n2 = 0 except H1's bias 0.1.
    Σ magnitudes: n0 = 3·4+3+3 = 18, n1 = 3·3+3+3 = 15, n2 = 0.1 -> neurons [0, 1].
    x_S = [-4,0,0,3,0,0], x_H1 = [3,0,0,0,-3,0], x_H2 = [0,3,0,-3,0,0].
    k-means: {S,S,S} vs {H1,H2} (SSE 18; moving H1 or H2 to the sybils costs ≥ 45.75).
    dns_S = 0 (identical); θ(H1, H2) = arccos(0) = π/2 -> dns_H = π/2.
    score_S = 3/5 · 0 = 0 < score_H = 2/5 · π/2 = π/5 -> sybils dropped.
    """
    layout = layout_of(3, 2)
    s = [[-4, 0, 0], [3, 0, 0], [0, 0, 0]]
    h1 = [[3, 0, 0], [0, -3, 0], [0, 0, 0.1]]
    h2 = [[0, 3, 0], [-3, 0, 0], [0, 0, 0]]
    rows = np.array([s, s, s, h1, h2], dtype=float)
    rest = np.random.default_rng(1).normal(size=(5, layout.num_params))
    return layout, with_output_rows(layout, rows, rest)


def test_identical_sybils_hand_worked():
    layout, upd = sybil_case()
    weights = np.array([10.0, 10.0, 10.0, 30.0, 10.0])
    agg = lfighter(upd, weights, layout, mode="mild")
    np.testing.assert_array_equal(agg.kept, [False, False, False, True, True])
    assert agg.info["neurons"] == [0, 1]
    np.testing.assert_allclose(agg.info["magnitude_sum"], [18.0, 15.0, 0.1])
    labels = agg.info["cluster"]
    bad = agg.info["bad_cluster"]
    assert labels[:3] == [bad] * 3 and labels[3:] == [1 - bad] * 2
    assert agg.info["dns"][bad] == 0.0
    assert agg.info["dns"][1 - bad] == pytest.approx(math.pi / 2)
    assert agg.info["scores"][bad] == 0.0
    assert agg.info["scores"][1 - bad] == pytest.approx(math.pi / 5)
    np.testing.assert_allclose(agg.update, (30 * upd[3] + 10 * upd[4]) / 40)
    np.testing.assert_allclose(agg.weights, [0, 0, 0, 0.75, 0.25])


def mild_case(seed: int, n_honest: int = 7, n_att: int = 3, src: int = 3, tgt: int = 5):
    c, h = 10, 8
    layout = layout_of(c, h)
    rng = np.random.default_rng(seed)
    k = n_honest + n_att
    g_src, g_tgt = rng.normal(size=h + 1), rng.normal(size=h + 1)
    rows = 0.05 * rng.normal(size=(k, c, h + 1))
    sign = np.r_[np.ones(n_honest), -np.ones(n_att)]
    rows[:, src, :] += sign[:, None] * 1.0 * g_src + 0.3 * rng.normal(size=(k, h + 1))
    rows[:, tgt, :] += -sign[:, None] * 0.7 * g_tgt + 0.3 * rng.normal(size=(k, h + 1))
    upd = with_output_rows(layout, rows, 0.1 * rng.normal(size=(k, layout.num_params)))
    return layout, upd


@pytest.mark.parametrize("seed", range(5))
def test_planted_mild_attackers_dropped(seed):
    layout, upd = mild_case(seed)
    agg = lfighter(upd, np.ones(10), layout, mode="mild", seed=seed)
    assert set(agg.info["neurons"]) == {3, 5}
    np.testing.assert_array_equal(agg.kept, np.r_[np.ones(7, bool), np.zeros(3, bool)])
    assert agg.info["scores"][agg.info["bad_cluster"]] < agg.info["scores"][1 - agg.info["bad_cluster"]]
    np.testing.assert_allclose(agg.update, upd[:7].mean(axis=0))


def test_sign_flip_and_scale_invariance():
    # LFighter's gradients are (global - local)/lr = -u/lr: same decision
    layout, upd = mild_case(11)
    a = lfighter(upd, np.ones(10), layout, mode="mild")
    b = lfighter(-upd / 0.01, np.ones(10), layout, mode="mild")
    np.testing.assert_array_equal(a.kept, b.kept)
    assert a.info["neurons"] == b.info["neurons"]


def test_tied_scores_drop_cl2_per_procedure_1():
    # two internally identical groups: dns = 0 for both -> scores tie at 0.
    # A tie must drop someone: Procedure 1 (l. 10-13: cl_1 only if score_1 < score_2)
    # and the authors' code (good_cl = 0 unless ds_0 < ds_1) drop cl_2 = k-means label 1.
    layout, upd = sybil_case()
    upd[4] = upd[3]
    agg = lfighter(upd, np.ones(5), layout, mode="mild")
    assert agg.info["scores"] == [0.0, 0.0] and agg.info["bad_cluster"] == 1
    labels = np.array(agg.info["cluster"])
    np.testing.assert_array_equal(agg.kept, labels == 0)
    assert 0 < agg.kept.sum() < 5


def bias_case():
    """C=3, H=2. Honest 0-2 and identical attackers 3-4 differ in their weight rows; a large
    neuron-0 bias (+5 / -5) cuts across both groups.

    weights only (paper, code): x = [w_n0, w_n1]: {0,1,2} (n0 ≈ [1, ±0.2], n1 = [0, 1]) vs
    {3,4} (n0 = [-1,0], n1 = [0,-1]); dns_att = 0 -> score 0 -> attackers dropped.
    with biases: x = [w_n0, b_n0, w_n1, b_n1]; the ±5 bias dominates the distances, k-means
    splits {0,3} (b=+5) vs {1,2,4} (b=-5) and an honest client is dropped with an attacker.
    """
    layout = layout_of(3, 2)
    rows = np.array([
        [[1, 0.2, 5], [0, 1, 0], [0, 0, 0]],
        [[1, -0.2, -5], [0, 1, 0], [0, 0, 0]],
        [[1, 0, -5], [0, 1, 0], [0, 0, 0]],
        [[-1, 0, 5], [0, -1, 0], [0, 0, 0]],
        [[-1, 0, -5], [0, -1, 0], [0, 0, 0]],
    ], dtype=float)
    return layout, with_output_rows(layout, rows, np.zeros((5, layout.num_params)))


def test_weights_only_features_by_default_bias_as_switch():
    layout, upd = bias_case()
    paper = lfighter(upd, np.ones(5), layout, mode="mild")
    np.testing.assert_array_equal(paper.kept, [True, True, True, False, False])
    assert paper.info["include_bias"] is False
    old = lfighter(upd, np.ones(5), layout, mode="mild", include_bias=True)
    labels = np.array(old.info["cluster"])
    assert labels[0] == labels[3] and labels[1] == labels[2] == labels[4] and labels[0] != labels[1]
    assert old.kept.tolist() != paper.kept.tolist()


def score_case():
    """C=3, H=2, weights only. x = [w_n0, w_n1] (4 numbers per client).

    cluster A (clients 0-2): x ≈ [1, 0, 1, 0] with tiny spread (dns_A ≈ 0.01 rad);
    cluster B (clients 3-4): [0, 5, 0, 5] and [3, 5, 3, 5]: cos = 50 / sqrt(50 · 68) ≈ 0.857, θ ≈ 0.540.
    paper: score_A = 3/5 · ~0.01 < score_B = 2/5 · 0.540 -> A (the majority) is dropped.
    code:  every in-cluster cosine ≥ 0, so min_j (cos − I)_ij = 0 and the score is the size share:
           3/5 > 2/5 -> B is dropped.
    """
    layout = layout_of(3, 2)
    rows = np.zeros((5, 3, 3))
    for k, e in enumerate([0.0, 0.01, -0.01]):
        rows[k, 0, :2] = [1, e]
        rows[k, 1, :2] = [1, -e]
    rows[3, 0, :2], rows[3, 1, :2] = [0, 5], [0, 5]
    rows[4, 0, :2], rows[4, 1, :2] = [3, 5], [3, 5]
    return layout, with_output_rows(layout, rows, np.zeros((5, layout.num_params)))


def test_paper_score_vs_code_score_hand_worked():
    layout, upd = score_case()
    paper = lfighter(upd, np.ones(5), layout, mode="mild")
    code = lfighter(upd, np.ones(5), layout, mode="mild", score="code")
    np.testing.assert_array_equal(paper.kept, [False, False, False, True, True])
    np.testing.assert_array_equal(code.kept, [True, True, True, False, False])
    bad = code.info["bad_cluster"]
    assert code.info["dns"] == pytest.approx([1.0, 1.0])  # 1 − mean(min(cos − I)) = 1 − 0
    assert code.info["scores"][bad] == pytest.approx(0.4)
    assert paper.info["scores"][paper.info["bad_cluster"]] < 0.01
    with pytest.raises(ValueError, match="score"):
        lfighter(upd, np.ones(5), layout, score="other")


def test_code_dissimilarity_hand_computed():
    from strategies.rules.lfighter import code_dissimilarity

    assert code_dissimilarity(np.array([[1.0, 0.0]])) == pytest.approx(1.0)
    # cos = [[1, -1], [-1, 1]] - I = [[0, -1], [-1, 0]] -> min -1 each -> 1 - (-1) = 2
    assert code_dissimilarity(np.array([[1.0, 0.0], [-2.0, 0.0]])) == pytest.approx(2.0)


def test_strategy_uses_one_kmeans_seed_for_the_whole_run(monkeypatch):
    from strategies import defenses
    from strategies.rules import lfighter as lf

    seen = []
    real = lf.lfighter

    def spy(*args, **kw):
        seen.append((kw["seed"], kw["n_init"], kw["include_bias"], kw["score"]))
        return real(*args, **kw)

    monkeypatch.setattr(lf, "lfighter", spy)
    layout, upd = mild_case(0)
    strat = defenses.LFighter(seed=7, n_init=4, include_bias=True, score="code", clients_per_round=10)
    for rnd in (1, 2, 3):
        strat.aggregate_updates(upd, np.ones(10), layout, list(range(10)), rnd)
    assert seen == [(7, 4, True, "code")] * 3  # the run's seed in every round, not seed + round


# ---------------------------------------------------------------- extreme

C_EX, H_EX = 10, 8
FEATURE = {1: 0, 7: 1, 4: 2, 5: 3, 9: 4, 2: 5}  # class -> its input-feature direction


def extreme_client(rng, layout, label: int, data_class: int, pushed: int | None = None):
    """One-class client: its label's neuron is pulled towards the data's feature
    direction f, every other neuron pushed slightly away. A label flipper
    (data of class 7 labelled 1) also pushes neuron 7 hard away."""
    f = np.eye(H_EX)[FEATURE[data_class]]
    rows = np.zeros((C_EX, H_EX + 1))
    rows[:, :H_EX] = -0.1 * f
    rows[:, H_EX] = -0.05
    rows[label, :H_EX], rows[label, H_EX] = f, 0.5
    if pushed is not None:
        rows[pushed, :H_EX], rows[pushed, H_EX] = -0.8 * f, -0.4
    rows += rng.normal(0, 0.02, rows.shape)
    return rows


def extreme_updates(seed: int, spec):
    layout = layout_of(C_EX, H_EX)
    rng = np.random.default_rng(seed)
    rows = np.array([extreme_client(rng, layout, *s) for s in spec])
    return layout, with_output_rows(layout, rows, 0.1 * rng.normal(size=(len(spec), layout.num_params)))


@pytest.mark.parametrize("seed", range(3))
def test_extreme_smaller_cluster_with_same_top_neuron_dropped(seed):
    # 4 honest class-1, 3 attackers (7 -> 1: they look like class-1 trainers),
    # 3 honest class-7, 3 class-4, 3 class-5. Attackers and class-1 clusters
    # share top neuron 1; the attackers' is smaller -> dropped.
    spec = [(1, 1)] * 4 + [(1, 7, 7)] * 3 + [(7, 7)] * 3 + [(4, 4)] * 3 + [(5, 5)] * 3
    layout, upd = extreme_updates(seed, spec)
    agg = lfighter(upd, np.ones(len(spec)), layout, mode="extreme")
    expected = np.ones(len(spec), bool)
    expected[4:7] = False
    np.testing.assert_array_equal(agg.kept, expected)
    labels = np.array(agg.info["cluster"])
    assert len(set(labels)) == 5 and (labels >= 0).all()
    tops = dict(zip(sorted(set(labels)), agg.info["cluster_top_neuron"]))
    assert tops[labels[0]] == tops[labels[4]] == 1 and tops[labels[7]] == 7
    assert agg.info["bad_clusters"] == [int(labels[4])]
    assert [n[0] for n in agg.info["neurons"]] == [1] * 7 + [7] * 3 + [4] * 3 + [5] * 3


def test_extreme_two_attackers_with_min_samples_one_and_lone_noise():
    # the brief's 2 attackers: with hdbscan's default min_samples a pair is not
    # dense on its own; min_samples=1 lets it form its cluster. A lone class-9
    # client is noise (-1) and dropped, as in the paper.
    spec = [(1, 1)] * 4 + [(1, 7, 7)] * 2 + [(7, 7)] * 3 + [(4, 4)] * 2 + [(5, 5)] * 2 + [(9, 9)]
    layout, upd = extreme_updates(0, spec)
    agg = lfighter(upd, np.ones(len(spec)), layout, mode="extreme", min_samples=1)
    expected = np.ones(len(spec), bool)
    expected[[4, 5, 13]] = False
    np.testing.assert_array_equal(agg.kept, expected)
    assert agg.info["cluster"][13] == -1


def test_extreme_every_pair_rule_drops_both_smaller_clusters():
    # two attacker groups (7 -> 1 and 2 -> 1, 3 each) and 5 honest class-1:
    # three clusters with top neuron 1; both smaller ones are bad (Procedure 2
    # as written keeps only the last assignment of one bad_cluster).
    spec = [(1, 1)] * 5 + [(1, 7, 7)] * 3 + [(1, 2, 2)] * 3 + [(4, 4)] * 3
    layout, upd = extreme_updates(4, spec)
    agg = lfighter(upd, np.ones(len(spec)), layout, mode="extreme")
    expected = np.ones(len(spec), bool)
    expected[5:11] = False
    np.testing.assert_array_equal(agg.kept, expected)
    assert len(agg.info["bad_clusters"]) == 2


def test_extreme_all_noise_falls_back_to_keeping_everyone():
    # 3 distinct clients: HDBSCAN(min_cluster_size=2) peels single points off
    # the root, which it may not select -> everyone is noise
    spec = [(1, 1), (4, 4), (5, 5)]
    layout, upd = extreme_updates(0, spec)
    agg = lfighter(upd, np.ones(3), layout, mode="extreme")
    assert agg.info["cluster"] == [-1, -1, -1]
    assert agg.kept.all() and "fallback" in agg.info


# ---------------------------------------------------------------- degenerate


@pytest.mark.parametrize("mode", ["mild", "extreme"])
def test_degenerate_inputs(mode):
    layout = layout_of(3, 2)
    rng = np.random.default_rng(2)
    for k in (1, 2):
        upd = rng.normal(size=(k, layout.num_params))
        agg = lfighter(upd, np.ones(k), layout, mode=mode)
        assert agg.kept.all() and "fallback" in agg.info
        np.testing.assert_allclose(agg.update, upd.mean(axis=0))
    same = np.tile(rng.normal(size=layout.num_params), (5, 1))
    agg = lfighter(same, np.ones(5), layout, mode=mode)
    assert agg.kept.all() and "fallback" in agg.info
    zeros = np.zeros((6, layout.num_params))
    agg = lfighter(zeros, np.ones(6), layout, mode=mode)
    assert agg.kept.all()
    np.testing.assert_array_equal(agg.update, 0.0)
    # identical output layers but different elsewhere: still no split
    diff = rng.normal(size=(4, layout.num_params))
    diff[:, layout.slice_of(2)] = 1.0
    diff[:, layout.slice_of(3)] = 0.5
    assert lfighter(diff, np.ones(4), layout, mode=mode).kept.all()


def test_bad_mode_rejected():
    layout = layout_of(3, 2)
    with pytest.raises(ValueError):
        lfighter(np.zeros((3, layout.num_params)), np.ones(3), layout, mode="iid")  # type: ignore[arg-type]


def noise_mild_case():
    """12 clients of plain noise: k-means' start points decide the mild split (10 classes, 5 hidden)."""
    layout = layout_of(10, 5)
    return layout, np.random.default_rng(2).normal(size=(12, layout.num_params))


def mild_data(layout, upd, neurons) -> np.ndarray:
    """Procedure 1's input, built by hand: each client's weight rows of the two neurons, concatenated."""
    rows = layout.output_rows(upd)[:, :, :-1]
    return np.concatenate([rows[:, n] for n in neurons], axis=1)


def test_lfighter_min_samples_minus_one_means_hdbscan_default():
    assert built(defense="lfighter").min_samples is None  # -1: the paper's min_cluster_size=2 only
    assert built(defense="lfighter", **{"lfighter-min-samples": 1}).min_samples == 1


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
                    ({"n_init": 0}, "n_init must be an integer >= 1, got 0")):
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


def test_lfighter_mild_clusters_as_seeded_scikit_learn_kmeans_with_its_restarts():
    layout, upd = noise_mild_case()
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
    layout, upd = noise_mild_case()
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


SMALL = {"dataset": "digits", "num-clients": 4, "clients-per-round": 4, "num-rounds": 1, "seed": 3,
         "figures": False}


# --- 8, 9. run keys reach the defense -------------------------------------------------------------------
@pytest.mark.parametrize("partition_kind,mode", [("iid", "mild"), ("dirichlet", "mild"), ("extreme", "extreme")])
def test_lfighter_auto_mode_follows_the_partition(partition_kind, mode):
    cfg = resolve({**SMALL, "num-clients": 10, "clients-per-round": 10, "defense": "lfighter", "partition": partition_kind})
    assert build_strategy(cfg).mode == mode
