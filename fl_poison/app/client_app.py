"""The ClientApp: one app for every client; its behaviour (honest or an attack plug-in) follows from the run plan."""

from __future__ import annotations

import copy
import functools

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from clients.behaviour import Behaviour, LocalResult, RoundInput, behaviour_class, received_sample
from clients.store import NodeStore
from fl_poison.app.node import identity, local_node
from fl_poison.config import Config, resolve
from fl_poison.devices import resolve_device
from fl_poison.federation import new_model
from fl_poison.training import TrainSettings, set_state

# An engine that runs the ClientApp's steps itself (fl_poison/engine/batched.py) imports Behaviour, RoundInput,
# received_sample, round_input and reply_message from here: only the app layer imports `clients`.

app = ClientApp()


@functools.lru_cache(maxsize=8)
def _config(items: tuple) -> Config:
    return resolve(dict(items))


def config_of(context: Context) -> Config:
    """The validated run config (cached: every message carries the same one)."""
    return _config(tuple(sorted(context.run_config.items())))


_templates: dict[str, object] = {}


def _template(cfg: Config):
    """The model skeleton, built once per process (weights are overwritten every round)."""
    if cfg.digest() not in _templates:
        _templates[cfg.digest()] = new_model(cfg)
    return _templates[cfg.digest()]


def client_seed(cfg: Config, server_round: int, cid: int) -> int:
    """Distinct, reproducible randomness per (run seed, round, client)."""
    return int(np.random.SeedSequence([cfg["seed"], server_round, cid]).generate_state(1)[0])


@app.query("identify")
def identify(msg: Message, context: Context) -> Message:
    """Tell the server which partition this node trains on (the experiment's bookkeeping)."""
    record = ConfigRecord(identity(context.node_config))
    return Message(RecordDict({"identity": record}), reply_to=msg)


def to_array_record(state: dict[str, np.ndarray]) -> ArrayRecord:
    """Arrays of a state dict, shapes kept exactly (0-d buffers such as ``num_batches_tracked`` included)."""
    return ArrayRecord({k: Array(np.ascontiguousarray(v).reshape(np.shape(v))) for k, v in state.items()})


def round_input(msg: Message, context: Context) -> tuple[Behaviour, RoundInput]:
    """The behaviour of this node and everything its round offers (shared with the batched engine)."""
    cfg = config_of(context)
    node = local_node(cfg, context.node_config)  # own data and role from the node config
    cid = node.cid
    server_round = int(msg.content["config"]["server-round"])
    model = copy.deepcopy(_template(cfg)).to(resolve_device(cfg["device"]))
    record = msg.content["arrays"]
    global_state = dict(zip(record.keys(), record.to_numpy_ndarrays()))
    set_state(model, global_state)

    cls = behaviour_class(node.config, node.malicious)
    seed = client_seed(cfg, server_round, cid)
    r = RoundInput(cid=cid, server_round=server_round, config=node.config, model=model, global_state=global_state,
                   x=node.x, y=node.y, settings=TrainSettings.from_config(cfg), num_classes=node.num_classes,
                   seed=seed, rng=np.random.default_rng(seed), store=NodeStore(context.state, prefix=cls.name),
                   augment=node.augment, pool=node.pool)
    return cls(cid, node.config), r


def reply_message(msg: Message, result: LocalResult) -> Message:
    """The train reply carrying ``result``: arrays, metrics (example count first) and records."""
    metrics = {"num-examples": int(result.num_examples), **{k: float(v) for k, v in result.metrics.items()}}
    reply = RecordDict({"arrays": to_array_record(result.state), "metrics": MetricRecord(metrics),
                        **{name: ConfigRecord(rec) for name, rec in result.records.items()}})
    return Message(reply, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    behaviour, r = round_input(msg, context)
    return reply_message(msg, behaviour.local_work(r))
