"""Metrics against answers computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fl_poison.metrics import classification as M
from fl_poison.metrics.detection import Detection, detect
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from fl_poison.metrics.classification import confusion_matrix
import warnings
from fl_poison.metrics import model_poisoning as MP
from sklearn.metrics import confusion_matrix as sk_confusion_matrix  # noqa: E402
from fl_poison.metrics import classification as C  # noqa: E402
from fl_poison.metrics.poisoning import recall_deltas, top_misclassifications  # noqa: E402
import torch
from torch import nn
from fl_poison.training import evaluate


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


SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


@SETTINGS
@given(y=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=80))
def test_confusion_matrix_is_rows_true_columns_predicted(y):
    from sklearn.metrics import confusion_matrix as sk

    t = np.array([a for a, _ in y], dtype=np.int64)
    p = np.array([b for _, b in y], dtype=np.int64)
    cm = confusion_matrix(t, p, 6)
    assert cm.sum() == len(y)
    assert np.array_equal(cm.sum(axis=1), np.bincount(t, minlength=6))
    assert np.array_equal(cm.sum(axis=0), np.bincount(p, minlength=6))
    if len(y):
        assert np.array_equal(cm, sk(t, p, labels=list(range(6))))


@SETTINGS
@given(parts=st.sets(st.integers(0, 30), max_size=20), data=st.data())
def test_detection_counts_every_participant_once(parts, data):
    flagged = data.draw(st.sets(st.sampled_from(sorted(parts)) if parts else st.nothing()))
    mal = data.draw(st.sets(st.integers(0, 40)))
    d = detect(flagged, mal, sorted(parts))
    assert d.tp + d.fp + d.fn + d.tn == len(parts)
    assert d.tp == len(flagged & mal) and d.fp == len(flagged - mal)
    assert d.fn == len((parts & mal) - flagged)


# rows true, columns predicted; the 4th column is an extra (GAN "fake") output that no sample has
CM = np.array([[5, 1, 0, 0],
               [2, 6, 1, 1],
               [0, 0, 4, 0]])


def test_backdoor_accuracy_of_no_triggered_sample_is_nan_without_a_warning():
    """An empty prediction set is undefined (NaN), decided by the size guard, not by np.mean's 0/0."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(MP.backdoor_accuracy(np.zeros(0, dtype=np.int64), 3))


def test_most_common_target_counts_class_zero_and_skips_non_targets():
    """Class 0 is a real target; negatives, None, NaN and inf mean "none chosen" however often they occur."""
    assert MP.most_common_target([0, 0, 3]) == 0
    assert MP.most_common_target([0.0]) == 0
    assert MP.most_common_target([-1, -1, None, float("nan"), float("nan"), float("inf"), float("inf"), 2.0]) == 2
    assert MP.most_common_target([5, 4, 5, 4]) == 4  # a tie goes to the smallest class


def test_attack_round_metrics_by_hand():
    """Source 1: MTA = (5 + 4) / (6 + 4) over the other classes' rows, max_ATA = 1 - 6/10."""
    got = MP.attack_round_metrics(CM, 1)
    assert got == {"mta": pytest.approx(0.9), "max_ata": pytest.approx(0.4), "source_row": [2, 6, 1, 1]}
    assert all(type(v) is int for v in got["source_row"])
    assert MP.attack_round_metrics(CM, None) == {}


def test_mta_of_a_source_only_test_set_is_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(MP.mta(np.array([[0, 0], [1, 4]]), 1))


@pytest.mark.parametrize("row,target,expected", [
    ([2, 1, 1], 0, 0.5),  # target 0 is a class like any other
    ([2, 1, 1], 2, 0.25),
    ([2, 1, 1], 3, float("nan")),  # no such class: undefined, not an IndexError
    ([2, 1, 1], -1, float("nan")),  # no negative indexing from the end
    ([0, 0, 0], 1, float("nan")),  # no source sample
])
def test_ata_by_hand(row, target, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert MP.ata(row, target) == pytest.approx(expected, nan_ok=True)


def test_max_ata_by_hand():
    assert MP.max_ata([3, 1, 0], 0) == pytest.approx(0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(MP.max_ata([0, 0, 0], 0))


def test_norm_columns_split_honest_and_malicious():
    got = MP.norm_columns([0, 1, 2, 3], [1.0, 2.0, 3.0, 6.0], {1, 3})
    assert got == {"honest_update_norm_mean": 2.0, "honest_update_norm_max": 3.0,
                   "malicious_update_norm_mean": 4.0, "malicious_update_norm_max": 6.0}
    assert MP.norm_columns([0, 2], [1.0, 3.0], {1}) == {
        "honest_update_norm_mean": 2.0, "honest_update_norm_max": 3.0,
        "malicious_update_norm_mean": None, "malicious_update_norm_max": None}


def test_confusion_matrix_with_an_extra_output_matches_sklearn():
    """A GAN-style extra output C gets its own column; the rest is sklearn's rows-true, columns-predicted matrix."""
    y = np.array([0, 1, 2, 2, 1, 0])
    p = np.array([0, 3, 2, 1, 1, 3])
    got = C.confusion_matrix(y, p, 3, num_outputs=4)
    assert got.shape == (3, 4)
    assert np.array_equal(got, sk_confusion_matrix(y, p, labels=range(4))[:3])


def test_confusion_matrix_of_uint8_labels_does_not_overflow():
    """Labels as stored in idx files (uint8) with 20 classes: t * outputs + p must not wrap around in uint8."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 20, size=200).astype(np.uint8)
    p = rng.integers(0, 20, size=200).astype(np.uint8)
    assert np.array_equal(C.confusion_matrix(y, p, 20), sk_confusion_matrix(y, p, labels=range(20)))


@pytest.mark.parametrize("y,p,outputs,msg", [
    ([0, 3], [0, 0], None, "true labels must be in 0..2"),  # one past the end, nothing negative
    ([-1, 0], [0, 0], None, "true labels must be in 0..2"),  # negative, nothing past the end
    ([0, 0], [0, 3], None, "predictions must be in 0..2"),
    ([0, 0], [-1, 0], None, "predictions must be in 0..2"),
    ([0, 0], [0, 4], 4, "predictions must be in 0..3"),
    ([0, 0], [0, 0], 2, "num_outputs (2) must be >= num_classes (3)"),
])
def test_confusion_matrix_messages_name_the_allowed_range(y, p, outputs, msg):
    with pytest.raises(ValueError) as err:
        C.confusion_matrix(np.array(y), np.array(p), 3, num_outputs=outputs)
    assert str(err.value) == msg


@pytest.mark.parametrize("values,expected", [
    ([5.0], 0.0),  # one value: no spread, not undefined
    ([0.5, 1.5], 0.5),  # mean exactly 1: sigma / 1
    ([1.0, None, float("nan"), 3.0], 0.5),  # missing rounds are skipped: sigma([1, 3]) / 2
])
def test_coefficient_of_variation_by_hand(values, expected):
    assert C.coefficient_of_variation(values) == pytest.approx(expected)


@pytest.mark.parametrize("values", [[], [None, float("nan")], [1.0, -1.0]])
def test_coefficient_of_variation_undefined_is_nan_without_a_warning(values):
    """No value, or mean 0 (sigma/0): NaN from the guard, never numpy's empty-mean or division warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(C.coefficient_of_variation(values))


def test_per_class_recall_of_a_c_by_outputs_matrix_and_single_sample_classes():
    """Rows are the C real classes (an extra output column is only ever wrong); a class with 1 sample is 0 or 1."""
    cm = np.array([[1, 0, 0, 0],   # class 0: its one sample right
                   [0, 0, 0, 1],   # class 1: its one sample sent to the extra output 3
                   [0, 1, 2, 1]])
    assert C.per_class_recall(cm) == [1.0, 0.0, 0.5]


def test_last_k_mean_skips_missing_values():
    assert C.last_k_mean([1.0, None, float("nan"), 3.0]) == 2.0


def test_detection_sum_adds_every_count_fieldwise():
    """Summing rounds' detections (the summary's tail) adds all four counts; distinct values catch a swap."""
    assert Detection(1, 2, 3, 4) + Detection(10, 20, 30, 40) == Detection(tp=11, fp=22, fn=33, tn=44)


def test_empty_matrix_metrics_are_nan_without_dividing_by_zero():
    cm = np.zeros((3, 3), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 0/0 would warn: the guard must short-circuit
        assert np.isnan(C.accuracy(cm))
        assert np.isnan(C.source_accuracy(cm, 1))
        assert np.isnan(C.attack_success_rate(cm, 1, 2))
        assert all(np.isnan(C.per_class_recall(cm)))


def test_last_k_mean_defaults_to_the_last_ten():
    assert C.last_k_mean(list(range(11))) == pytest.approx(5.5)


def test_detection_dict_keys_are_the_summary_columns():
    d = Detection(tp=1, fp=1, fn=0, tn=2).as_dict()
    assert d == {"tp": 1, "fp": 1, "fn": 0, "tn": 2, "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3)}


@pytest.mark.parametrize("args,msg", [
    (([1, 1], [1, 1, 1], 0, 1), "recall vectors must be 1-D of equal length, got (2,) and (3,)"),
    (([1, 1, 1], [1, 1, 1], 3, 1), "source-class must be in 0..2, got 3"),
    (([1, 1, 1], [1, 1, 1], 0, -1), "target-class must be in 0..2, got -1"),
    (([1, 1, 1], [1, 1, 1], 2, 2), "source-class and target-class must differ, both are 2"),
])
def test_recall_deltas_messages(args, msg):
    with pytest.raises(ValueError) as err:
        recall_deltas(*args)
    assert str(err.value) == msg


def test_top_misclassifications_rejects_negative_k():
    with pytest.raises(ValueError, match=r"k must be >= 0, got -1"):
        top_misclassifications(np.eye(3, dtype=int), -1)


class _Always(nn.Module):
    def __init__(self, cls: int) -> None:
        super().__init__()
        self.cls = cls

    def forward(self, x):
        out = torch.zeros(x.shape[0], 5)
        out[:, self.cls] = 1.0
        return out


# --- 13. confusion matrices are rows = true, columns = predicted ----------------------------------------
def test_confusion_matrix_matches_sklearn():
    from sklearn.metrics import confusion_matrix as sk

    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert np.array_equal(confusion_matrix(y, p, 4), sk(y, p, labels=range(4)))


def test_evaluate_confusion_puts_predictions_in_columns():
    y = torch.tensor([0, 0, 1, 2, 2, 2, 4])
    loss, cm = evaluate(_Always(3), torch.zeros(7, 2), y, 5, batch_size=3)
    expected = np.zeros((5, 5), dtype=np.int64)
    expected[:, 3] = [2, 1, 3, 0, 1]
    assert cm.tolist() == expected.tolist()
    logits = torch.zeros(7, 5)
    logits[:, 3] = 1.0
    assert loss == pytest.approx(float(nn.functional.cross_entropy(logits, y)))
