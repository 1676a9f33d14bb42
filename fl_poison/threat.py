"""Who is malicious: the persistent sybils of a run.

Tolpegin et al. (§2.2, §3.1) fix the set of malicious participants once, at the
start of training, and keep it for every round; the defense never learns it,
the experiment always does. Everything here is a pure function of the run
configuration and the run seed, so a run can be repeated exactly and two runs
that differ only in the defense face the very same attackers.

Run keys validated here: ``num-malicious``, ``malicious-fraction`` and
``malicious-from-source-holders``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# Mixed into the seed so the malicious draw is a stream of its own: reusing the
# bare run seed would correlate it with every other consumer of that seed
# (data partitioning, model initialisation, client sampling).
_MALICIOUS_SALT = 0x6D616C69  # "mali"


# Float products such as 0.29 * 50 = 14.499999999999998 sit just below a
# half; without a tolerance they would round down although the user's decimal
# share is exactly 14.5.
_HALF_TOLERANCE = 1e-9


def _round_half_up(x: float) -> int:
    """``floor(x + 0.5)``: 2.5 -> 3, unlike Python's banker's ``round`` (2.5 -> 2).

    A tolerance of 1e-9 treats float products that miss the half by rounding
    noise as the exact half they stand for.
    """
    return int(math.floor(x + 0.5 + _HALF_TOLERANCE))


def num_malicious(num_clients: int, fraction: float, count: int) -> int:
    """How many of ``num_clients`` clients are malicious.

    An explicit ``count >= 0`` (run key ``num-malicious``) wins, because an
    absolute number is what a user means when they bother to give one;
    ``count < 0`` means "not set" and the share ``fraction`` (run key
    ``malicious-fraction``, in ``[0, 1]``) is used instead.

    The share is rounded half *up*, ``floor(fraction * num_clients + 0.5)``,
    not with Python's ``round`` (round-half-even), which would turn 5 % of 50
    clients (2.5) into 2 but 7 % of 50 (3.5) into 4 — a surprising,
    parity-dependent rule for a headline experimental parameter. A 1e-9
    tolerance makes float products like ``0.29 * 50 = 14.499999999999998``
    round as the 14.5 they mean (to 15).
    """
    if num_clients < 0:
        raise ValueError(f"num-clients must be >= 0, got {num_clients}")
    if count >= 0:
        if count > num_clients:
            raise ValueError(
                f"num-malicious={count} exceeds the number of clients "
                f"({num_clients}); allowed: 0..{num_clients}, or -1 to use "
                "malicious-fraction"
            )
        return int(count)
    if not (0.0 <= fraction <= 1.0) or math.isnan(fraction):
        raise ValueError(
            f"malicious-fraction must be in [0, 1], got {fraction} "
            "(or set num-malicious to an absolute count)"
        )
    return min(num_clients, _round_half_up(fraction * num_clients))


def choose_malicious(
    num_clients: int,
    n_malicious: int,
    *,
    seed: int,
    eligible: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """Draw the run's malicious client ids, sorted, from ``seed`` alone.

    The draw is uniform without replacement among ``eligible`` (default: all
    ``num_clients`` clients) using ``np.random.default_rng([seed, salt])``, so
    it depends only on the seed and the eligible set, never on how much
    randomness anything else consumed first.

    ``eligible`` exists for ``malicious-from-source-holders``: a targeted
    label flip by a client that holds no source-class example is honest
    training in disguise, so the LFighter reference code draws attackers only
    among clients holding the source class (see :func:`source_holders`).
    Restricting the pool changes which ids are drawn for the same seed.
    """
    if n_malicious < 0:
        raise ValueError(
            f"num-malicious / malicious-fraction resolved to {n_malicious} "
            "malicious clients; allowed: >= 0"
        )
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    restricted = eligible is not None
    pool = (
        np.arange(num_clients, dtype=np.int64)
        if eligible is None
        else np.unique(np.asarray(list(eligible), dtype=np.int64))
    )
    if pool.size and (pool[0] < 0 or pool[-1] >= num_clients):
        raise ValueError(
            f"eligible client ids must be in 0..{num_clients - 1}, "
            f"got {pool.tolist()}"
        )
    if n_malicious > pool.size:
        if restricted:
            raise ValueError(
                f"num-malicious / malicious-fraction asks for {n_malicious} "
                f"malicious clients but malicious-from-source-holders=true and "
                f"only {pool.size} of {num_clients} clients hold the source "
                f"class; allowed: at most {pool.size} malicious clients, or set "
                "malicious-from-source-holders=false"
            )
        raise ValueError(
            f"num-malicious / malicious-fraction asks for {n_malicious} "
            f"malicious clients but there are only {num_clients} clients; "
            f"allowed: 0..{num_clients}"
        )
    rng = np.random.default_rng([int(seed), _MALICIOUS_SALT])
    chosen = rng.choice(pool, size=n_malicious, replace=False)
    return tuple(sorted(int(c) for c in chosen))


def source_holders(client_labels: Sequence[np.ndarray], source_class: int) -> list[int]:
    """Ids (positions in ``client_labels``) of clients holding ``source_class``.

    Under non-IID partitions (Dirichlet, one class per client) many clients
    have no source example; only the others can mount a targeted flip.
    """
    return [
        i
        for i, labels in enumerate(client_labels)
        if np.any(np.asarray(labels) == source_class)
    ]
