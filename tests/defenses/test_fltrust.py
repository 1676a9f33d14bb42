"""FLTrust (strategies/rules/fltrust.py and its plug-in): by hand, no trusted client, the held-out root set."""

from __future__ import annotations

import numpy as np
import pytest
from fl_poison.config import ConfigError, resolve
from strategies.rules.fltrust import fltrust


def test_fltrust_by_hand():
    # g0 = (1, 0), ||g0|| = 1. (2,0): cos 1, normalised (1,0); (0,3): cos 0 -> TS 0; (-1,0): cos -1 -> 0;
    # (1,1): cos 1/sqrt2 = 0.7071, normalised (1,1)/sqrt2. g = (1 (1,0) + 0.7071 (0.7071, 0.7071)) / 1.7071
    #   = (1.5, 0.5) / 1.7071 = (0.87868, 0.29289)
    u = np.array([[2, 0], [0, 3], [-1, 0], [1, 1]], dtype=float)
    agg = fltrust(u, np.ones(4), server_update=np.array([1.0, 0.0]))
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(agg.info["trust"], [1, 0, 0, r], atol=1e-12)
    assert agg.kept.tolist() == [True, False, False, True]
    np.testing.assert_allclose(agg.update, np.array([1.5, 0.5]) / (1 + r))
    np.testing.assert_allclose(agg.weights, [1 / (1 + r), 0, 0, r / (1 + r)])


def test_fltrust_with_no_trusted_client_leaves_the_model():
    agg = fltrust(-np.eye(2), np.ones(2), server_update=np.array([1.0, 1.0]))
    assert not agg.kept.any() and not agg.update.any() and "fallback" in agg.info


def test_fltrust_root_set_is_held_out_of_every_client():
    from fl_poison.federation import federation_for

    fed = federation_for(resolve({"defense": "fltrust", "server-data-samples": 50}))
    assert len(fed.server) == 50
    assert not set(fed.server.tolist()) & set(np.concatenate(fed.parts).tolist())
    assert federation_for(resolve({"defense": "median"})).server is None  # other defenses: clients keep it all
    with pytest.raises(ConfigError) as err:
        resolve({"defense": "fltrust", "server-data-samples": 0})
    assert err.value.key == "server-data-samples"
