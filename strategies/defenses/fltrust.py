"""``defense=fltrust``: FLTrust (Cao et al., NDSS 2021), with the server's root set ``server-data-samples``."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from fl_poison.updates import buffer_mask, flatten
from strategies.rules import fltrust
from strategies.base import DefenseStrategy

#: (array names, global arrays, server round) -> the server's locally trained arrays, same names and order
ServerUpdate = Callable[[Sequence[str], Sequence[np.ndarray], int], Sequence[np.ndarray]]


class FLTrust(DefenseStrategy):
    """Trust scores against the server's own update on its root data (held out of the clients' data)."""

    name = "fltrust"
    help = "FLTrust (Cao et al. 2021): trust scores from a server root data set"
    averages = False  # the weights are the trust scores, never example counts
    #: the federation holds ``server-data-samples`` training samples out of the clients' data for this defense
    needs_server_data = True

    def __init__(self, *, server_update: ServerUpdate | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.server_update = server_update

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        if self.server_update is None or self._global is None:
            raise ValueError("fltrust needs the server's update on its root data (a run builds it from "
                             "server-data-samples; pass server_update= when building the strategy by hand)")
        names = list(self._global.keys())
        arrays = [self._global[n].numpy() for n in names]
        local = self.server_update(names, arrays, server_round)
        trainable = ~buffer_mask(names, self.buffer_names)
        g0 = flatten([np.asarray(l) - a for l, a, t in zip(local, arrays, trainable) if t])
        return fltrust.fltrust(updates, weights, layout, server_update=g0)
