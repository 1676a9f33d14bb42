"""Gaussian (random-noise) updates: every attacker sends an update drawn from N(0, sigma^2 I).

The random Byzantine baseline of the robust-aggregation literature: Blanchard
et al.'s "Gaussian Byzantine workers" (NIPS 2017, Krum) and the Gaussian attack
of Cao et al. (FLTrust, NDSS 2021), both with standard deviation 200, and the
"Gaussian" attack of benchmark suites such as ByzFL (N(mu, sigma^2), mu = 0
here). The sent *update* is the noise: it replaces the honest one entirely
(not honest + noise; ``attack=scale`` with ``scale-noise`` does that).
Default sigma is 200.
"""

from __future__ import annotations

import numpy as np

from clients.forge import as_known
from fl_poison.config import at_least

#: The noise std, declared once: the run key ``noise-std`` derives its check and message from it, :func:`forge`
#: its ValueError.
STD = at_least(0, float)


def forge(known: np.ndarray, num_malicious: int, rng: np.random.Generator, *, std: float = 200.0,
          report: dict | None = None) -> np.ndarray:
    """``num_malicious`` independent N(0, std^2) vectors of the known updates' length."""
    STD.validate(std, "std")
    p = as_known(known).shape[1]
    return rng.normal(0.0, std, size=(num_malicious, p)) if std > 0 else np.zeros((num_malicious, p))
