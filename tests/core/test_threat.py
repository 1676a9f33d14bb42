"""Persistent malicious set: count, seeded draw, source-holder restriction."""

from __future__ import annotations

import numpy as np
import pytest

from fl_poison.threat import choose_malicious, num_malicious, source_holders
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from fl_poison.sampling import sample_with_availability  # noqa: E402


def test_count_wins_over_fraction() -> None:
    assert num_malicious(50, 0.5, 3) == 3
    assert num_malicious(50, 0.5, 0) == 0


def test_fraction_rounds_half_up() -> None:
    # Python's round(2.5) == 2 and round(3.5) == 4; we want 3 and 4.
    assert num_malicious(50, 0.05, -1) == 3
    assert num_malicious(50, 0.07, -1) == 4
    assert num_malicious(50, 0.1, -1) == 5
    assert num_malicious(50, 0.3, -1) == 15
    # 0.29 * 50 == 14.499999999999998 in floats; the user means 14.5 -> 15.
    assert num_malicious(50, 0.29, -1) == 15
    assert num_malicious(50, 0.0, -1) == 0
    assert num_malicious(50, 1.0, -1) == 50


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan")])
def test_bad_fraction_names_key(fraction: float) -> None:
    with pytest.raises(ValueError, match="malicious-fraction"):
        num_malicious(50, fraction, -1)


def test_count_above_clients_names_key() -> None:
    with pytest.raises(ValueError, match="num-malicious"):
        num_malicious(10, 0.1, 11)


def test_choose_is_seeded_sorted_distinct() -> None:
    a = choose_malicious(50, 10, seed=7)
    assert a == choose_malicious(50, 10, seed=7)
    assert list(a) == sorted(set(a)) and len(a) == 10
    assert all(0 <= c < 50 for c in a)
    assert all(isinstance(c, int) for c in a)
    assert a != choose_malicious(50, 10, seed=8)


def test_choose_edge_counts() -> None:
    assert choose_malicious(5, 0, seed=0) == ()
    assert choose_malicious(5, 5, seed=0) == (0, 1, 2, 3, 4)


def test_choose_is_roughly_uniform() -> None:
    hits = np.zeros(20)
    for s in range(2000):
        hits[list(choose_malicious(20, 5, seed=s))] += 1
    # each client is chosen with probability 1/4: 500 +- ~19 (sd); allow 5 sd
    assert np.all(np.abs(hits - 500) < 100)


def test_choose_among_eligible() -> None:
    eligible = [3, 9, 11, 20, 41]
    chosen = choose_malicious(50, 3, seed=1, eligible=eligible)
    assert set(chosen) <= set(eligible) and len(chosen) == 3
    assert choose_malicious(50, 5, seed=1, eligible=eligible) == tuple(eligible)


def test_too_many_names_keys() -> None:
    with pytest.raises(ValueError, match="num-malicious") as e:
        choose_malicious(4, 5, seed=0)
    assert "malicious-from-source-holders" not in str(e.value)
    with pytest.raises(ValueError, match="malicious-from-source-holders") as e:
        choose_malicious(50, 3, seed=0, eligible=[1, 2])
    assert "num-malicious" in str(e.value) and "only 2 of 50" in str(e.value)


def test_eligible_out_of_range() -> None:
    with pytest.raises(ValueError, match="eligible"):
        choose_malicious(5, 1, seed=0, eligible=[7])


def test_source_holders() -> None:
    labels = [np.array([0, 1, 1]), np.array([2, 2]), np.array([], dtype=int), np.array([1])]
    assert source_holders(labels, 1) == [0, 3]
    assert source_holders(labels, 2) == [1]
    assert source_holders(labels, 5) == []


SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


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


@pytest.mark.parametrize("call,msg", [
    (lambda: num_malicious(5, 1.5, -1),
     "malicious-fraction must be in [0, 1], got 1.5 (or set num-malicious to an absolute count)"),
    (lambda: choose_malicious(5, -1, seed=0),
     "num-malicious / malicious-fraction resolved to -1 malicious clients; allowed: >= 0"),
])
def test_threat_messages_are_exact(call, msg):
    """The whole message, not a fragment: a garbled end of the sentence is a garbled contract."""
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == msg


def test_availability_repeat_message_is_exact():
    with pytest.raises(ValueError) as err:
        sample_with_availability(np.random.default_rng(0), [1, 1], [5], 1, 0.5)
    assert str(err.value) == "honest and malicious client ids must not repeat"


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
