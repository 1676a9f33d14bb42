"""Call the real ClientApp with a crafted global model: shared by the attack and ClientApp tests."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict

from fl_poison.app import client_app as real
from fl_poison.engine.inprocess import FIRST_NODE_ID, inprocess_grid
from fl_poison.federation import new_model

SMALL = {"dataset": "digits", "num-clients": 4, "clients-per-round": 4, "num-rounds": 1, "seed": 3,
         "figures": False}


def constant_state(cfg, cls: int) -> dict[str, np.ndarray]:
    """A global model of the config's architecture that predicts ``cls`` for every input."""
    state = {k: v.detach().numpy().copy() for k, v in new_model(cfg).state_dict().items()}
    names = list(state)
    w, b = names[-2], names[-1]  # the output Linear layer (weight, bias)
    state[w][:] = 0.0
    state[b][:] = 0.0
    state[b][cls] = 10.0
    return state


def train_reply(cfg, cid: int, state: dict[str, np.ndarray], server_round: int = 1) -> Message:
    """One real ClientApp train call for partition ``cid`` through the in-process Grid."""
    grid = inprocess_grid(cfg.to_dict(), cfg["num-clients"], real.app)
    content = RecordDict({"arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in state.items()}),
                          "config": ConfigRecord({"server-round": server_round})})
    msg = Message(content, FIRST_NODE_ID + cid, MessageType.TRAIN)
    (reply,) = grid.send_and_receive([msg])
    assert not reply.has_error(), reply.error.reason
    return reply


def reply_metrics(reply: Message) -> dict:
    return dict(reply.content["metrics"])
