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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from fl_poison.config import ConfigError, resolve


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


SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


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


def _poison(attack: str, *, source=None, target=None, mapping=None, rate=-1.0):
    y = np.array([0, 1, 2])
    if attack == "label-flip":
        return targeted_flip_set(y, source=source, target=target, injection_rate=rate, rng=np.random.default_rng(0))
    return untargeted_flip_set(y, mapping=mapping, injection_rate=rate)


def _refusal(**over) -> ConfigError:
    """The ConfigError a digits run with these keys raises (before any data loads)."""
    with pytest.raises(ConfigError) as e:
        resolve({"dataset": "digits", **over})
    return e.value


def test_random_flip_map_refuses_a_negative_seed_naming_it():
    with pytest.raises(ValueError, match=r"seed must be >= 0, got -3"):
        flip_map("random", 10, -3)


@pytest.mark.parametrize("bad", [[0, 10], [-1, 2]])
def test_out_of_range_labels_are_refused_with_the_valid_range(bad):
    """A 10-class map accepts labels 0..9: the error states that range and the offending one."""
    with pytest.raises(ValueError) as e:
        flip_untargeted(np.array(bad), flip_map("reverse", 10, 0))
    msg = str(e.value)
    assert "0..9 " in msg and "10 classes" in msg and f"{min(bad)}..{max(bad)}" in msg


@pytest.mark.parametrize("seed", range(3))
def test_injection_draws_the_source_without_replacement_when_enough(seed):
    """15 source + 5 clean at rate 0.4 of 20: round(8) = 8 *distinct* source examples (a draw with replacement
    would almost surely repeat one of 15 in 8 draws) and 12 clean slots from 5 (all 5, twice, plus 2)."""
    y = np.array([3] * 15 + [1] * 5)
    idx = injection_indices(y, 3, 0.4, np.random.default_rng(seed))
    src = idx[y[idx] == 3]
    assert len(idx) == 20 and len(np.unique(src)) == len(src) == 8
    assert np.array_equal(np.bincount(idx[y[idx] == 1], minlength=20)[15:] >= 2, np.ones(5, bool))


def test_attack_window_from_round_zero_and_ending_at_round_zero():
    """start=0 is a valid start ("from the beginning"); end=0 is a real end (only round 0, so never in a
    run whose rounds start at 1), not "no end" - only end < 0 means that."""
    assert attack_active(1, 0, -1) and attack_active(0, 0, 0)
    assert not attack_active(1, 0, 0)


@pytest.mark.parametrize("start,end,message", [
    (-1, 5, "attack-start-round must be >= 0, got -1"),
    (1, 0, "attack-end-round=0 is before attack-start-round=1; "
           "allowed: attack-end-round >= attack-start-round, or < 0 for no end"),
])
def test_attack_window_errors_name_the_keys_and_what_is_allowed(start, end, message):
    with pytest.raises(ValueError) as e:
        attack_active(1, start, end)
    assert str(e.value) == message


@pytest.mark.parametrize("kwargs,message", [
    (dict(attack="label-flip", source=1), "attack=label-flip needs source-class and target-class to be set"),
    (dict(attack="untargeted-flip"), "attack=untargeted-flip needs a flip-map (reverse | random)"),
    # injection-rate 0 is not "off" (off is < 0): refused like any other rate
    (dict(attack="untargeted-flip", mapping=np.arange(3)[::-1], rate=0.0),
     "injection-rate=0.0 applies only to attack=label-flip; set it < 0 (off) for attack=untargeted-flip"),
])
def test_flip_set_refusals_name_the_keys_and_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError) as e:
        _poison(**kwargs)
    assert str(e.value) == message


@pytest.mark.parametrize("over,key,value,allowed", [
    # label-flip needs its classes: the message names the attack and the data set's class range
    ({"attack": "label-flip"}, "source-class", -1, "attack=label-flip needs a class 0..9"),
    # untargeted flipping has no source class to dilute: injection-rate must stay off, and -1 leads the message
    ({"attack": "untargeted-flip", "injection-rate": 0.5}, "injection-rate", 0.5,
     "-1 with attack=untargeted-flip (dilution needs a source class)"),
])
def test_bad_flip_config_names_key_value_and_allowed(over, key, value, allowed):
    e = _refusal(**over)
    assert (e.key, e.value, e.allowed) == (key, value, allowed)
