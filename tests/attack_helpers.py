"""What the attack tests share: one client's round as the ClientApp builds it, and a small seeded state."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from clients.behaviour import RoundInput
from clients.store import NodeStore
from fl_poison.training import TrainSettings, get_state


def client_round(cfg, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, cid: int = 0, server_round: int = 1,
                 seed: int = 1, num_classes: int = 10, global_state: dict | None = None) -> RoundInput:
    """One client's round the way the ClientApp builds it (a seeded generator from ``seed``)."""
    return RoundInput(cid=cid, server_round=server_round, config=cfg, model=model,
                      global_state=global_state if global_state is not None else get_state(model), x=x, y=y,
                      settings=TrainSettings.from_config(cfg), num_classes=num_classes, seed=seed,
                      rng=np.random.default_rng(seed), store=NodeStore())


def seeded_arrays(seed: int) -> dict[str, np.ndarray]:
    """A small float32 state with an integer buffer (BatchNorm's counter), random but seeded."""
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=(20, 30)).astype(np.float32), "b": rng.normal(size=30).astype(np.float32),
            "n": np.array(seed, np.int64)}
