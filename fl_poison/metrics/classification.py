"""Test-set metrics the papers report, as pure functions of a confusion matrix.

Rows of a confusion matrix are true classes, columns predicted classes.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of samples of true class ``i`` predicted as ``j``."""
    idx = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def per_class_recall(cm: np.ndarray) -> list[float]:
    """Recall of each class; NaN for a class absent from the test set."""
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    return [float(r) for r in rec]


def source_accuracy(cm: np.ndarray, source: int) -> float:
    """Share of source-class samples classified correctly (LFighter's Src-Acc)."""
    row = cm[source]
    return float(row[source] / row.sum()) if row.sum() else float("nan")


def attack_success_rate(cm: np.ndarray, source: int, target: int) -> float:
    """Share of source-class samples classified as the target (LFighter's ASR)."""
    row = cm[source]
    return float(row[target] / row.sum()) if row.sum() else float("nan")


def coefficient_of_variation(values: Sequence[float]) -> float:
    """σ/μ of a series (population σ), LFighter's stability measure; NaN if μ = 0."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if arr.size == 0 or arr.mean() == 0:
        return float("nan")
    return float(arr.std() / arr.mean())


def last_k_mean(values: Sequence[float | None], k: int = 10) -> float | None:
    """Mean of the last ``k`` values (fewer if the run is shorter): the papers' reporting convention."""
    tail = [v for v in list(values)[-k:] if v is not None and not math.isnan(v)]
    return float(np.mean(tail)) if tail else None
