"""Test-set metrics the papers report, as pure functions of a confusion matrix.

Rows of a confusion matrix are true classes, columns predicted classes. A model
with more outputs than real classes (the GAN attack's extra "fake" class C,
agreed by label voting) gives a ``C x outputs`` matrix: predictions of an extra
output get their own column and count as wrong in every metric here, which
reads the ``C`` real classes only (never folded into another class).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
                     num_outputs: int | None = None) -> np.ndarray:
    """``C[i, j]`` = number of samples of true class ``i`` predicted as ``j``; shape ``[C, num_outputs]``.

    ``num_outputs`` (default ``num_classes``) is the model's output count: a
    prediction ``j >= num_classes`` (an extra class no sample has) lands in its
    own column ``j``. A label or prediction outside its range raises instead of
    silently landing in another cell.
    """
    outputs = num_classes if num_outputs is None else int(num_outputs)
    if outputs < num_classes:
        raise ValueError(f"num_outputs ({outputs}) must be >= num_classes ({num_classes})")
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(f"true labels must be in 0..{num_classes - 1}")
    if p.size and (p.min() < 0 or p.max() >= outputs):
        raise ValueError(f"predictions must be in 0..{outputs - 1}")
    return np.bincount(t * outputs + p, minlength=num_classes * outputs).reshape(num_classes, outputs)


def accuracy(cm: np.ndarray) -> float:
    """Share of correct predictions (the diagonal over the C real classes; extra outputs are wrong)."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def per_class_recall(cm: np.ndarray) -> list[float]:
    """Recall of each class; NaN for a class absent from the test set."""
    support = cm.sum(axis=1)
    diag = np.array([cm[i, i] for i in range(cm.shape[0])])
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = np.where(support > 0, diag / np.maximum(support, 1), np.nan)
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
