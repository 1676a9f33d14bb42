"""Pull a round's replies every fraction of a second on a deployment's Grid.

Why: Flower's ``HttpGrid.send_and_receive`` (the Grid a deployed ServerApp is
given) sleeps 3 s between pulls, so every exchange with the SuperNodes costs
up to 3 s after the last reply arrived. Pulling is a cheap request on the
SuperLink; doing it every ``interval`` seconds keeps the semantics (push, then
pull until every reply is in or ``timeout`` passed) with less idle time. The
simulation and in-process grids are left alone: they do not sleep this way.
"""

from __future__ import annotations

import time
from typing import Iterable

from flwr.app import Message
from flwr.serverapp import Grid

from fl_poison.app.replies import DelegatingGrid

#: seconds between pulls while replies are outstanding
PULL_INTERVAL = 0.2
#: Flower's grids whose own ``send_and_receive`` sleeps seconds between pulls
SLOW_POLLING = ("HttpGrid", "GrpcGrid")


class FastPollGrid(DelegatingGrid):
    """``send_and_receive`` as Flower's, but pulling every :data:`PULL_INTERVAL` seconds."""

    def __init__(self, grid: Grid, interval: float = PULL_INTERVAL) -> None:
        super().__init__(grid)
        self.interval = interval

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        pending = set(self.grid.push_messages(messages))
        end = None if timeout is None else time.time() + timeout
        replies: list[Message] = []
        while pending and (end is None or time.time() < end):
            got = list(self.grid.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if pending:
                time.sleep(self.interval)
        return replies


def fast_polling(grid: Grid) -> Grid:
    """``grid`` wrapped in :class:`FastPollGrid` when it is one of Flower's slowly polling deployment grids."""
    return FastPollGrid(grid) if type(grid).__name__ in SLOW_POLLING else grid
