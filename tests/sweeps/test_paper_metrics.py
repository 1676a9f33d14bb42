"""Tolpegin et al. metrics on hand-made confusion matrices and recalls."""

from __future__ import annotations

import numpy as np
import pytest

from fl_poison.metrics.poisoning import (
    misclassification_counts,
    recall_deltas,
    top_misclassifications,
)

# rows = true class, cols = predicted
CONF3 = np.array(
    [
        [50, 3, 7],
        [1, 40, 9],
        [0, 12, 38],
    ]
)


def test_misclassification_counts_zero_diagonal() -> None:
    m = misclassification_counts(CONF3)
    assert m.tolist() == [[0, 3, 7], [1, 0, 9], [0, 12, 0]]
    assert CONF3[0, 0] == 50  # input untouched


def test_top_most_and_least() -> None:
    # off-diagonal: (2,1)=12 (1,2)=9 (0,2)=7 (0,1)=3 (1,0)=1 (2,0)=0
    assert top_misclassifications(CONF3, 3) == [(2, 1, 12), (1, 2, 9), (0, 2, 7)]
    assert top_misclassifications(CONF3, 2, least=True) == [(2, 0, 0), (1, 0, 1)]
    assert len(top_misclassifications(CONF3, 100)) == 6
    assert top_misclassifications(CONF3, 0) == []


def test_top_ties_broken_by_index() -> None:
    conf = np.array([[9, 2, 2], [2, 9, 0], [1, 0, 9]])
    assert top_misclassifications(conf, 3) == [(0, 1, 2), (0, 2, 2), (1, 0, 2)]
    assert top_misclassifications(conf, 2, least=True) == [(1, 2, 0), (2, 1, 0)]


def test_non_square_rejected() -> None:
    with pytest.raises(ValueError, match="square"):
        misclassification_counts(np.zeros((2, 3)))


def _recall(conf: np.ndarray) -> np.ndarray:
    return np.diag(conf) / conf.sum(axis=1)


def test_recall_deltas_4x4_by_hand() -> None:
    # 100 test examples per class; source 1 -> target 3.
    base = np.array(
        [
            [90, 4, 3, 3],
            [2, 80, 8, 10],
            [5, 5, 85, 5],
            [1, 6, 3, 90],
        ]
    )
    attack = np.array(
        [
            [91, 3, 3, 3],
            [2, 60, 6, 32],
            [6, 5, 84, 5],
            [1, 2, 3, 94],
        ]
    )
    d = recall_deltas(_recall(attack), _recall(base), source=1, target=3)
    # source 0.80 -> 0.60, target 0.90 -> 0.94, others (0.91-0.90)+(0.84-0.85) = 0
    assert d["delta_source_recall"] == pytest.approx(-0.20)
    assert d["delta_target_recall"] == pytest.approx(0.04)
    assert d["delta_other_recall"] == pytest.approx(0.0)
    assert set(d) == {"delta_source_recall", "delta_target_recall", "delta_other_recall"}


def test_recall_deltas_other_is_a_sum_in_percent() -> None:
    base = [90.0, 80.0, 70.0, 60.0]
    attack = [91.0, 70.0, 72.5, 65.0]
    d = recall_deltas(attack, base, source=1, target=3)
    assert d == {
        "delta_source_recall": -10.0,
        "delta_target_recall": 5.0,
        "delta_other_recall": 3.5,  # +1 (class 0) + 2.5 (class 2), summed
    }


def test_recall_deltas_errors() -> None:
    with pytest.raises(ValueError, match="equal length"):
        recall_deltas([1, 2], [1, 2, 3], 0, 1)
    with pytest.raises(ValueError, match="target-class"):
        recall_deltas([1, 2], [1, 2], 0, 2)
    with pytest.raises(ValueError, match="differ"):
        recall_deltas([1, 2], [1, 2], 1, 1)
