"""Tolpegin et al.'s comparison of an attack run with its no-attack baseline, from run directories only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fl_poison.metrics.poisoning import misclassification_counts, recall_deltas, top_misclassifications
from fl_poison.results import read_summary


def compare_runs(attack_dir: str | Path, baseline_dir: str | Path) -> dict[str, Any]:
    """m_cnt(src -> tgt) of the baseline and the change in source / target / other recall (Tables 2-3).

    Recalls are final-round values; the attack run's source and target classes are used.
    """
    att, base = read_summary(attack_dir), read_summary(baseline_dir)
    src, tgt = att["config"]["source-class"], att["config"]["target-class"]
    if src < 0 or tgt < 0:
        raise ValueError(f"{attack_dir} has no source-class / target-class to compare on")
    if base["confusion_matrix"] is None:
        raise ValueError(f"{baseline_dir} has no confusion matrix")
    cm = np.asarray(base["confusion_matrix"])
    deltas = recall_deltas(att["per_class_recall"], base["per_class_recall"], src, tgt)
    return {
        "source_class": src,
        "target_class": tgt,
        "baseline_m_cnt": int(misclassification_counts(cm)[src, tgt]),
        "baseline_top_confusions": [list(map(int, t)) for t in top_misclassifications(cm, 5)],
        **deltas,
        "accuracy_attack": att["accuracy"],
        "accuracy_baseline": base["accuracy"],
    }
