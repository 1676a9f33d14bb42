"""Memory-bounded aggregation: float32 stacks, chunked float64 coordinate-wise rules."""

import tracemalloc

import numpy as np
import pytest

from strategies import robust
from strategies.base import _stack_updates


def _updates(k=9, p=5003, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((k, p)) * rng.uniform(1e-3, 1, (k, 1))).astype(np.float32)


def test_stack_is_float32_and_each_difference_rounded_once():
    rng = np.random.default_rng(1)
    g_arrays = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    local = [[a + rng.standard_normal(a.shape).astype(np.float32) * 1e-3 for a in g_arrays] for _ in range(4)]
    g = np.concatenate([a.reshape(-1).astype(np.float64) for a in g_arrays])
    buffers = np.zeros(17, dtype=bool)
    buffers[-2:] = True  # the last two columns play BatchNorm buffers: kept apart, in float64
    u, b = _stack_updates(local, g, buffers)
    exact = np.stack([np.concatenate([a.reshape(-1).astype(np.float64) for a in row]) for row in local]) - g
    assert u.dtype == np.float32 and u.shape == (4, 15) and b.dtype == np.float64 and b.shape == (4, 2)
    np.testing.assert_array_equal(u, exact[:, :15].astype(np.float32))
    np.testing.assert_array_equal(b, exact[:, 15:])


@pytest.mark.parametrize("rule,kwargs", [
    (robust.median, {}), (robust.trimmed_mean, {"beta": 0.2}),
    (robust.repeated_median, {}), (robust.repeated_median, {"reweight": True}),
])
def test_float32_input_equals_the_float64_reference(rule, kwargs):
    u32 = _updates()
    w = np.ones(u32.shape[0])
    got = rule(u32, w, **kwargs)
    want = rule(u32.astype(np.float64), w, **kwargs)
    assert got.update.dtype == np.float64
    np.testing.assert_array_equal(got.update, want.update)  # same float64 math, chunk by chunk
    np.testing.assert_array_equal(got.weights, want.weights)


def test_chunking_does_not_change_results_and_hand_median():
    u = _updates(k=6, p=1000)
    small = robust._columnwise(u, lambda b: np.median(b, axis=0), 24, budget=6 * 24 * 7)  # 7 columns per chunk
    np.testing.assert_array_equal(small, np.median(u.astype(np.float64), axis=0))
    r = robust.repeated_median(u, np.ones(6), reweight=True, max_chunk_bytes=10_000)
    ref = robust.repeated_median(u, np.ones(6), reweight=True)
    np.testing.assert_allclose(r.update, ref.update, rtol=1e-12, atol=1e-15)
    assert robust.median(np.array([[1.0], [5.0], [2.0], [9.0]], np.float32), np.ones(4)).update[0] == 3.5


@pytest.mark.parametrize("rule", [robust.median, robust.trimmed_mean, robust.repeated_median])
def test_peak_memory_is_a_chunk_not_a_float64_copy(rule, monkeypatch):
    monkeypatch.setattr(robust, "DEFAULT_CHUNK_BYTES", 2**20)
    u = _updates(k=20, p=200_000)  # 16 MB float32; a float64 copy would be 32 MB
    tracemalloc.start()
    got = rule(u, np.ones(20))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # ~2 chunks of 1 MiB + the float64 result (1.6 MB): far below one float64 copy
    assert peak < 2 * 2**20 + 2 * u.shape[1] * 8 + 2**20 < u.nbytes
    np.testing.assert_array_equal(got.update, rule(u.astype(np.float64), np.ones(20)).update)


def test_input_checks_still_apply():
    with pytest.raises(ValueError, match="rows"):
        robust.median(np.zeros((0, 3), np.float32), np.zeros(0))
    with pytest.raises(ValueError, match="weights has"):
        robust.trimmed_mean(np.zeros((2, 3), np.float32), np.ones(3))
    assert robust.median(np.arange(4, dtype=np.int64), np.ones(1)).update.tolist() == [0, 1, 2, 3]
