"""A per-node store that persists across rounds in every engine.

It lives in Flower's ``Context.state`` (a ``RecordDict``), which Flower keeps
per node across rounds -- also when a SuperNode starts a fresh ClientApp
process for each message, where Python globals would be lost. Arrays go in
``ArrayRecord``s, small scalars in ``ConfigRecord``s, under a prefix per
attack so two plug-ins never collide.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict


class NodeStore:
    """Named groups of arrays and of scalars, kept in ``state`` under ``prefix``."""

    def __init__(self, state: RecordDict | None = None, prefix: str = "") -> None:
        self.state = state if state is not None else RecordDict()
        self.prefix = prefix

    def _key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def get_arrays(self, name: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``name`` (copies), or None."""
        rec = self.state.get(self._key(name)) if self._key(name) in self.state else None
        if rec is None:
            return None
        return {k: np.array(rec[k].numpy()) for k in rec.keys()}

    def put_arrays(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        self.state[self._key(name)] = ArrayRecord({k: Array(np.ascontiguousarray(np.asarray(v)).reshape(np.shape(v)))
                                                   for k, v in arrays.items()})

    def get_values(self, name: str) -> dict[str, Any] | None:
        """The scalars / lists stored under ``name``, or None."""
        if self._key(name) not in self.state:
            return None
        return dict(self.state[self._key(name)])

    def put_values(self, name: str, values: dict[str, Any]) -> None:
        self.state[self._key(name)] = ConfigRecord(dict(values))
