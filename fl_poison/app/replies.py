"""Count what a round sent and what came back, on any Grid.

Why a wrapper: Flower's ``Strategy.start`` sends a round's messages and hands
only the replies that arrived (before the round timeout) to
``aggregate_train``; a node that died or never answered leaves no trace
there. Wrapping the Grid lets the experiment record, per round, how many
training messages were sent and how many replies were missing, without
touching the strategy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from flwr.app import Message, MessageType
from flwr.serverapp import Grid


@dataclass
class Exchange:
    """One ``send_and_receive`` of training messages."""

    sent: int
    received: int
    errors: int
    #: the replies themselves (measurement-only records such as the GAN attack's previews are read from them)
    replies: list[Message] = field(default_factory=list, repr=False)

    @property
    def missing(self) -> int:
        return self.sent - self.received


class DelegatingGrid(Grid):
    """A Grid that hands every call to ``grid`` (the base of wrappers that watch or rewrite a round)."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid

    def set_run(self, run) -> None:  # type: ignore[override]
        self.grid.set_run(run)

    @property
    def run(self):  # type: ignore[override]
        return self.grid.run

    def create_message(self, *args, **kwargs) -> Message:  # type: ignore[override]
        return self.grid.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def get_nodes(self):
        return self.grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.grid.send_and_receive(messages, timeout=timeout)


def innermost(grid: Grid) -> Grid:
    """The grid under every :class:`DelegatingGrid` (the engine that actually delivers)."""
    while isinstance(grid, DelegatingGrid):
        grid = grid.grid
    return grid


class CountingGrid(DelegatingGrid):
    """Delegates everything to ``grid``; remembers the last training exchange."""

    def __init__(self, grid: Grid) -> None:
        super().__init__(grid)
        self.last_train: Exchange | None = None

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        if messages and all(m.metadata.message_type == MessageType.TRAIN for m in messages):
            self.last_train = Exchange(len(messages), len(replies), sum(r.has_error() for r in replies), replies)
        return replies
