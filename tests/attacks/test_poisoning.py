"""Label-only poisoning transforms: targeted / untargeted flips, injection rate, timing."""

from __future__ import annotations

import numpy as np
import pytest

from clients.poisoning import (
    attack_active,
    flip_map,
    flip_targeted,
    flip_untargeted,
    injection_indices,
    targeted_flip_set,
    untargeted_flip_set,
)


def test_flip_targeted_exact_and_copy() -> None:
    y = np.array([0, 5, 3, 5, 1, 5], dtype=np.int64)
    out = flip_targeted(y, source=5, target=3)
    assert out.tolist() == [0, 3, 3, 3, 1, 3]
    assert y.tolist() == [0, 5, 3, 5, 1, 5]  # input untouched
    assert out.dtype == y.dtype


def test_flip_targeted_same_class_rejected() -> None:
    with pytest.raises(ValueError, match="source-class"):
        flip_targeted(np.array([1]), 1, 1)


def test_reverse_map() -> None:
    assert flip_map("reverse", 10, seed=0).tolist() == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    y = np.array([0, 1, 2, 9], dtype=np.int32)
    out = flip_untargeted(y, flip_map("reverse", 10, seed=0))
    assert out.tolist() == [9, 8, 7, 0] and out.dtype == np.int32


@pytest.mark.parametrize("c", [2, 3, 10, 100])
def test_random_map_is_seeded_derangement(c: int) -> None:
    for seed in range(20):
        m = flip_map("random", c, seed=seed)
        assert sorted(m.tolist()) == list(range(c))  # a permutation
        assert not np.any(m == np.arange(c))  # no fixed point
        assert np.array_equal(m, flip_map("random", c, seed=seed))


def test_random_map_depends_on_seed() -> None:
    maps = {tuple(flip_map("random", 10, seed=s)) for s in range(10)}
    assert len(maps) > 1


def test_flip_map_errors() -> None:
    with pytest.raises(ValueError, match="flip-map"):
        flip_map("shuffle", 10, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num-classes"):
        flip_map("random", 1, seed=0)


def test_flip_untargeted_out_of_range() -> None:
    with pytest.raises(ValueError, match="flip-map"):
        flip_untargeted(np.array([0, 10]), flip_map("reverse", 10, seed=0))


def _labels(n_src: int, n_other: int, source: int = 7) -> np.ndarray:
    rng = np.random.default_rng(0)
    others = rng.choice([c for c in range(10) if c != source], size=n_other)
    y = np.concatenate([np.full(n_src, source), others])
    return y[rng.permutation(y.size)]


def _shares(y: np.ndarray, idx: np.ndarray, source: int = 7) -> tuple[int, int]:
    assert np.all(np.diff(idx) >= 0)  # sorted
    n_src = int(np.sum(y[idx] == source))
    return n_src, idx.size - n_src


def test_injection_half_keeps_the_local_set_size() -> None:
    # 60 source + 40 clean at 0.5 of 100: 50 distinct source + 40 clean + 10 clean repeats
    y = _labels(60, 40)
    idx = injection_indices(y, 7, 0.5, np.random.default_rng(0))
    assert idx.size == 100 and _shares(y, idx) == (50, 50)
    assert len(np.unique(idx[y[idx] == 7])) == 50
    assert set(np.flatnonzero(y != 7)) <= set(idx.tolist())


def test_injection_rate_one_is_source_only_at_the_local_size() -> None:
    y = _labels(10, 90)
    idx = injection_indices(y, 7, 1.0, np.random.default_rng(0))
    assert idx.size == 100 and np.all(y[idx] == 7)
    assert np.array_equal(np.bincount(idx, minlength=100)[y == 7], np.full(10, 10))  # each source 10 times


def test_injection_few_source_examples_are_repeated_to_the_share() -> None:
    # 10 source + 90 clean at 0.5: round(0.5 * 100) = 50 source slots -> each source example 5 times
    y = _labels(10, 90)
    idx = injection_indices(y, 7, 0.5, np.random.default_rng(0))
    assert _shares(y, idx) == (50, 50)
    assert np.array_equal(np.bincount(idx, minlength=100)[y == 7], np.full(10, 5))
    assert len(np.unique(idx[y[idx] != 7])) == 50  # clean ones drawn without replacement


def test_injection_rounding_half_up_and_size_given() -> None:
    # 0.25 * 10 = 2.5 -> 3 source of a set of 10; a size larger than the candidates is honoured
    y = _labels(20, 20)
    assert _shares(y, injection_indices(y, 7, 0.25, np.random.default_rng(0), size=10)) == (3, 7)
    assert _shares(y, injection_indices(y, 7, 0.5, np.random.default_rng(0), size=60)) == (30, 30)


def test_injection_keeps_one_flipped_and_no_clean_case() -> None:
    y = _labels(10, 2)  # 5 % of 12 = 0.6 -> 1 source, 11 clean from 2 (repeated)
    assert _shares(y, injection_indices(y, 7, 0.05, np.random.default_rng(0))) == (1, 11)
    y = np.full(6, 7)  # nothing clean: the source part only
    idx = injection_indices(y, 7, 0.5, np.random.default_rng(0))
    assert _shares(y, idx) == (3, 0) and len(np.unique(idx)) == 3


def test_injection_no_source_is_empty() -> None:
    idx = injection_indices(np.array([0, 1, 2]), 7, 0.5, np.random.default_rng(0))
    assert idx.size == 0 and idx.dtype == np.int64


def test_injection_seeded() -> None:
    y = _labels(10, 90)
    a = injection_indices(y, 7, 0.3, np.random.default_rng(4))
    b = injection_indices(y, 7, 0.3, np.random.default_rng(4))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("rate", [0.0, -0.5, 1.01, float("nan")])
def test_injection_bad_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="injection-rate"):
        injection_indices(_labels(10, 90), 7, rate, np.random.default_rng(0))


def test_attack_window_edges() -> None:
    # "only before round 75"
    assert attack_active(1, 1, 74) and attack_active(74, 1, 74)
    assert not attack_active(75, 1, 74)
    # "from round 75 on"
    assert not attack_active(74, 75, -1)
    assert attack_active(75, 75, -1) and attack_active(10_000, 75, -1)
    assert attack_active(5, 5, 5) and not attack_active(4, 5, 5) and not attack_active(6, 5, 5)


def test_attack_window_errors() -> None:
    with pytest.raises(ValueError, match="attack-end-round"):
        attack_active(1, 10, 5)
    with pytest.raises(ValueError, match="attack-start-round"):
        attack_active(1, -1, 5)


def test_flip_set_label_flip_all_data() -> None:
    y = np.array([0, 1, 2, 1, 3])
    idx, new = targeted_flip_set(
        y, source=1, target=3, injection_rate=-1.0, rng=np.random.default_rng(0),
    )
    assert idx.tolist() == [0, 1, 2, 3, 4]
    assert new.tolist() == [0, 3, 2, 3, 3]


def test_flip_set_label_flip_injection() -> None:
    y = _labels(10, 90)
    idx, new = targeted_flip_set(
        y, source=7, target=2, injection_rate=0.5, rng=np.random.default_rng(0),
    )
    assert idx.size == 100 and new.size == 100  # the local set size is kept
    assert not np.any(new == 7) and np.sum(new == 2) >= 50
    assert np.array_equal(new, np.where(y[idx] == 7, 2, y[idx]))
    empty, labels = targeted_flip_set(
        np.array([0, 1]), source=7, target=2, injection_rate=0.5, rng=np.random.default_rng(0),
    )
    assert empty.size == 0 and labels.size == 0


def test_flip_set_untargeted() -> None:
    y = np.array([0, 1, 2, 3])
    idx, new = untargeted_flip_set(
        y, mapping=flip_map("reverse", 4, seed=0), injection_rate=-1.0)
    assert idx.tolist() == [0, 1, 2, 3] and new.tolist() == [3, 2, 1, 0]


def test_flip_set_errors() -> None:
    y = np.array([0, 1])
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="injection-rate"):
        untargeted_flip_set(y, mapping=flip_map("reverse", 2, seed=0), injection_rate=0.5)
    with pytest.raises(ValueError, match="flip-map"):
        untargeted_flip_set(y, mapping=None, injection_rate=-1)
    with pytest.raises(ValueError, match="source-class"):
        targeted_flip_set(y, source=None, target=1, injection_rate=-1, rng=rng)
    with pytest.raises(ValueError, match="injection-rate"):
        targeted_flip_set(y, source=0, target=1, injection_rate=0.0, rng=rng)
