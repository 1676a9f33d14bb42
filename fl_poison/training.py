"""Local SGD / Adam training and central evaluation, shared by every client behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from fl_poison.metrics.classification import confusion_matrix


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    optimizer: str

    @classmethod
    def from_config(cls, cfg) -> "TrainSettings":
        return cls(cfg["local-epochs"], cfg["batch-size"], cfg["lr"], cfg["momentum"],
                   cfg["weight-decay"], cfg["optimizer"])


def make_optimizer(model: nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)


def train_local(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: TrainSettings,
    *,
    seed: int,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """Train in place; return (mean loss, accuracy) over the last local epoch.

    The last epoch's running accuracy is the "client-side training accuracy"
    the label-flipping blog uses as a detection signal: a flipped client
    cannot fit its own labels as well as an honest one.
    ``seed`` fixes shuffling, dropout and augmentation, so a run is reproducible.
    """
    n = int(y.shape[0])
    if n == 0:
        return float("nan"), float("nan")
    device = model_device(model)
    x, y = x.to(device), y.to(device)  # once per call: no-ops on the CPU
    gen = torch.Generator().manual_seed(seed)  # CPU generator: the same shuffles on every device
    torch.manual_seed(seed)
    model.train()
    opt = make_optimizer(model, settings)
    loss_fn = nn.CrossEntropyLoss()
    loss_sum = correct = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    for _ in range(settings.epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        # float64 accumulators on the device: no host sync per batch on a GPU, and on
        # the CPU the same double arithmetic as Python floats
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        for start in range(0, n, settings.batch_size):
            idx = perm[start:start + settings.batch_size]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, gen)
            opt.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            opt.step()
            b = int(yb.shape[0])
            loss_sum += loss.detach().double() * b
            correct += (logits.detach().argmax(1) == yb).sum().double()
            seen += b
    return float(loss_sum) / seen, float(correct) / seen


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters live (CPU for a parameterless model)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def local_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Accuracy of ``model`` on a client's training set *as the client labels it*, before training.

    This is the "training accuracy" a FEDn client reports (the received global
    model validated on local training data): near 0 for a client whose labels
    are flipped, whatever its optimiser does afterwards.
    """
    if int(y.shape[0]) == 0:
        return float("nan")
    return int(correct_predictions(model, x, y, batch_size).sum()) / int(y.shape[0])


@torch.no_grad()
def correct_predictions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Per sample, whether ``model`` (in eval mode) predicts its label: many clients' scores in one pass."""
    model.eval()
    device = model_device(model)
    return torch.cat([(model(x[i:i + batch_size].to(device)).argmax(1) == y[i:i + batch_size].to(device)).cpu()
                      for i in range(0, int(y.shape[0]), batch_size)] or [torch.zeros(0, dtype=torch.bool)])


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
             batch_size: int = 1000) -> tuple[float, np.ndarray]:
    """Mean cross-entropy (the papers' test error, TE) and the ``[C, outputs]`` confusion matrix.

    A model with an extra output (the GAN attack's fake class) gets a column for
    it: a test sample predicted as that class counts as wrong, never as class 0.
    """
    model.eval()
    device = model_device(model)  # batches move to the model's device; the test set stays put
    loss_sum, preds, outputs = 0.0, [], num_classes
    for start in range(0, int(y.shape[0]), batch_size):
        xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
        logits = model(xb)
        outputs = max(outputs, int(logits.shape[1]))
        loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        preds.append(logits.argmax(1))
    pred = torch.cat(preds).cpu().numpy() if preds else np.zeros(0, dtype=np.int64)
    n = max(int(y.shape[0]), 1)
    return loss_sum / n, confusion_matrix(y.numpy(), pred, num_classes, outputs)


def get_state(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's full state (parameters and buffers) as numpy arrays, in state_dict order."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def set_state(model: nn.Module, state: dict[str, np.ndarray]) -> None:
    model.load_state_dict({k: torch.from_numpy(np.asarray(v).copy()) for k, v in state.items()}, strict=True)
