"""The ClientApp: one app for every client; its behaviour follows from the run plan."""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from clients.behaviour import behaviour_for
from fl_poison.config import Config, resolve
from fl_poison.devices import resolve_device
from fl_poison.federation import federation_for, new_model
from fl_poison.training import TrainSettings, get_state, local_accuracy, set_state, train_local

app = ClientApp()


@functools.lru_cache(maxsize=8)
def _config(items: tuple) -> Config:
    return resolve(dict(items))


def config_of(context: Context) -> Config:
    """The validated run config (cached: every message carries the same one)."""
    return _config(tuple(sorted(context.run_config.items())))


def partition_id(context: Context) -> int:
    try:
        return int(context.node_config["partition-id"])
    except KeyError:
        raise ValueError("this SuperNode has no 'partition-id' in its node config; start it with "
                         "--node-config \"partition-id=I num-partitions=N\"") from None


_templates: dict[str, object] = {}


def _template(cfg: Config):
    """The model skeleton, built once per process (weights are overwritten every round)."""
    if cfg.digest() not in _templates:
        _templates[cfg.digest()] = new_model(cfg)
    return _templates[cfg.digest()]


def client_seed(cfg: Config, server_round: int, cid: int) -> int:
    """Distinct, reproducible randomness per (run seed, round, client)."""
    return int(np.random.SeedSequence([cfg["seed"], server_round, cid]).generate_state(1)[0])


def received_model_accuracy(model, x, y, n: int, seed: int) -> float:
    """The received model's accuracy on up to ``n`` seeded local samples (a cheap, unbiased estimate)."""
    if n == 0:
        return float("nan")
    if 0 < n < int(y.shape[0]):
        idx = torch.randperm(int(y.shape[0]), generator=torch.Generator().manual_seed(seed))[:n]
        x, y = x[idx], y[idx]
    return local_accuracy(model, x, y)


@app.query("identify")
def identify(msg: Message, context: Context) -> Message:
    """Tell the server which partition this node trains on (the experiment's bookkeeping)."""
    record = ConfigRecord({
        "partition-id": partition_id(context),
        "num-partitions": int(context.node_config.get("num-partitions", -1)),
    })
    return Message(RecordDict({"identity": record}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    cfg = config_of(context)
    cid = partition_id(context)
    fed = federation_for(cfg)
    server_round = int(msg.content["config"]["server-round"])
    model = copy.deepcopy(_template(cfg)).to(resolve_device(cfg["device"]))
    global_state = msg.content["arrays"].to_numpy_ndarrays()
    names = list(msg.content["arrays"].keys())
    global_state = dict(zip(names, global_state))
    set_state(model, global_state)

    behaviour = behaviour_for(cfg, cid, cid in fed.malicious, fed.num_classes)
    x, y = behaviour.training_set(*fed.client_data(cid), server_round)
    received_acc = received_model_accuracy(model, x, y, cfg["received-eval-samples"],
                                           client_seed(cfg, server_round, cid))
    loss, acc = train_local(model, x, y, TrainSettings.from_config(cfg),
                            seed=client_seed(cfg, server_round, cid), augment=fed.dataset.augment)
    state = behaviour.craft(get_state(model), global_state, server_round)
    reply = RecordDict({
        "arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in state.items()}),
        "metrics": MetricRecord({"num-examples": int(y.shape[0]), "train-loss": float(loss),
                                 "train-accuracy": float(acc), "received-model-accuracy": received_acc}),
    })
    return Message(reply, reply_to=msg)
