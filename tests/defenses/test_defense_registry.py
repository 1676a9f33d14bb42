"""The defense registry (strategies/registry.py): built-ins listed, budgets per rule, strategies built from run keys."""

from __future__ import annotations

import numpy as np
import pytest
from fl_poison.config import ConfigError, resolve
from strategies import defenses as D
from strategies.base import DefenseStrategy
from strategies.registry import build_strategy
from test_lfighter import layout_of
from test_pca import SRC
from config_errors import config_error
from defense_helpers import built, same_partition
from test_pca import unstructured_rows, with_source_rows


BUILTIN = {"bulyan", "fedavg", "foolsgold", "krum", "lfighter", "median", "multi-krum", "ndc", "pca",
           "repeated-median", "trimmed-mean"}


def mild_case():
    """12 clients of plain noise: k-means' start points decide the mild split (10 classes, 5 hidden)."""
    layout = layout_of(10, 5)
    return layout, np.random.default_rng(2).normal(size=(12, layout.num_params))


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


def test_build_strategy_samples_clients_per_round_of_num_clients():
    s = build_strategy(resolve({"defense": "median", "num-clients": 8, "clients-per-round": 6}))
    assert (s.clients_per_round, s.min_train_nodes, s.min_available_nodes) == (6, 6, 8)
    assert s.fraction_train == pytest.approx(0.75)
    assert s.capture_updates is False


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


@pytest.mark.parametrize("key,value", [("cc-tau", 0.0), ("cc-tau", -1.0), ("cc-iterations", 0),
                                       ("geomed-eps", 0.0), ("geomed-iterations", 0), ("flame-noise", -0.1),
                                       ("dnc-subsample", 0), ("dnc-filter-fraction", 0.0),
                                       ("signguard-lower", 1.5), ("signguard-upper", 0.5)])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError) as err:
        resolve({"defense": "centered-clipping", key: value})
    assert err.value.key == key


def _budgets():
    """Every Byzantine budget the rules declare (module-level ByzantineBudget objects), and DnC's for a few c."""
    import importlib
    import pkgutil

    import strategies.rules
    from fl_poison import config as C
    from strategies.rules import dnc

    found = {f"config.{n}": v for n, v in vars(C).items() if isinstance(v, C.ByzantineBudget)}
    for info in pkgutil.iter_modules(strategies.rules.__path__):
        mod = importlib.import_module(f"strategies.rules.{info.name}")
        found.update({f"{info.name}.{n}": v for n, v in vars(mod).items()
                      if isinstance(v, C.ByzantineBudget) and v.__class__.__module__ == C.__name__})
    found.update({f"dnc_budget({c})": dnc.dnc_budget(c) for c in (0.5, 1.0, 2.0)})
    return found


BUDGETS = _budgets()


def test_the_budgets_of_every_f_rule_are_declared():
    assert {"config.NNM_BUDGET", "robust.KRUM_BUDGET", "robust.BULYAN_BUDGET"} <= set(BUDGETS)


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_a_budgets_check_and_its_messages_agree_on_the_largest_f(name):
    """largest(k) is exactly where fits() ends; the pure refusal and the run-key refusal both name it."""
    b = BUDGETS[name]
    for k in range(1, 24):
        if not b.fits(k, 0):
            continue
        top = b.largest(k)
        assert top >= 0 and b.fits(k, top) and not b.fits(k, top + 1), (name, k)
        b.require(k, top)
        with pytest.raises(ValueError) as err:
            b.require(k, top + 1)
        assert str(err.value) == b.refusal(k, top + 1)
        assert f"num-byzantine <= {top}" in str(err.value) and b.rule in str(err.value)
        b.check(k, top, top)
        with pytest.raises(ConfigError) as cerr:
            b.check(k, top + 1, top + 1)
        assert cerr.value.key == "num-byzantine" and cerr.value.allowed.endswith(f"with {k} clients f <= {top}")
        assert b.requirement("clients-per-round") in cerr.value.allowed


@pytest.mark.parametrize(("defense", "budget"), [("krum", "robust.KRUM_BUDGET"), ("bulyan", "robust.BULYAN_BUDGET"),
                                                 ("dnc", "dnc_budget(1.0)")])
def test_the_plugin_refuses_the_f_its_pure_rule_refuses(defense, budget):
    """The same f is refused before the run and by the rule on that many rows, in the same words."""
    from strategies.rules import dnc as dnc_rule
    from strategies.rules import robust

    b, k = BUDGETS[budget], 11
    f = b.largest(k) + 1
    e = config_error(defense=defense, **{"num-clients": k, "clients-per-round": k, "num-byzantine": f,
                                         "dnc-filter-fraction": 1.0})
    assert e.key == "num-byzantine" and b.requirement("clients-per-round") in e.allowed
    rule = {"krum": robust.krum, "bulyan": robust.bulyan, "dnc": dnc_rule.dnc}[defense]
    with pytest.raises(ValueError, match="^" + __import__("re").escape(b.refusal(k, f)) + "$"):
        rule(np.random.default_rng(0).normal(size=(k, 4)), np.ones(k), num_byzantine=f)
    resolve({"defense": defense, "num-clients": k, "clients-per-round": k, "num-byzantine": f - 1})


def test_nnm_refuses_the_f_its_relation_refuses():
    from fl_poison.config import NNM_BUDGET
    from strategies.rules.pre_aggregation import check_nnm_budget

    k = 10
    f = NNM_BUDGET.largest(k) + 1
    e = config_error(**{"pre-aggregation": "nnm", "defense": "krum", "num-byzantine": f})
    assert e.key == "num-byzantine" and e.allowed.endswith(f"with {k} clients f <= {f - 1}, or -1")
    with pytest.raises(ValueError, match="^" + __import__("re").escape(NNM_BUDGET.refusal(k, f)) + "$"):
        check_nnm_budget(k, f)


#: One non-default value per key of the newer rules, each chosen to change the aggregate of ``_keyed_case``
#: (geometric median: fewer iterations / more smoothing; centered clipping: a radius below the norms, more
#: iterations; DnC, whose base case samples 17 of the 300 coordinates: fewer iterations, all coordinates, a
#: larger filter; SignGuard, from 6 sign coordinates: bounds that cut
#: the norms, all coordinates; FLAME: more noise).
KEY_CHANGES = {
    "geometric-median": {"geomed-eps": 1e3, "geomed-iterations": 1},  # nu above every distance: the mean
    "centered-clipping": {"cc-tau": 0.5, "cc-iterations": 3},
    "dnc": {"dnc-iterations": 1, "dnc-subsample": 300, "dnc-filter-fraction": 2.5},
    "signguard": {"signguard-lower": 0.99, "signguard-upper": 1.0, "signguard-coord-fraction": 1.0},
    "flame": {"flame-noise": 0.5},
}


def _keyed_case():
    """11 clients x 300 coordinates: 8 honest N(0.1, 1) updates of different scales, 3 scaled attackers."""
    rng = np.random.default_rng(11)
    u = rng.normal(0.1, 1.0, size=(11, 300)) * np.linspace(0.6, 1.6, 11)[:, None]
    u[8:] = 4.0 * rng.normal(-0.3, 1.0, size=(3, 300))
    return u, np.ones(11)


#: Keys every case of a defense starts from.
KEY_BASE = {"dnc": {"num-byzantine": 2, "dnc-subsample": 17}, "signguard": {"signguard-coord-fraction": 0.02}}


def _aggregate(defense, round_=3, **keys):
    u, w = _keyed_case()
    s = built(defense=defense, **{**KEY_BASE.get(defense, {}), **keys})
    return s.aggregate_updates(u, w, None, list(range(11)), round_)


@pytest.mark.parametrize("defense,key", [(d, k) for d, ks in KEY_CHANGES.items() for k in ks])
def test_each_key_of_a_newer_rule_reaches_its_aggregate(defense, key):
    """The plug-in hands every key to its rule (a dropped keyword falls back to the rule's default)."""
    base = _aggregate(defense)
    changed = _aggregate(defense, **{key: KEY_CHANGES[defense][key]})
    assert not (np.array_equal(base.update, changed.update) and np.array_equal(base.kept, changed.kept))


@pytest.mark.parametrize("defense", ["dnc", "signguard", "flame"])
def test_a_seeded_rule_draws_from_the_round_generator(defense):
    """Same seed and round: the same aggregate (an unseeded draw differs); FLAME's noise differs by round."""
    a, b = _aggregate(defense), _aggregate(defense)
    np.testing.assert_array_equal(a.update, b.update)
    np.testing.assert_array_equal(a.kept, b.kept)
    if defense == "flame":
        assert not np.array_equal(a.update, _aggregate(defense, round_=4).update)
