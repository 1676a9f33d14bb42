"""Tests for the seeded client partitions (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fl_poison.data.partition import SCHEMES, partition, partition_stats
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from fl_poison.config import resolve
from fl_poison.federation import federation_for, training_pool

torch.set_num_threads(1)


def balanced_labels(per_class: int = 600, num_classes: int = 10, seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(labels)


def assert_disjoint_cover(parts: list[np.ndarray], n: int) -> None:
    allidx = np.concatenate(parts)
    assert len(allidx) == n
    assert len(np.unique(allidx)) == n
    assert allidx.min() >= 0 and allidx.max() < n
    assert all(np.all(np.diff(p) > 0) for p in parts)  # sorted, no duplicates


@pytest.mark.parametrize(
    "scheme,kw", [("iid", {}), ("dirichlet", {"alpha": 0.5}), ("extreme", {})]
)
def test_disjoint_cover_and_seeding(scheme, kw):
    y = balanced_labels()
    a = partition(y, 20, scheme, seed=1, **kw)
    assert len(a) == 20
    assert_disjoint_cover(a, len(y))
    b = partition(y, 20, scheme, seed=1, **kw)
    c = partition(y, 20, scheme, seed=2, **kw)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))
    assert all(p.dtype == np.int64 for p in a)


def test_iid_sizes_and_mixing():
    y = balanced_labels(per_class=101)  # 1010 samples / 7 clients: uneven on purpose
    parts = partition(y, 7, "iid", seed=0)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(y)
    stats = partition_stats(y, parts, 10)
    assert all(len(h) == 10 for h in stats["classes_held"])
    # Not a contiguous split of the index range.
    assert not np.array_equal(parts[0], np.arange(len(parts[0])))


def _mean_tv_from_uniform(y: np.ndarray, parts: list[np.ndarray]) -> float:
    counts = np.array(partition_stats(y, parts, 10)["class_counts"], dtype=float)
    dist = counts / counts.sum(axis=1, keepdims=True)
    return float(np.mean(0.5 * np.abs(dist - 0.1).sum(axis=1)))


def test_dirichlet_alpha_controls_skew():
    y = balanced_labels()
    skewed = partition(y, 20, "dirichlet", seed=0, alpha=0.1)
    uniform = partition(y, 20, "dirichlet", seed=0, alpha=1000.0)
    tv_skewed = _mean_tv_from_uniform(y, skewed)
    tv_uniform = _mean_tv_from_uniform(y, uniform)
    assert tv_skewed > 0.5  # clients dominated by few classes
    assert tv_uniform < 0.05  # near-uniform class mix
    held = partition_stats(y, skewed, 10)["classes_held"]
    assert np.mean([len(h) for h in held]) < 7


def test_dirichlet_min_size_enforced_and_bounded():
    y = balanced_labels(per_class=60)
    parts = partition(y, 10, "dirichlet", seed=3, alpha=0.1, min_size=15)
    assert min(len(p) for p in parts) >= 15
    assert_disjoint_cover(parts, len(y))
    with pytest.raises(ValueError, match="draws"):
        partition(y, 60, "dirichlet", seed=0, alpha=0.001, min_size=9)
    with pytest.raises(ValueError, match="exceeds"):
        partition(y, 10, "dirichlet", seed=0, min_size=61)
    with pytest.raises(ValueError, match="alpha"):
        partition(y, 10, "dirichlet", seed=0, alpha=0.0)


def test_extreme_one_class_per_client_lfighter_setting():
    y = balanced_labels()
    parts = partition(y, 100, "extreme", seed=0, num_classes=10)
    stats = partition_stats(y, parts, 10)
    assert all(len(h) == 1 for h in stats["classes_held"])
    assert stats["clients_per_class"] == [10] * 10  # e.g. 10 clients hold class 7
    assert stats["num_samples"] == len(y)
    sizes = stats["sizes"]
    assert min(sizes) == max(sizes) == 60  # a class's 600 samples split evenly


def test_extreme_uneven_clients_and_seeded_assignment():
    y = balanced_labels(per_class=50)
    parts = partition(y, 13, "extreme", seed=5)
    stats = partition_stats(y, parts, 10)
    per_class = sorted(stats["clients_per_class"])
    assert per_class == [1] * 7 + [2] * 3
    assert all(len(h) == 1 for h in stats["classes_held"])
    firsts = set()
    for s in range(5):
        held = partition_stats(y, partition(y, 10, "extreme", seed=s), 10)["classes_held"]
        firsts.add(tuple(h[0] for h in held))
    assert len(firsts) > 1  # the class-to-client map depends on the seed
    assert all(sorted(f) == list(range(10)) for f in firsts)


def test_extreme_requires_enough_clients():
    y = balanced_labels(per_class=5)
    with pytest.raises(ValueError, match="num_clients >= num_classes"):
        partition(y, 9, "extreme", seed=0)
    with pytest.raises(ValueError, match="num_clients >= num_classes"):
        partition(y, 10, "extreme", seed=0, num_classes=12)


def test_extreme_class_with_too_few_samples():
    y = np.array([0] * 10 + [1] * 1)
    with pytest.raises(ValueError, match="class 1"):
        partition(y, 4, "extreme", seed=0)


def test_validation_errors():
    y = balanced_labels(per_class=3)
    with pytest.raises(ValueError, match="allowed"):
        partition(y, 3, "shards", seed=0)
    with pytest.raises(ValueError, match="num_clients"):
        partition(y, 0, "iid", seed=0)
    with pytest.raises(ValueError, match="exceeds"):
        partition(y, 31, "iid", seed=0)
    with pytest.raises(ValueError, match="out of range"):
        partition(y, 3, "iid", seed=0, num_classes=5)
    with pytest.raises(ValueError, match="integers"):
        partition(y.astype(float), 3, "iid", seed=0)
    assert SCHEMES == ("iid", "dirichlet", "extreme")


def test_partition_stats_contents():
    y = np.array([0, 1, 1, 2, 2, 2])
    stats = partition_stats(y, [np.array([0, 1]), np.array([2, 3, 4, 5])], 4)
    assert stats["sizes"] == [2, 4]
    assert stats["class_counts"] == [[1, 1, 0, 0], [0, 1, 3, 0]]
    assert stats["classes_held"] == [[0, 1], [1, 2]]
    assert stats["clients_per_class"] == [1, 2, 1, 0]
    assert stats["min_size"] == 2 and stats["max_size"] == 4 and stats["mean_size"] == 3.0


SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


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


SMALL = {"dataset": "digits", "num-clients": 4, "clients-per-round": 4, "num-rounds": 1, "seed": 3,
         "figures": False}


# --- 5. dirichlet-alpha reaches the partitioner ---------------------------------------------------------
def test_dirichlet_alpha_reaches_the_partitioner():
    cfg = resolve({**SMALL, "num-clients": 5, "partition": "dirichlet", "dirichlet-alpha": 0.05})
    fed = federation_for(cfg)
    labels = fed.dataset.y_train.numpy()
    pool = training_pool(len(labels), -1, cfg["seed"])
    want = partition(labels[pool], 5, "dirichlet", seed=cfg["seed"], alpha=0.05, num_classes=10)
    default = partition(labels[pool], 5, "dirichlet", seed=cfg["seed"], alpha=1.0, num_classes=10)
    assert [p.tolist() for p in fed.parts] == [pool[p].tolist() for p in want]
    assert [p.tolist() for p in want] != [p.tolist() for p in default]
