"""Metrics against answers computed by hand."""

import math

import numpy as np
import pytest

from fl_poison.metrics import classification as M
from fl_poison.metrics.detection import Detection, detect


def test_confusion_and_derived_metrics_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 1, 0, 1, 1, 2, 1, 1, 0])
    cm = M.confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [1, 2, 1]]
    assert M.accuracy(cm) == pytest.approx(5 / 9)
    assert M.per_class_recall(cm) == pytest.approx([2 / 3, 1.0, 1 / 4])
    assert M.source_accuracy(cm, 2) == pytest.approx(0.25)
    assert M.attack_success_rate(cm, 2, 1) == pytest.approx(0.5)  # 2 of 4 class-2 samples predicted 1


def test_recall_of_absent_class_is_nan():
    cm = M.confusion_matrix(np.array([0, 0]), np.array([0, 1]), 3)
    rec = M.per_class_recall(cm)
    assert rec[0] == 0.5 and math.isnan(rec[2])


def test_cv_and_last10():
    xs = [0.5, 0.7, 0.9, 0.7]
    mu = 0.7
    sigma = math.sqrt(((0.2) ** 2 * 2) / 4)
    assert M.coefficient_of_variation(xs) == pytest.approx(sigma / mu)
    assert M.last_k_mean(list(range(20)), 10) == pytest.approx(14.5)
    assert M.last_k_mean([1.0, 3.0], 10) == 2.0  # shorter runs average what they have
    assert M.last_k_mean([], 10) is None


def test_detection_counts_and_scores():
    d = detect(flagged=[1, 2, 5], malicious=[1, 2, 3], participants=[0, 1, 2, 3, 4, 5])
    assert (d.tp, d.fp, d.fn, d.tn) == (2, 1, 1, 2)
    assert d.precision == pytest.approx(2 / 3) and d.recall == pytest.approx(2 / 3)
    assert d.f1 == pytest.approx(2 / 3)
    total = d + Detection(tp=1, fn=0, fp=0, tn=3)
    assert (total.tp, total.tn) == (3, 5)


def test_detection_undefined_cases():
    none_flagged = detect([], [1], [0, 1])
    assert none_flagged.precision is None and none_flagged.recall == 0.0 and none_flagged.f1 is None
    no_attackers = detect([0], [], [0, 1])
    assert no_attackers.recall is None and no_attackers.precision == 0.0
