"""The adversary's seat on the server: what colluding attackers do with knowledge no single client has.

Some attacks need the round's benign updates: the ADA authors' train-and-scale
shrinks each malicious update to the median of the honest norms of the round
(``scale-bound=median-honest``), and ALIE / IPM craft their update from the
benign mean and spread. A client cannot see those, so such an attack is
played from a seat beside the server: :class:`AdversarySeat` wraps the Flower
``Grid`` the ServerApp is given, sees a round's training replies before the
strategy does, and hands the malicious and benign ones to a
:class:`Colluder`, whose one hook returns the malicious replies to forward.

* Who is malicious comes from the run's threat model (``fl_poison.threat``:
  the same seeded choice the clients make), never from the replies. A
  malicious client asks for the seat by the reply metric :data:`MARKER`;
  a reply without it (outside the attack window) is forwarded unchanged.
* The marker is stripped from every reply before the strategy sees it: the
  defense never learns who is malicious from the seat.
* It wraps any Grid, so it works in-process, in the parallel engine, under
  ``flwr run .`` and in a deployment (the ServerApp wraps the grid it gets).
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Protocol

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MessageType, MetricRecord, RecordDict

from fl_poison.app.replies import DelegatingGrid

log = logging.getLogger("fl_poison.adversary")

#: Reply metric by which a malicious client hands its update to the seat (stripped before the strategy).
MARKER = "adversary-seat"

State = dict[str, np.ndarray]


class Colluder(Protocol):
    """The seat's one hook (ALIE, IPM, ... implement it too): replace the malicious replies' states, given the benign ones of the round."""

    def replace(self, server_round: int, global_state: State, malicious: list[tuple[State, dict]],
                benign: list[State]) -> list[tuple[State, dict]]:
        """``(state, metrics)`` per malicious reply (same order) from the global model and the benign states."""
        ...


def _state(msg: Message) -> State:
    record = msg.content["arrays"]
    return dict(zip(record.keys(), record.to_numpy_ndarrays()))


def _metrics(msg: Message) -> dict:
    return dict(next(iter(msg.content.metric_records.values())))


def _with(msg: Message, state: State | None, metrics: dict) -> Message:
    """A copy of reply ``msg`` with new arrays (None: keep) and a new MetricRecord, metadata kept."""
    content = RecordDict()
    metric_name = next(iter(msg.content.metric_records))
    for name, rec in msg.content.items():
        if name == metric_name:
            content[name] = MetricRecord(metrics)
        elif name == "arrays" and state is not None:
            content[name] = ArrayRecord({k: Array(np.ascontiguousarray(v).reshape(np.shape(v)))
                                         for k, v in state.items()})
        else:
            content[name] = rec
    msg.content = content
    return msg


class AdversarySeat(DelegatingGrid):
    """A Grid wrapper that lets ``colluder`` rewrite the malicious training replies of each round.

    ``is_malicious(node_id)`` answers from the threat model. Everything but
    training ``send_and_receive`` is delegated unchanged.
    """

    def __init__(self, grid, colluder: Colluder, is_malicious: Callable[[int], bool]) -> None:
        super().__init__(grid)
        self.colluder, self.is_malicious = colluder, is_malicious

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        if not messages or not all(m.metadata.message_type == MessageType.TRAIN for m in messages):
            return replies
        return self.intercept(messages, replies)

    def intercept(self, messages: list[Message], replies: list[Message]) -> list[Message]:
        """The replies the strategy sees: malicious ones replaced by the colluder, markers stripped."""
        ok = [r for r in replies if not r.has_error() and r.content.metric_records and "arrays" in r.content]
        asking = [r for r in ok if _metrics(r).get(MARKER) and self.is_malicious(r.metadata.src_node_id)]
        for r in ok:
            if _metrics(r).get(MARKER) and not self.is_malicious(r.metadata.src_node_id):
                log.warning("node %d asked for the adversary seat but is not malicious in the threat model",
                            r.metadata.src_node_id)
        if asking:
            record = messages[0].content["arrays"]
            global_state = dict(zip(record.keys(), record.to_numpy_ndarrays()))
            benign = [_state(r) for r in ok if not self.is_malicious(r.metadata.src_node_id)]
            server_round = int(messages[0].content["config"].get("server-round", 0))
            new = self.colluder.replace(server_round, global_state,
                                        [(_state(r), _metrics(r)) for r in asking], benign)
            for r, (state, metrics) in zip(asking, new):
                _with(r, state, metrics)
        for r in ok:
            if MARKER in _metrics(r):
                _with(r, None, {k: v for k, v in _metrics(r).items() if k != MARKER})
        return replies


def seat_for(grid, cfg, malicious_nodes: set[int]):
    """``grid`` wrapped in an :class:`AdversarySeat` when the attack plays one (its ``colluder``), else ``grid``."""
    from fl_poison import plugins

    colluder = plugins.get("attack", cfg["attack"]).colluder(cfg)
    if colluder is None:
        return grid
    return AdversarySeat(grid, colluder, lambda node: node in malicious_nodes)
