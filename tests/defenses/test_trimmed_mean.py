"""The trimmed mean (strategies/rules/robust.py, strategies/defenses/trimmed_mean.py): slicing, the cut, trim-beta."""

from __future__ import annotations

from robust_cases import outlier_rows

import numpy as np
import pytest
from strategies.rules.robust import trimmed_mean
from strategies.rules import robust as R
from fl_poison.config import resolve
from fl_poison.updates import infer_layout
from strategies.registry import build_strategy


def ref_trimmed(u: np.ndarray, beta: float) -> np.ndarray:
    c = int(beta * len(u))
    s = np.sort(u, axis=0)
    return s[c : len(u) - c].mean(axis=0)


@pytest.mark.parametrize(("k", "beta"), [(10, 0.25), (10, 0.2), (9, 0.1), (7, 0.49), (1, 0.3), (20, 0.0)])
def test_trimmed_mean_matches_sorted_slicing_and_scipy(k, beta):
    from scipy.stats import trim_mean

    rng = np.random.default_rng(k)
    u = outlier_rows(rng, k, 21, outliers=min(2, k - 1))
    agg = trimmed_mean(u, np.ones(k), beta=beta)
    np.testing.assert_allclose(agg.update, ref_trimmed(u, beta), atol=1e-15)
    np.testing.assert_allclose(agg.update, trim_mean(u, beta, axis=0), atol=1e-15)
    assert agg.info["trimmed_per_side"] == int(beta * k)


def test_trimmed_mean_rounds_the_cut_down():
    # K=10, beta=0.25: int(2.5) = 2 values cut from each end (not 3)
    u = np.arange(10.0)[:, None]
    assert trimmed_mean(u, np.ones(10), beta=0.25).update[0] == pytest.approx(np.mean(np.arange(2, 8)))


@pytest.mark.parametrize("beta", [0.5, -0.1, 0.7, "x", None, True])
def test_trimmed_mean_rejects_bad_beta(beta):
    with pytest.raises(ValueError, match="beta"):
        trimmed_mean(np.zeros((4, 2)), np.ones(4), beta=beta)


def test_trimmed_mean_reports_beta():
    agg = R.trimmed_mean(np.arange(10.0)[:, None], np.ones(10), beta=0.25)
    assert agg.info == {"beta": 0.25, "trimmed_per_side": 2}


SMALL = {"dataset": "digits", "num-clients": 4, "clients-per-round": 4, "num-rounds": 1, "seed": 3,
         "figures": False}


def test_trim_beta_reaches_the_trimmed_mean():
    cfg = resolve({**SMALL, "defense": "trimmed-mean", "trim-beta": 0.3})
    strat = build_strategy(cfg)
    u = np.array([[-50.0], [-40.0], [0.0], [1.0], [2.0], [3.0], [4.0], [100.0], [90.0], [10.0]])
    layout = infer_layout(["w", "b"], [np.zeros((1, 0)), np.zeros(1)])
    agg = strat.aggregate_updates(u, np.ones(10), layout, list(range(10)), 1)
    # beta 0.3 of 10 trims 3 per end: keeps 1, 2, 3, 4 -> 2.5 (the default 0.1 trims 1: 70 / 8 = 8.75)
    assert agg.update == pytest.approx([2.5])
    assert agg.update == pytest.approx(trimmed_mean(u, np.ones(10), layout, beta=0.3).update)
