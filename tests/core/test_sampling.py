"""Per-round selection: uniform and Tolpegin §3.4 malicious availability."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fl_poison.sampling import sample_clients, sample_with_availability
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HONEST = list(range(25, 50))
MALICIOUS = list(range(25))
ROUNDS = 2000


def _malicious_counts(alpha: float, honest=HONEST, malicious=MALICIOUS, k=5, seed=0):
    rng = np.random.default_rng(seed)
    mal = set(malicious)
    counts = []
    for _ in range(ROUNDS):
        sel = sample_with_availability(rng, honest, malicious, k, alpha)
        assert sel == sorted(set(sel)) and len(sel) == k
        counts.append(sum(c in mal for c in sel))
    return np.array(counts)


def test_sample_clients_uniform_sorted_seeded() -> None:
    a = sample_clients(np.random.default_rng(3), 50, 5)
    assert a == sample_clients(np.random.default_rng(3), 50, 5)
    assert a == sorted(set(a)) and len(a) == 5
    rng = np.random.default_rng(0)
    hits = np.zeros(50)
    for _ in range(ROUNDS):
        hits[sample_clients(rng, 50, 5)] += 1
    # each client: Binomial(2000, 0.1) -> 200 +- 13.4; allow 5 sd
    assert np.all(np.abs(hits - 200) < 5 * math.sqrt(ROUNDS * 0.1 * 0.9))


def test_sample_clients_bad_k() -> None:
    with pytest.raises(ValueError, match="clients-per-round"):
        sample_clients(np.random.default_rng(0), 4, 5)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.6, 0.9])
def test_mean_malicious_matches_alpha(alpha: float) -> None:
    # 25 of each: neither pool can run out in 5 slots, so the count is
    # Binomial(5, alpha) per round.
    counts = _malicious_counts(alpha)
    expected = alpha * 5
    se = math.sqrt(5 * alpha * (1 - alpha) / ROUNDS)
    assert abs(counts.mean() - expected) < 3 * se


def test_alpha_zero_and_one() -> None:
    assert _malicious_counts(0.0).max() == 0
    assert _malicious_counts(1.0).min() == 5


def test_bounded_by_number_of_malicious() -> None:
    honest = list(range(2, 50))
    counts = _malicious_counts(0.9, honest=honest, malicious=[0, 1])
    assert counts.max() <= 2
    # count = min(Binomial(5, 0.9), 2): P(0) = .1^5, P(1) = 5*.9*.1^4
    p0, p1 = 0.1**5, 5 * 0.9 * 0.1**4
    expected = 1 * p1 + 2 * (1 - p0 - p1)
    var = 1 * p1 + 4 * (1 - p0 - p1) - expected**2
    assert abs(counts.mean() - expected) < 3 * math.sqrt(var / ROUNDS) + 1e-12


def test_honest_exhausted_falls_back_to_malicious() -> None:
    counts = _malicious_counts(0.0, honest=[0, 1], malicious=list(range(2, 12)))
    assert np.all(counts == 3)


def test_same_seed_same_sequence() -> None:
    def seq(seed: int):
        rng = np.random.default_rng(seed)
        return [sample_with_availability(rng, HONEST, MALICIOUS, 5, 0.7) for _ in range(50)]

    assert seq(11) == seq(11)
    assert seq(11) != seq(12)


def test_input_order_does_not_matter() -> None:
    a = sample_with_availability(np.random.default_rng(5), HONEST, MALICIOUS, 5, 0.5)
    b = sample_with_availability(
        np.random.default_rng(5), HONEST[::-1], MALICIOUS[::-1], 5, 0.5
    )
    assert a == b


@pytest.mark.parametrize("alpha", [-0.1, 1.1, float("nan")])
def test_bad_alpha(alpha: float) -> None:
    with pytest.raises(ValueError, match="malicious-availability"):
        sample_with_availability(np.random.default_rng(0), HONEST, MALICIOUS, 5, alpha)


def test_bad_pools() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="clients-per-round"):
        sample_with_availability(rng, [0, 1], [2], 4, 0.5)
    with pytest.raises(ValueError, match="both honest and malicious"):
        sample_with_availability(rng, [0, 1], [1], 1, 0.5)


SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


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
