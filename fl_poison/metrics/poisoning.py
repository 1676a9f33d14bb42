"""Tolpegin et al.'s attack metrics (ESORICS 2020, §3.1–3.2, Tables 2–3).

Convention throughout: a confusion matrix has rows = true class and columns =
predicted class, so ``confusion[i, j]`` counts test examples of class ``i``
predicted as ``j`` (the layout of ``sklearn.metrics.confusion_matrix``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _square(confusion: np.ndarray) -> np.ndarray:
    c = np.asarray(confusion)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion matrix must be square [C, C], got shape {c.shape}")
    return c


def misclassification_counts(confusion: np.ndarray) -> np.ndarray:
    """Baseline misclassification counts ``m_cnt[i, j]`` (diagonal zero).

    Tolpegin: for ``c_i != c_j``, ``m_cnt_ij`` is the number of test examples
    of true class ``c_i`` that the *non-poisoned* global model ``M_NP``
    predicts as ``c_j``. Pass the confusion matrix of a no-attack baseline
    run (rows true, columns predicted); the result is a copy with the
    diagonal (correct predictions) set to zero. The paper uses it to ask
    whether pairs the clean model already confuses (5 -> 3 on CIFAR-10) are
    easier to flip than rare ones (0 -> 2) — they are not, necessarily.
    """
    m = np.array(_square(confusion), copy=True)
    np.fill_diagonal(m, 0)
    return m


def top_misclassifications(
    confusion: np.ndarray, k: int, *, least: bool = False
) -> list[tuple[int, int, int | float]]:
    """The ``k`` most (or, with ``least=True``, least) common confusions ``(i, j, count)``.

    Tolpegin picks source -> target pairs from both ends of the baseline
    ``m_cnt`` ranking (Table 2: 5 -> 3 with 200 vs 0 -> 2 with 16). Only
    off-diagonal pairs are ranked; ties are broken by ``(i, j)`` ascending so
    the answer is deterministic. ``k`` larger than the ``C*(C-1)`` pairs
    returns them all. ``count`` is a Python scalar of the matrix's kind
    (``int`` for count matrices).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    m = misclassification_counts(confusion)
    n = m.shape[0]
    pairs = [(i, j, m[i, j].item()) for i in range(n) for j in range(n) if i != j]
    if least:
        pairs.sort(key=lambda p: (p[2], p[0], p[1]))
    else:
        pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    return pairs[:k]


def recall_deltas(
    recall_attack: Sequence[float],
    recall_base: Sequence[float],
    source: int,
    target: int,
) -> dict[str, float]:
    """Changes in per-class recall caused by poisoning (Tolpegin Table 3).

    Each delta is ``attack - baseline`` (negative = recall lost), in the
    units the recalls are given in (fractions or percent). Table 3's columns
    are "Δ c_recall_src", "Δ c_recall_target" and "Σ all other Δ c_recall",
    the *sum* over every class other than source and target of its change in
    recall ("total recall for all remaining classes (non-source,
    non-target)"); the paper shows source drops of ~6–10 % and target gains,
    while the summed change of the others stays below 0.34 % — the evidence
    that the attack is targeted.

    Keys: ``delta_source_recall``, ``delta_target_recall``,
    ``delta_other_recall``.
    """
    a = np.asarray(recall_attack, dtype=np.float64)
    b = np.asarray(recall_base, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(
            f"recall vectors must be 1-D of equal length, got {a.shape} and {b.shape}"
        )
    n = a.shape[0]
    for name, c in (("source-class", source), ("target-class", target)):
        if not 0 <= c < n:
            raise ValueError(f"{name} must be in 0..{n - 1}, got {c}")
    if source == target:
        raise ValueError(f"source-class and target-class must differ, both are {source}")
    delta = a - b
    others = np.ones(n, dtype=bool)
    others[[source, target]] = False
    return {
        "delta_source_recall": float(delta[source]),
        "delta_target_recall": float(delta[target]),
        "delta_other_recall": float(delta[others].sum()),
    }
