"""A Flower ``Grid`` that delivers messages by calling the ClientApp in this process.

The ServerApp and ClientApp are exactly those ``flwr run .`` and a deployment
execute; only the transport differs: no SuperLink, no Ray, no sockets, and
therefore deterministic and cheap to start (the default engine of
``fl-poison run``, of tests and of sweep tasks).
"""

from __future__ import annotations

import logging
import traceback
from typing import Iterable
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

log = logging.getLogger("fl_poison.engine")

#: ErrorCode.CLIENT_APP_RAISED_EXCEPTION in Flower: what a deployment reports too.
CLIENT_APP_RAISED_EXCEPTION = 2
FIRST_NODE_ID = 1001


def error_reply(msg: Message, exc: Exception) -> Message:
    """The reply Flower's runtimes send for a ClientApp that raised (code 2), logged once."""
    log.warning("client node %d raised: %s", msg.metadata.dst_node_id, exc)
    log.debug("%s", traceback.format_exc())
    return Message(Error(code=CLIENT_APP_RAISED_EXCEPTION, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)


class InProcessGrid(Grid):
    """Nodes ``FIRST_NODE_ID + i`` with ``node_config = {partition-id: i, num-partitions: N}``.

    Each node keeps its own :class:`Context` (and so its ``state``) across
    rounds, as a SuperNode does. A ClientApp that raises becomes an error
    reply with code 2, as in Flower's runtimes; the run goes on.
    """

    def __init__(self, client_app: ClientApp, run_config: dict, num_nodes: int, run_id: int = 1) -> None:
        self._client_app = client_app
        self._run = Run.create_empty(run_id)
        self._contexts = {
            FIRST_NODE_ID + i: Context(
                run_id=run_id,
                node_id=FIRST_NODE_ID + i,
                node_config={"partition-id": i, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config=dict(run_config),
            )
            for i in range(num_nodes)
        }
        self._replies: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._contexts)

    def _deliver(self, msg: Message) -> Message:
        context = self._contexts.get(msg.metadata.dst_node_id)
        if context is None:
            return Message(Error(code=CLIENT_APP_RAISED_EXCEPTION, reason="unknown node"), reply_to=msg)
        try:
            reply = self._client_app(msg, context)
        except Exception as exc:  # a crashing client must never crash the server
            reply = error_reply(msg, exc)
        reply.metadata.__dict__["_message_id"] = str(uuid4())
        return reply

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = str(uuid4())
            ids.append(msg.metadata.message_id)
            self._replies[msg.metadata.message_id] = self._deliver(msg)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return list(self.pull_messages(self.push_messages(messages)))


def inprocess_grid(run_config: dict, num_nodes: int, client_app: ClientApp | None = None) -> InProcessGrid:
    """A Grid of ``num_nodes`` in-process nodes running ``client_app`` (default: fl-poison's).

    Also gives this process the identity of a ServerApp (run id, SuperLink node
    id), which Flower's ``Message()`` constructor reads when the server sends.
    """
    if client_app is None:
        from fl_poison.app.client_app import app as client_app
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    TaskIdentity.task_id = 0
    return InProcessGrid(client_app, run_config, num_nodes)


def run_inprocess(server_app: ServerApp, run_config: dict, num_nodes: int,
                  client_app: ClientApp | None = None) -> None:
    """Run a ServerApp (e.g. the one ``flwr run`` runs) against in-process ClientApp nodes."""
    grid = inprocess_grid(run_config, num_nodes, client_app)
    context = Context(run_id=1, node_id=SUPERLINK_NODE_ID, node_config={}, state=RecordDict(),
                      run_config=dict(run_config))
    server_app(grid, context)
