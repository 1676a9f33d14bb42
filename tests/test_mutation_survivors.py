"""Tests written for mutants that survived a mutmut run (see docs/testing.md): boundaries and messages.

Error messages are part of the contract (a bad config must name the key and
what is allowed), so they are checked, not just the exception type.
"""

from __future__ import annotations

import numpy as np
import pytest

from fl_poison.threat import choose_malicious, num_malicious


def test_num_malicious_boundaries():
    assert num_malicious(0, 0.5, -1) == 0  # an empty federation is allowed
    assert num_malicious(5, 0.0, 5) == 5  # every client malicious is allowed
    assert num_malicious(5, 0.0, 0) == 0


@pytest.mark.parametrize("args,words", [
    ((-1, 0.1, -1), ["num-clients must be >= 0", "got -1"]),
    ((5, 0.1, 6), ["num-malicious=6", "0..5", "or -1 to use malicious-fraction"]),
    ((5, 1.5, -1), ["malicious-fraction must be in [0, 1]", "1.5", "(or set num-malicious to an absolute count)"]),
])
def test_num_malicious_messages_name_the_key_and_the_allowed_values(args, words):
    with pytest.raises(ValueError) as err:
        num_malicious(*args)
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize("kwargs,words", [
    ({"num_clients": 5, "n_malicious": -1, "seed": 0}, ["resolved to -1", "malicious clients; allowed: >= 0"]),
    ({"num_clients": 5, "n_malicious": 1, "seed": -2}, ["seed must be >= 0, got -2"]),
    ({"num_clients": 5, "n_malicious": 1, "seed": 0, "eligible": [5]}, ["eligible client ids must be in 0..4"]),
    ({"num_clients": 5, "n_malicious": 1, "seed": 0, "eligible": [-1]}, ["eligible client ids must be in 0..4"]),
    ({"num_clients": 5, "n_malicious": 3, "seed": 0, "eligible": [1, 2]},
     ["only 2 of 5 clients hold the source class", "or set malicious-from-source-holders=false"]),
    ({"num_clients": 5, "n_malicious": 6, "seed": 0}, ["only 5 clients", "allowed: 0..5"]),
])
def test_choose_malicious_messages(kwargs, words):
    with pytest.raises(ValueError) as err:
        choose_malicious(**kwargs)
    for w in words:
        assert w in str(err.value)


def test_choose_malicious_edge_of_the_eligible_range():
    assert choose_malicious(5, 1, seed=0, eligible=[4]) == (4,)
    assert choose_malicious(5, 1, seed=0, eligible=[0]) == (0,)
    got = choose_malicious(5, 5, seed=3)
    assert got == (0, 1, 2, 3, 4) and all(isinstance(c, int) for c in got)
    assert np.asarray(got).dtype == np.int64


# --- fl_poison/sampling.py ------------------------------------------------------------------------------
from fl_poison.sampling import sample_clients, sample_with_availability  # noqa: E402


def test_sample_clients_message():
    with pytest.raises(ValueError, match=r"num-clients must be >= 0, got -3"):
        sample_clients(np.random.default_rng(0), -3, 0)


@pytest.mark.parametrize("honest,malicious", [([1, 1, 2], [5]), ([1, 2], [5, 5])])
def test_availability_rejects_repeated_ids_in_either_pool(honest, malicious):
    with pytest.raises(ValueError, match="honest and malicious client ids must not repeat"):
        sample_with_availability(np.random.default_rng(0), honest, malicious, 1, 0.5)


def test_availability_names_only_the_clients_in_both_pools():
    with pytest.raises(ValueError) as err:
        sample_with_availability(np.random.default_rng(0), [1, 2], [2, 3], 1, 0.5)
    assert str(err.value) == "a client cannot be both honest and malicious: [2]"


# --- fl_poison/metrics ----------------------------------------------------------------------------------
import warnings  # noqa: E402

from fl_poison.metrics import classification as C  # noqa: E402
from fl_poison.metrics.detection import Detection  # noqa: E402
from fl_poison.metrics.poisoning import recall_deltas, top_misclassifications  # noqa: E402


def test_empty_matrix_metrics_are_nan_without_dividing_by_zero():
    cm = np.zeros((3, 3), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 0/0 would warn: the guard must short-circuit
        assert np.isnan(C.accuracy(cm))
        assert np.isnan(C.source_accuracy(cm, 1))
        assert np.isnan(C.attack_success_rate(cm, 1, 2))
        assert all(np.isnan(C.per_class_recall(cm)))


def test_last_k_mean_defaults_to_the_last_ten():
    assert C.last_k_mean(list(range(11))) == pytest.approx(5.5)


def test_detection_dict_keys_are_the_summary_columns():
    d = Detection(tp=1, fp=1, fn=0, tn=2).as_dict()
    assert d == {"tp": 1, "fp": 1, "fn": 0, "tn": 2, "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3)}


@pytest.mark.parametrize("args,msg", [
    (([1, 1], [1, 1, 1], 0, 1), "recall vectors must be 1-D of equal length, got (2,) and (3,)"),
    (([1, 1, 1], [1, 1, 1], 3, 1), "source-class must be in 0..2, got 3"),
    (([1, 1, 1], [1, 1, 1], 0, -1), "target-class must be in 0..2, got -1"),
    (([1, 1, 1], [1, 1, 1], 2, 2), "source-class and target-class must differ, both are 2"),
])
def test_recall_deltas_messages(args, msg):
    with pytest.raises(ValueError) as err:
        recall_deltas(*args)
    assert str(err.value) == msg


def test_top_misclassifications_rejects_negative_k():
    with pytest.raises(ValueError, match=r"k must be >= 0, got -1"):
        top_misclassifications(np.eye(3, dtype=int), -1)
