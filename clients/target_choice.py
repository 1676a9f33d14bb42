"""ADA's choice of target class from the received global model (Sun et al., §IV-C).

Full knowledge (§IV-C1, eqs. 9-11): the attacking distance AD(s, t) is the L2
distance between the mean penultimate-layer features of class s and class t
over the attacker's local samples; the target is the class nearest to the
source.

Partial knowledge, FLAME (§IV-C2, eqs. 12-13): label every local source sample
with a candidate class t, take the gradient of the summed cross-entropy loss
with respect to the last fully connected layer (weights and bias), and use its
norm; the target is the candidate with the smallest norm, the source excluded.
The authors' code (``yuweisunn/ADA``, ``flame``) differs: it averages, over up
to 500 source samples, the per-sample norms of the weight and of the bias
gradient of a binary cross-entropy on the softmax output; ``rule="code"``
reproduces that, ``rule="paper"`` (default) is eq. (12)-(13).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def class_feature_means(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                        batch_size: int = 1000) -> np.ndarray:
    """[C, H] mean penultimate features per class (NaN rows for classes without samples)."""
    model.eval()
    feats = torch.cat([model.penultimate(x[i:i + batch_size]) for i in range(0, int(y.shape[0]), batch_size)])
    f = feats.double().numpy()
    labels = y.numpy()
    out = np.full((num_classes, f.shape[1]), np.nan)
    for c in range(num_classes):
        if (labels == c).any():
            out[c] = f[labels == c].mean(axis=0)
    return out


def attacking_distances(means: np.ndarray, source: int) -> np.ndarray:
    """AD(source, t) = ||mu_source - mu_t||_2 for every class t (NaN where a mean is missing)."""
    return np.linalg.norm(means - means[source][None, :], axis=1)


def flame_gradient_norms(model: nn.Module, x_source: torch.Tensor, num_classes: int, rule: str = "paper") -> np.ndarray:
    """[C] FLAME scores: per candidate label, the last layer's gradient norm (see the module docstring)."""
    layer = getattr(model, model.output_layer)
    params = [layer.weight, layer.bias] if layer.bias is not None else [layer.weight]
    model.eval()
    n = int(x_source.shape[0])
    scores = np.full(num_classes, np.nan)
    if n == 0:
        return scores
    if rule == "code":
        x_source = x_source[:500]
        n = int(x_source.shape[0])
    for t in range(num_classes):
        if rule == "paper":
            logits = model(x_source)
            loss = F.cross_entropy(logits, torch.full((n,), t, dtype=torch.long), reduction="sum")
            grads = torch.autograd.grad(loss, params)
            scores[t] = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
        elif rule == "code":
            per = []
            onehot = F.one_hot(torch.tensor([t]), num_classes).float()
            for i in range(n):
                p = F.softmax(model(x_source[i:i + 1]), dim=1)
                loss = F.binary_cross_entropy(p, onehot)
                grads = torch.autograd.grad(loss, params)
                per.append([float(g.norm()) for g in grads])
            scores[t] = float(np.mean(per))
        else:
            raise ValueError(f"unknown FLAME rule {rule!r}")
    return scores


def nearest_target(scores: np.ndarray, source: int) -> int:
    """argmin of ``scores`` over classes other than ``source`` (NaN = unavailable); -1 when none is available."""
    s = np.array(scores, dtype=float)
    s[source] = np.nan
    if np.all(np.isnan(s)):
        return -1
    return int(np.nanargmin(s))


def choose_target(model: nn.Module, x: torch.Tensor, y: torch.Tensor, source: int, num_classes: int,
                  knowledge: str, flame_rule: str = "paper") -> tuple[int, np.ndarray]:
    """(target, per-class scores) from the received model and the attacker's local data; -1 if undecidable."""
    if knowledge == "full":
        scores = attacking_distances(class_feature_means(model, x, y, num_classes), source)
    elif knowledge == "partial":
        scores = flame_gradient_norms(model, x[y == source], num_classes, flame_rule)
    else:
        raise ValueError(f"unknown knowledge {knowledge!r}")
    return nearest_target(scores, source), scores
