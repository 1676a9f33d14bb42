"""Metrics of the model-poisoning family: ADA's ATA / MTA, update norms, backdoor accuracy.

Confusion matrices have rows = true class, columns = predicted class.
ADA (Sun et al. §V) reports ts-ATA -- the share of source-class test samples
predicted as the attacker's target -- and MTA, the accuracy on the other
classes; we add ``max_ata`` (source predicted as *any* other class, i.e.
1 - source recall), the ceiling of any target's ATA.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn


def mta(confusion: np.ndarray, source: int) -> float:
    """Accuracy on the test samples whose true class is not ``source``."""
    cm = np.asarray(confusion, dtype=float)
    keep = np.arange(cm.shape[0]) != source
    total = cm[keep].sum()
    return float(np.trace(cm) - cm[source, source]) / total if total else float("nan")


def ata(source_row: Sequence[float], target: int) -> float:
    """Share of source-class test samples predicted as ``target`` (from the source's confusion row)."""
    row = np.asarray(source_row, dtype=float)
    return float(row[target] / row.sum()) if row.sum() and 0 <= target < len(row) else float("nan")


def max_ata(source_row: Sequence[float], source: int) -> float:
    """Share of source-class test samples predicted as any other class (1 - source recall)."""
    row = np.asarray(source_row, dtype=float)
    return float(1.0 - row[source] / row.sum()) if row.sum() else float("nan")


def attack_round_metrics(confusion: np.ndarray, source: int | None) -> dict[str, Any]:
    """Per-round ``mta``, ``max_ata`` and ``source_row`` (a list, kept out of rounds.csv) when a source is set."""
    if source is None:
        return {}
    row = np.asarray(confusion)[source]
    return {"mta": mta(confusion, source), "max_ata": max_ata(row, source), "source_row": [int(v) for v in row]}


def most_common_target(targets: Iterable[float | None]) -> int:
    """The most frequent chosen target (ties: the smallest class); -1 when none was chosen."""
    valid = [int(t) for t in targets if t is not None and math.isfinite(t) and t >= 0]
    if not valid:
        return -1
    counts = Counter(valid)
    best = max(counts.values())
    return min(t for t, n in counts.items() if n == best)


def norm_columns(clients: Sequence[int], norms: Sequence[float], malicious: set[int]) -> dict[str, float | None]:
    """``{honest,malicious}_update_norm_{mean,max}`` of one round (None for an empty group)."""
    out: dict[str, float | None] = {}
    for group, vals in (("honest", [n for c, n in zip(clients, norms) if c not in malicious]),
                        ("malicious", [n for c, n in zip(clients, norms) if c in malicious])):
        out[f"{group}_update_norm_mean"] = float(np.mean(vals)) if vals else None
        out[f"{group}_update_norm_max"] = float(np.max(vals)) if vals else None
    return out


def backdoor_test_mask(y_test, target: int):
    """Which test samples backdoor accuracy is measured on: those whose true class is not ``target``.

    A target-class sample predicted as the target is no success of the trigger,
    so it is left out (``y_test`` a tensor or array; the mask is of the same kind).
    """
    return y_test != target


def backdoor_accuracy(pred: np.ndarray, target: int) -> float:
    """Share of (triggered, true class != target) predictions equal to ``target``."""
    pred = np.asarray(pred)
    return float(np.mean(pred == target)) if pred.size else float("nan")


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Predicted classes of ``x`` in evaluation mode."""
    model.eval()
    if int(x.shape[0]) == 0:
        return np.zeros(0, dtype=np.int64)
    device = next(model.parameters()).device  # batches go to the model's device (run key `device`)
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu()
                          for i in range(0, int(x.shape[0]), batch_size)]).numpy()
