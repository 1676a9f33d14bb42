"""Properties every robust rule and filtering defense shares: permutation invariance, translation equivariance, the box of the kept updates, equal updates, obvious attackers flagged."""

from __future__ import annotations

import numpy as np
import pytest
from fl_poison import plugins
from fl_poison.config import resolve
from fl_poison.updates import make_layout
from strategies.registry import build_strategy
from strategies.rules.dnc import dnc
from strategies.rules.flame import flame
from strategies.rules.signguard import signguard
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies.rules.robust import (BULYAN_BUDGET, KRUM_BUDGET, bulyan, krum, median, multi_krum, repeated_median,
                                     trimmed_mean)
from robust_cases import clear_selection as _clear_selection


def _attacked(seed: int = 0, honest: int = 10, bad: int = 3, p: int = 200) -> np.ndarray:
    """Honest updates around a common direction; attackers send -5x the honest mean (sign flip + boost)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=p)
    u = mu + 0.3 * rng.normal(size=(honest + bad, p))
    u[:bad] = -5.0 * u[bad:].mean(axis=0) + 0.01 * rng.normal(size=(bad, p))
    return u


FILTERS = {
    "dnc": lambda u, w, rng: dnc(u, w, num_byzantine=3, subsample=50, rng=rng),
    "signguard": lambda u, w, rng: signguard(u, w, coord_fraction=0.5, rng=rng),
    "flame": lambda u, w, rng: flame(u, w, noise=0.0, rng=rng),
}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_obvious_attackers_are_flagged_and_honest_clients_kept(name):
    u = _attacked()
    agg = FILTERS[name](u, np.ones(13), np.random.default_rng(0))
    assert not agg.kept[:3].any(), name
    if name == "flame":  # HDBSCAN's single-cluster labelling keeps only the cluster's core: at least K/2 + 1
        assert agg.kept[3:].sum() >= 13 // 2 + 1
    else:
        assert agg.kept[3:].all(), name


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filters_are_permutation_invariant(name):
    u = _attacked(seed=4)
    w = np.arange(1, 14, dtype=float)
    perm = np.random.default_rng(9).permutation(13)
    a = FILTERS[name](u, w, np.random.default_rng(3))
    b = FILTERS[name](u[perm], w[perm], np.random.default_rng(3))
    np.testing.assert_array_equal(b.kept, a.kept[perm])
    np.testing.assert_allclose(b.update, a.update, atol=1e-10)


SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


def _rows(seed: int, k: int, p: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(k, p))


#: The pure rules these properties hold for, each under its defense plug-in's name ("plug-in:variant" for a
#: non-default setting), with the Byzantine budget the rule declares (None: no f) and the rule of (u, w, f).
PURE_RULES = {
    "median": (None, lambda u, w, f: median(u, w)),
    "trimmed-mean": (None, lambda u, w, f: trimmed_mean(u, w, beta=0.2)),
    "repeated-median": (None, lambda u, w, f: repeated_median(u, w)),
    "repeated-median:reweight": (None, lambda u, w, f: repeated_median(u, w, reweight=True)),
    "krum": (KRUM_BUDGET, lambda u, w, f: krum(u, w, num_byzantine=f)),
    "multi-krum": (KRUM_BUDGET, lambda u, w, f: multi_krum(u, w, num_byzantine=f)),
    "bulyan": (BULYAN_BUDGET, lambda u, w, f: bulyan(u, w, num_byzantine=f)),
    "bulyan:flower": (BULYAN_BUDGET, lambda u, w, f: bulyan(u, w, num_byzantine=f, selection="flower")),
}
RULE_NAMES = sorted(PURE_RULES)


def _rules(k: int, f: int):
    """Every robust rule whose declared budget admits ``f`` with ``k`` clients (name -> function of (u, w))."""
    return {name: (lambda u, w, rule=rule: rule(u, w, f)) for name, (budget, rule) in PURE_RULES.items()
            if budget is None or budget.fits(k, f)}


def test_each_pure_rule_is_named_after_a_registered_defense():
    """A renamed or removed plug-in cannot leave its rule's properties checked under a stale name."""
    assert {name.split(":")[0] for name in PURE_RULES} <= set(plugins.plugins("defense"))


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


# --- every registered defense plug-in, at its defaults --------------------------------------------------
plugins.discover()
#: Defenses the plug-in-level permutation check cannot run, and why (every other registered one is checked, so a
#: new plug-in is covered without editing this file).
NOT_PERMUTATION_CHECKED = {
    "fltrust": "needs the server's update on its root data, which a run builds from server-data-samples",
    "fldetector": "needs the round's global model and per-client history across rounds (a run's strategy state)",
    "bulyan": "at the default budget the last iterated steps have one neighbour, where two mutual nearest "
              "neighbours tie and the lower index wins; the rule's property on clear selections is above",
}
PLUGIN_DEFENSES = sorted(set(plugins.plugins("defense")) - set(NOT_PERMUTATION_CHECKED))


def test_every_exclusion_names_a_registered_defense():
    assert set(NOT_PERMUTATION_CHECKED) <= set(plugins.plugins("defense"))


@pytest.mark.parametrize("name", PLUGIN_DEFENSES)
def test_every_defense_plugin_is_permutation_invariant(name):
    """Replies in another order (clients with them) give the same aggregate and flag the same clients."""
    k = 12
    arrays = [np.zeros((10, 8), np.float32), np.zeros(10, np.float32), np.zeros((8, 4), np.float32)]
    layout = make_layout(["fc2.weight", "fc2.bias", "fc1.weight"], arrays, "fc2")
    u = np.random.default_rng(0).normal(size=(k, sum(a.size for a in arrays)))
    w = np.arange(1, k + 1, dtype=float)
    perm = np.random.default_rng(9).permutation(k)

    def aggregate(rows, weights, clients):
        s = build_strategy(resolve({"defense": name, "num-clients": k, "clients-per-round": k}))
        return s.aggregate_updates(rows, weights, layout, clients, 1)

    a = aggregate(u, w, list(range(k)))
    b = aggregate(u[perm], w[perm], [int(c) for c in perm])
    np.testing.assert_allclose(b.update, a.update, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(b.kept), np.asarray(a.kept)[perm])
