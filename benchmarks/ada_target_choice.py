"""Which target ADA picks (full / partial-paper / partial-code) per source, from a saved global model.

usage: python benchmarks/ada_target_choice.py RUN_DIR [client ...]   (RUN_DIR has config.json and model.npz)
The attacker's local data = the listed clients' partitions (default: client 0).
"""
import json
import sys
from collections import Counter

import numpy as np
import torch

from clients.target_choice import choose_target
from fl_poison.config import resolve
from fl_poison.federation import federation_for, new_model
from fl_poison.training import set_state

run = sys.argv[1]
clients = [int(c) for c in sys.argv[2:]] or [0]
cfg = resolve({k: v for k, v in json.load(open(f"{run}/config.json")).items()})
fed = federation_for(cfg)
model = new_model(cfg)
set_state(model, dict(np.load(f"{run}/model.npz")))
print("source | " + " | ".join(f"client {c}: full / FLAME-paper / FLAME-code" for c in clients))
for s in range(fed.num_classes):
    cells = []
    for c in clients:
        x, y = fed.client_data(c)
        picks = [choose_target(model, x, y, s, fed.num_classes, k, r)[0]
                 for k, r in (("full", "paper"), ("partial", "paper"), ("partial", "code"))]
        cells.append(" / ".join(map(str, picks)))
    print(f"{s} | " + " | ".join(cells))
