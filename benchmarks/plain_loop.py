"""FedAvg as a plain PyTorch loop, no Flower: the reference the engines are compared with."""

from __future__ import annotations

import copy
import time

import numpy as np

from fl_poison.config import Config
from fl_poison.devices import resolve_device
from fl_poison.federation import federation_for, new_model
from fl_poison.metrics.classification import accuracy
from fl_poison.training import TrainSettings, evaluate, train_local


def plain_fedavg(cfg: Config) -> tuple[list[float], list[float]]:
    """Return (seconds per round, test accuracy per round); all clients train every round.

    A round's time includes the central evaluation, as it does in the engines' ``rounds.csv``.
    """
    fed = federation_for(cfg)
    model = new_model(cfg).to(resolve_device(cfg["device"]))
    settings = TrainSettings.from_config(cfg)
    times, accs = [], []
    for rnd in range(1, cfg["num-rounds"] + 1):
        t0 = time.perf_counter()
        global_state = copy.deepcopy(model.state_dict())
        total, acc_state = 0, None
        for cid in range(cfg["num-clients"]):
            model.load_state_dict(global_state)
            x, y = fed.client_data(cid)
            train_local(model, x, y, settings, seed=1000 * rnd + cid, augment=fed.dataset.augment)
            n = int(y.shape[0])
            total += n
            sd = model.state_dict()
            if acc_state is None:
                acc_state = {k: v.detach().double() * n for k, v in sd.items()}
            else:
                for k, v in sd.items():
                    acc_state[k] += v.detach().double() * n
        model.load_state_dict({k: (v / total).to(global_state[k].dtype) for k, v in acc_state.items()})
        _, cm = evaluate(model, fed.dataset.x_test, fed.dataset.y_test, fed.num_classes)  # as the engines do
        times.append(time.perf_counter() - t0)
        accs.append(accuracy(cm))
    return times, accs


if __name__ == "__main__":
    import sys

    from fl_poison.cli import config_from_args

    cfg = config_from_args(None, sys.argv[1:])
    t, a = plain_fedavg(cfg)
    print("s/round", [round(x, 2) for x in t], "median", round(float(np.median(t)), 2))
    print("accuracy", [round(x, 4) for x in a])
