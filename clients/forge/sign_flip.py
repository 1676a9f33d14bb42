"""Sign flipping: each attacker sends the negative of its own honest update.

A standard Byzantine baseline of the robust-aggregation literature and of
its benchmark suites (ByzFL, Blades: "sign flipping"): the update that would
have descended the loss, reversed. Needs no knowledge of anyone else, so it runs
on the client; ``known`` are the attackers' own honest updates, one per
attacker, in order.
"""

from __future__ import annotations

import numpy as np

from clients.forge import as_known


def forge(known: np.ndarray, num_malicious: int, rng: np.random.Generator, *, report: dict | None = None) -> np.ndarray:
    """``-known[i]`` for attacker ``i``."""
    u = as_known(known, need=num_malicious)
    return -u[:num_malicious]
