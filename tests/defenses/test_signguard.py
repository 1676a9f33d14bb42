"""SignGuard (strategies/rules/signguard.py and its plug-in): by hand, equal updates."""

from __future__ import annotations

import numpy as np
from strategies.rules.signguard import signguard


def test_signguard_by_hand():
    # norms 2, sqrt10, 4, 2, 100: median M = sqrt10 = 3.162; R = 3 drops the 100 (ratio 31.6), L = 0.1 nobody.
    # Sign features on all coordinates: (1, 0, 0) for all but the sign-flipped row 3, (0, 0, 1): MeanShift puts
    # it alone; kept = rows 0, 1, 2. Row 2 (norm 4) is clipped to sqrt10: (2,2,2,2) * sqrt10 / 4 = 1.5811 each.
    # Mean: ((1 + 1 + 1.5811) / 3, (1 + 2 + 1.5811) / 3, ...) = (1.19371, 1.52705, 1.19371, 1.52705)
    u = np.array([[1, 1, 1, 1], [1, 2, 1, 2], [2, 2, 2, 2], [-1, -1, -1, -1], [50, 50, 50, 50]], dtype=float)
    agg = signguard(u, np.ones(5), coord_fraction=1.0)
    assert agg.kept.tolist() == [True, True, True, False, False]
    assert agg.info["norm_kept"] == [1, 1, 1, 1, 0]
    r = np.sqrt(10) / 2
    np.testing.assert_allclose(agg.update, [(2 + r) / 3, (3 + r) / 3, (2 + r) / 3, (3 + r) / 3])


def test_signguard_of_equal_updates_keeps_everyone():
    row = np.array([1.0, -2.0, 0.0, 3.0])
    agg = signguard(np.tile(row, (6, 1)), np.ones(6))
    assert agg.kept.all()
    np.testing.assert_allclose(agg.update, row)
