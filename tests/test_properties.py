"""Property tests (hypothesis): invariants the robust rules, partitions, flips and samplers must keep.

Update matrices are drawn from a continuous distribution through a
hypothesis-chosen seed, so score / distance ties (where a tie-break would
legitimately depend on order) have probability zero; hypothesis still picks
the shapes, the shift and the Byzantine budget.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from clients.poisoning import flip_map, injection_indices, targeted_flip_set, untargeted_flip_set
from fl_poison.data.partition import partition
from fl_poison.metrics.classification import confusion_matrix
from fl_poison.metrics.detection import detect
from fl_poison.sampling import sample_clients, sample_with_availability
from fl_poison.threat import choose_malicious, num_malicious
from strategies.robust import bulyan, krum, median, multi_krum, repeated_median, trimmed_mean

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


def _rows(seed: int, k: int, p: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(k, p))


def _rules(k: int, f: int):
    """Every robust rule with a budget valid for ``k`` clients (name -> function of (u, w))."""
    rules = {
        "median": lambda u, w: median(u, w),
        "trimmed-mean": lambda u, w: trimmed_mean(u, w, beta=0.2),
        "repeated-median": lambda u, w: repeated_median(u, w),
        "repeated-median-reweight": lambda u, w: repeated_median(u, w, reweight=True),
    }
    if k - f - 2 >= 1:
        rules["krum"] = lambda u, w: krum(u, w, num_byzantine=f)
        rules["multi-krum"] = lambda u, w: multi_krum(u, w, num_byzantine=f)
    if k >= 4 * f + 3:
        rules["bulyan"] = lambda u, w: bulyan(u, w, num_byzantine=f)
        rules["bulyan-flower"] = lambda u, w: bulyan(u, w, num_byzantine=f, selection="flower")
    return rules


def _clear_selection(agg) -> bool:
    """False when a Krum-score selection sits on a tie (then the lower index wins, legitimately order-dependent).

    With ``K - f - 2 = 1`` neighbour, two mutual nearest neighbours always tie,
    so ties are not a measure-zero event there.
    """
    if agg.info.get("selection_ties"):
        # an iterated Bulyan step sat on a tie: with |R| - f - 2 = 1 neighbour (the last steps when f >= 1),
        # two mutual nearest neighbours always tie and the lower index wins -- order-dependent by definition
        return False
    if "scores" not in agg.info:
        return True
    s = np.sort(np.asarray(agg.info["scores"]))
    m = int(np.sum(agg.kept))
    return m >= s.size or s[m] - s[m - 1] > 1e-9 * (1.0 + abs(s[m]))


RULE_NAMES = ["median", "trimmed-mean", "repeated-median", "repeated-median-reweight", "krum", "multi-krum",
              "bulyan", "bulyan-flower"]
shapes = st.tuples(st.integers(0, 2**31), st.integers(3, 12), st.integers(1, 6), st.integers(0, 2))


@pytest.mark.parametrize("name", RULE_NAMES)
@SETTINGS
@given(shape=shapes, perm_seed=st.integers(0, 2**31))
def test_robust_rules_are_permutation_invariant(name, shape, perm_seed):
    seed, k, p, f = shape
    rules = _rules(k, f)
    assume(name in rules)
    u = _rows(seed, k, p)
    w = np.ones(k)
    perm = np.random.default_rng(perm_seed).permutation(k)
    a, b = rules[name](u, w), rules[name](u[perm], w[perm])
    assume(_clear_selection(a))
    assert np.allclose(a.update, b.update, atol=1e-10)
    assert np.array_equal(np.asarray(a.kept)[perm], np.asarray(b.kept))


@pytest.mark.parametrize("name", RULE_NAMES)
@SETTINGS
@given(shape=shapes, shift=st.lists(st.floats(-5, 5), min_size=6, max_size=6))
def test_robust_rules_are_translation_equivariant(name, shape, shift):
    seed, k, p, f = shape
    rules = _rules(k, f)
    assume(name in rules)
    u = _rows(seed, k, p)
    c = np.asarray(shift[:p])
    w = np.ones(k)
    a, b = rules[name](u, w), rules[name](u + c, w)
    assume(_clear_selection(a))
    assert np.allclose(a.update + c, b.update, atol=1e-8)
    assert np.array_equal(a.kept, b.kept)


@pytest.mark.parametrize("name", RULE_NAMES)
@SETTINGS
@given(shape=shapes, weights_seed=st.integers(0, 2**31))
def test_robust_rules_stay_within_the_range_of_the_kept_updates(name, shape, weights_seed):
    seed, k, p, f = shape
    rules = _rules(k, f)
    assume(name in rules)
    u = _rows(seed, k, p)
    w = np.random.default_rng(weights_seed).integers(1, 50, size=k).astype(float)
    agg = rules[name](u, w)
    kept = u[np.asarray(agg.kept, dtype=bool)]
    assert kept.shape[0] >= 1
    assert np.all(agg.update >= kept.min(axis=0) - 1e-9)
    assert np.all(agg.update <= kept.max(axis=0) + 1e-9)


@pytest.mark.parametrize("name", RULE_NAMES)
@SETTINGS
@given(row=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=5), k=st.integers(3, 11), f=st.integers(0, 2))
def test_robust_rules_of_equal_updates_are_that_update(name, row, k, f):
    rules = _rules(k, f)
    assume(name in rules)
    u = np.tile(np.asarray(row), (k, 1))
    agg = rules[name](u, np.arange(1.0, k + 1))
    assert np.allclose(agg.update, row, rtol=1e-12, atol=1e-9)


@SETTINGS
@given(shape=shapes)
def test_krum_selects_the_lowest_brute_force_score(shape):
    seed, k, p, f = shape
    assume(k - f - 2 >= 1)
    u = _rows(seed, k, p)
    n = k - f - 2
    scores = [sum(sorted(float(((u[i] - u[j]) ** 2).sum()) for j in range(k) if j != i)[:n]) for i in range(k)]
    agg = krum(u, np.ones(k), num_byzantine=f)
    assume(_clear_selection(agg))
    assert np.flatnonzero(agg.kept).tolist() == [int(np.argmin(scores))]
    assert np.allclose(agg.update, u[int(np.argmin(scores))])
    m = multi_krum(u, np.ones(k), num_byzantine=f)
    assume(_clear_selection(m))
    assert sorted(np.flatnonzero(m.kept).tolist()) == sorted(np.argsort(scores)[: max(1, k - f)].tolist())


# --- partitions -----------------------------------------------------------------------------------------
@SETTINGS
@given(seed=st.integers(0, 2**31), n_per_class=st.integers(10, 40), clients=st.integers(2, 10),
       scheme=st.sampled_from(["iid", "dirichlet", "extreme"]), alpha=st.floats(0.05, 10.0))
def test_partitions_cover_every_sample_exactly_once(seed, n_per_class, clients, scheme, alpha):
    classes = 5
    if scheme == "extreme":
        clients = max(clients, classes)
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(classes), n_per_class))
    try:
        parts = partition(labels, clients, scheme, seed=seed, alpha=alpha, num_classes=classes)
    except ValueError:
        assume(False)  # a documented refusal (e.g. a Dirichlet split that cannot give every client data)
    assert len(parts) == clients
    allidx = np.concatenate(parts)
    assert np.array_equal(np.sort(allidx), np.arange(labels.size))
    assert all(np.array_equal(p, np.sort(p)) for p in parts)
    if scheme == "extreme":
        assert all(len(np.unique(labels[p])) <= 1 for p in parts)


# --- flips ----------------------------------------------------------------------------------------------
labels_st = st.lists(st.integers(0, 9), min_size=0, max_size=60).map(lambda xs: np.asarray(xs, dtype=np.int64))


@SETTINGS
@given(y=labels_st, source=st.integers(0, 9), delta=st.integers(1, 9))
def test_targeted_flip_touches_exactly_the_source_labels(y, source, delta):
    target = (source + delta) % 10
    idx, new = targeted_flip_set(y, source=source, target=target, injection_rate=-1.0, rng=np.random.default_rng(0))
    assert np.array_equal(idx, np.arange(y.size))
    assert np.array_equal(new[y != source], y[y != source])
    assert np.all(new[y == source] == target)


@SETTINGS
@given(y=labels_st, seed=st.integers(0, 2**31), kind=st.sampled_from(["reverse", "random"]))
def test_untargeted_flip_follows_the_map_and_random_maps_are_derangements(y, seed, kind):
    mapping = flip_map(kind, 10, seed)
    assert sorted(mapping.tolist()) == list(range(10))
    if kind == "random":
        assert not np.any(mapping == np.arange(10))
    idx, new = untargeted_flip_set(y, mapping=mapping, injection_rate=-1.0)
    assert np.array_equal(idx, np.arange(y.size)) and np.array_equal(new, mapping[y])


@SETTINGS
@given(y=labels_st, source=st.integers(0, 9), rate=st.floats(0.01, 1.0), seed=st.integers(0, 2**31))
def test_injection_keeps_the_size_and_the_share_and_flips_only_source_examples(y, source, rate, seed):
    target = (source + 1) % 10
    idx, new = targeted_flip_set(y, source=source, target=target, injection_rate=rate, rng=np.random.default_rng(seed))
    n_src, n_other = int((y == source).sum()), int((y != source).sum())
    if n_src == 0:
        assert idx.size == 0
        return
    assert np.array_equal(idx, np.sort(idx)) and idx.size == new.size
    chosen = y[idx]
    assert np.array_equal(new[chosen != source], chosen[chosen != source])
    assert np.all(new[chosen == source] == target)
    want_src = min(y.size, max(1, int(np.floor(rate * y.size + 0.5 + 1e-9))))
    assert int((chosen == source).sum()) == want_src  # the share, repeated when too few source examples exist
    assert idx.size == (y.size if n_other or want_src == y.size else want_src)  # the local set size
    for pool, k in ((np.flatnonzero(y == source), want_src), (np.flatnonzero(y != source), y.size - want_src)):
        picked = idx[np.isin(idx, pool)]
        assert len(np.unique(picked)) == min(k, pool.size)  # distinct until the pool is used up
    again = injection_indices(y, source, rate, np.random.default_rng(seed))
    assert np.array_equal(again, idx)  # a function of the generator's seed


# --- threat model, sampling, metrics --------------------------------------------------------------------
@SETTINGS
@given(n=st.integers(1, 60), frac=st.floats(0, 1), seed=st.integers(0, 2**31), data=st.data())
def test_malicious_draw_is_seeded_and_within_eligible(n, frac, seed, data):
    m = num_malicious(n, frac, -1)
    assert 0 <= m <= n and abs(m - frac * n) <= 0.5 + 1e-9
    eligible = data.draw(st.sets(st.integers(0, n - 1), min_size=m, max_size=n))
    a = choose_malicious(n, m, seed=seed, eligible=sorted(eligible))
    assert a == choose_malicious(n, m, seed=seed, eligible=sorted(eligible))
    assert len(set(a)) == m and set(a) <= eligible and list(a) == sorted(a)


@SETTINGS
@given(seed=st.integers(0, 2**31), n_h=st.integers(0, 20), n_m=st.integers(0, 20), alpha=st.floats(0, 1),
       data=st.data())
def test_availability_sampling_picks_distinct_known_clients(seed, n_h, n_m, alpha, data):
    honest, mal = list(range(n_h)), list(range(100, 100 + n_m))
    k = data.draw(st.integers(0, n_h + n_m))
    chosen = sample_with_availability(np.random.default_rng(seed), honest, mal, k, alpha)
    assert len(chosen) == k == len(set(chosen)) and chosen == sorted(chosen)
    assert set(chosen) <= set(honest) | set(mal)
    if alpha == 0.0:
        assert sum(c >= 100 for c in chosen) == max(0, k - n_h)
    if alpha == 1.0:
        assert sum(c >= 100 for c in chosen) == min(k, n_m)
    plain = sample_clients(np.random.default_rng(seed), n_h + n_m, k)
    assert len(set(plain)) == k and all(0 <= c < n_h + n_m for c in plain)


@SETTINGS
@given(y=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=80))
def test_confusion_matrix_is_rows_true_columns_predicted(y):
    from sklearn.metrics import confusion_matrix as sk

    t = np.array([a for a, _ in y], dtype=np.int64)
    p = np.array([b for _, b in y], dtype=np.int64)
    cm = confusion_matrix(t, p, 6)
    assert cm.sum() == len(y)
    assert np.array_equal(cm.sum(axis=1), np.bincount(t, minlength=6))
    assert np.array_equal(cm.sum(axis=0), np.bincount(p, minlength=6))
    if len(y):
        assert np.array_equal(cm, sk(t, p, labels=list(range(6))))


@SETTINGS
@given(parts=st.sets(st.integers(0, 30), max_size=20), data=st.data())
def test_detection_counts_every_participant_once(parts, data):
    flagged = data.draw(st.sets(st.sampled_from(sorted(parts)) if parts else st.nothing()))
    mal = data.draw(st.sets(st.integers(0, 40)))
    d = detect(flagged, mal, sorted(parts))
    assert d.tp + d.fp + d.fn + d.tn == len(parts)
    assert d.tp == len(flagged & mal) and d.fp == len(flagged - mal)
    assert d.fn == len((parts & mal) - flagged)
