"""What the defense tests share: a Strategy built from run keys, and partitions compared up to their labels."""

from __future__ import annotations

from typing import Any

import numpy as np

from fl_poison.config import resolve
from strategies.base import DefenseStrategy
from strategies.registry import build_strategy


def built(**over: Any) -> DefenseStrategy:
    """The Strategy a run config builds (11 clients, all sampled)."""
    return build_strategy(resolve({"num-clients": 11, "clients-per-round": 11, **over}))


def same_partition(a, b) -> bool:
    """Two 0/1 cluster labelings name the same split (k-means may swap the labels)."""
    a, b = np.asarray(a), np.asarray(b)
    return bool(np.array_equal(a, b) or np.array_equal(a, 1 - b))
