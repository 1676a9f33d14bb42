"""Centered clipping (strategies/rules/centered_clipping.py and its plug-in): by hand, its centre across rounds, properties."""

from __future__ import annotations

import numpy as np
from strategies.rules.centered_clipping import centered_clipping
from strategies.defenses.centered_clipping import CenteredClipping


def _rows(seed: int, k: int, p: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(k, p))


def test_centered_clipping_one_iteration_by_hand():
    # centre 0, tau = 2: (1,0) and (0,1) (norm 1) pass; (6,8) (norm 10) is clipped to (1.2, 1.6);
    # v = ((1,0) + (0,1) + (1.2,1.6)) / 3 = (2.2/3, 2.6/3)
    u = np.array([[1, 0], [0, 1], [6, 8]], dtype=float)
    agg = centered_clipping(u, np.ones(3), tau=2.0)
    np.testing.assert_allclose(agg.update, [2.2 / 3, 2.6 / 3])
    assert agg.kept.tolist() == [True, True, False] and agg.info["clipped"] == [0, 0, 1]


def test_centered_clipping_two_iterations_by_hand():
    # 1-D, tau = 1, rows 0, 0, 10, centre 0. Step 1: clip(0)=0, 0, clip(10)=1 -> v = 1/3.
    # Step 2: differences -1/3, -1/3 (pass), 29/3 (clipped to 1) -> v = 1/3 + (-1/3 - 1/3 + 1) / 3 = 1/3 + 1/9 = 4/9
    agg = centered_clipping(np.array([[0.0], [0.0], [10.0]]), np.ones(3), tau=1.0, iterations=2)
    np.testing.assert_allclose(agg.update, [4 / 9])


def test_centered_clipping_keeps_its_centre_across_rounds():
    # round 1 from centre 0 (tau = 1, rows 0, 0, 10): v1 = 1/3 (above); round 2 on rows 1, 1, 1 starts at 1/3:
    # every difference is 2/3 < tau, so v2 = 1/3 + 2/3 = 1; a fresh strategy (centre 0) would give the same 1 here,
    # so round 2 uses rows 3, 3, 3: from 1/3 the step is clip(8/3) = 1 -> 4/3; from 0 it would be 1
    s = CenteredClipping(tau=1.0, iterations=1)
    first = s.aggregate_updates(np.array([[0.0], [0.0], [10.0]]), np.ones(3), None, [0, 1, 2], 1)
    np.testing.assert_allclose(first.update, [1 / 3])
    second = s.aggregate_updates(np.full((3, 1), 3.0), np.ones(3), None, [0, 1, 2], 2)
    np.testing.assert_allclose(second.update, [4 / 3])
    np.testing.assert_allclose(s.centre, [4 / 3])


def test_centered_clipping_properties():
    u = _rows(2, 8, 5) * 3
    perm = np.random.default_rng(0).permutation(8)
    a = centered_clipping(u, np.ones(8), tau=1.0, iterations=3)
    np.testing.assert_allclose(a.update, centered_clipping(u[perm], np.ones(8), tau=1.0, iterations=3).update,
                               atol=1e-12)
    shift = np.linspace(-4, 4, 5)  # equivariant when the centre moves with the rows
    moved = centered_clipping(u + shift, np.ones(8), tau=1.0, iterations=3, centre=shift)
    np.testing.assert_allclose(moved.update, a.update + shift, atol=1e-10)
    # a convex combination of the centre (0) and the rows: inside the box of {0} and the rows
    box = np.vstack([u, np.zeros(5)])
    assert np.all(a.update >= box.min(axis=0) - 1e-12) and np.all(a.update <= box.max(axis=0) + 1e-12)


def test_centered_clipping_tau_above_every_distance_is_the_plain_mean_and_below_it_clips():
    # tau only acts on rows farther than tau from the centre: above the largest distance the rule is the unweighted
    # mean (so a default tau above real updates' distances silently runs FedAvg); below it the result differs and,
    # each iteration moving the centre by at most tau, lies within tau * iterations of the centre
    u = _rows(5, 6, 4) + 3.0
    centre = np.zeros(4)
    far = float(np.linalg.norm(u - centre, axis=1).max())
    above = centered_clipping(u, np.ones(6), tau=far * 1.01, iterations=2, centre=centre)
    np.testing.assert_allclose(above.update, u.mean(axis=0))
    assert above.info["clipped"] == [0] * 6
    tau, iterations = far / 10, 3
    below = centered_clipping(u, np.ones(6), tau=tau, iterations=iterations, centre=centre)
    assert not np.allclose(below.update, u.mean(axis=0))
    assert np.linalg.norm(below.update - centre) <= tau * iterations * (1 + 1e-12)
    assert sum(below.info["clipped"]) > 0
