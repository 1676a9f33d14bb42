"""The ClientApp: plain local training; one node (``noisy-client``) sends random noise instead."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from my_app.task import load_partition, make_model, train

app = ClientApp()


@app.train()
def local_train(msg: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    x, y = load_partition(pid, int(context.node_config["num-partitions"]))
    model = make_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    cfg = context.run_config
    loss = train(model, x, y, int(cfg["local-epochs"]), float(cfg["lr"]))
    if pid == int(cfg["noisy-client"]):  # a faulty (or malicious) node: its update is noise
        gen = torch.Generator().manual_seed(int(msg.content["config"].get("server-round", 0)))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(float(cfg["noise-scale"]) * torch.randn(p.shape, generator=gen))
    # `partition-id` is an extra numeric metric: the defense's report passes it through per client
    metrics = MetricRecord({"num-examples": len(x), "train-loss": loss, "partition-id": pid})
    return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}), reply_to=msg)
