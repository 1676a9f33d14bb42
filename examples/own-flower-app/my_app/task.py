"""The model and data: a tiny MLP on scikit-learn's bundled 8x8 digits, split IID over the nodes."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int64)


def load_partition(partition_id: int, num_partitions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training share of one node (the first 1,500 digits, shuffled once, cut into equal parts)."""
    x, y = _digits()
    order = np.random.default_rng(0).permutation(1500)
    part = np.array_split(order, num_partitions)[partition_id]
    return torch.from_numpy(x[part]), torch.from_numpy(y[part])


def load_test() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _digits()
    return torch.from_numpy(x[1500:]), torch.from_numpy(y[1500:])


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss = torch.tensor(0.0)
    for epoch in range(epochs):
        for idx in torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch)).split(32):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    return float(loss.detach())


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())
