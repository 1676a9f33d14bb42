"""IPM, inner-product manipulation (Xie, Koyejo & Gupta, "Fall of Empires", UAI 2019 / PMLR 115, 2020).

Every attacker sends ``-epsilon * mean(benign)``: the inner product of the
aggregate with the true gradient turns negative once the attackers can move
a robust rule's output far enough. A small epsilon (0.1, the default) keeps
the forged updates close to the benign ones so distance-based rules select
them; a large one (10) flips an average outright. Both are common settings
in the comparisons that use IPM.
"""

from __future__ import annotations

import numpy as np

from clients.forge import as_known, copies


def forge(known: np.ndarray, num_malicious: int, rng: np.random.Generator, *, epsilon: float = 0.1,
          report: dict | None = None) -> np.ndarray:
    """``-epsilon`` times the mean of the known updates, for every attacker."""
    return copies(-epsilon * as_known(known).mean(axis=0), num_malicious)
