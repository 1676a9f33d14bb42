"""``aggregation-weights``: example-count FedAvg or the ADA authors' plain mean; NDC's median drop as theirs."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord

from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve
from flower_replies import StubGrid, arrays_of, make_reply
from strategies.rules.norm_clipping import ndc
from strategies.registry import build_strategy


def _aggregate(weights: str, updates=(0.0, 4.0), sizes=(10, 30), defense: str = "fedavg", **keys):
    """Clients with 1x1 ``updates`` holding ``sizes`` examples: the new model's coordinate and the shares."""
    k = len(updates)
    s = build_strategy(resolve({"defense": defense, "num-clients": k, "clients-per-round": k,
                                "aggregation-weights": weights, **keys}))
    list(s.configure_train(1, ArrayRecord([np.zeros((1, 1))]), ConfigRecord(), StubGrid(range(1, k + 1))))
    arrays, metrics = s.aggregate_train(1, [make_reply([np.array([[u]])], n, i + 1)
                                            for i, (u, n) in enumerate(zip(updates, sizes))])
    return float(arrays_of(arrays)[0][0, 0]), list(metrics["weights"])


def test_examples_weigh_by_example_count_and_uniform_is_the_plain_mean(server_identity):
    assert _aggregate("examples") == (pytest.approx(3.0), [0.25, 0.75])
    assert _aggregate("uniform") == (pytest.approx(2.0), [0.5, 0.5])


def test_uniform_reaches_the_mean_of_ndc_drop_median(server_identity):
    """Norms 1, 2, 5, 6 (median 3.5) keep 1 and 2: by examples (10 + 60) / 40, uniform (1 + 2) / 2."""
    keys = {"defense": "ndc", "ndc-mode": "drop", "ndc-bound": "median", "updates": (1.0, 2.0, 5.0, 6.0),
            "sizes": (10, 30, 5, 5)}
    assert _aggregate("examples", **keys)[0] == pytest.approx(1.75)
    assert _aggregate("uniform", **keys) == (pytest.approx(1.5), [0.5, 0.5, 0.0, 0.0])


@pytest.mark.parametrize("defense", ["median", "krum", "repeated-median"])
def test_uniform_is_refused_for_a_defense_that_does_not_average(defense, capsys):
    with pytest.raises(ConfigError) as e:
        resolve({"defense": defense, "aggregation-weights": "uniform", "num-clients": 10})
    assert e.value.key == "aggregation-weights" and f"defense={defense}" in e.value.allowed
    assert main(["run", "--set", f"defense={defense}", "--set", "aggregation-weights=uniform",
                 "--set", "data-dir=/nonexistent"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'aggregation-weights'" in err[0] and f"defense={defense}" in err[0]


def test_ndc_drop_with_the_median_bound_keeps_exactly_the_updates_strictly_below_the_median():
    """Norms 1, 2, 3, 4, 5: median 3; the authors keep 1 and 2 (3 itself is dropped) and average them."""
    u = np.diag([1.0, 2.0, 3.0, 4.0, 5.0])
    agg = ndc(u, np.ones(5), bound="median", mode="drop")
    assert agg.kept.tolist() == [True, True, False, False, False]
    np.testing.assert_allclose(agg.update, [0.5, 1.0, 0, 0, 0])
    even = ndc(np.diag([1.0, 2.0, 3.0, 4.0]), np.ones(4), bound="median", mode="drop")  # median 2.5
    assert even.kept.tolist() == [True, True, False, False]
