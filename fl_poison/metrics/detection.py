"""How well a defense's flags match the truly malicious clients."""

from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Iterable


@dataclass
class Detection:
    """Confusion counts of "flagged" against "malicious"; positives are attackers."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: "Detection") -> "Detection":
        return Detection(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def precision(self) -> float | None:
        """None when nothing was flagged (precision is undefined, not 0)."""
        return self.tp / (self.tp + self.fp) if (self.tp + self.fp) else None

    @property
    def recall(self) -> float | None:
        """None when no attacker was present."""
        return self.tp / (self.tp + self.fn) if (self.tp + self.fn) else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if (p + r) else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1}


def detect(flagged: Iterable[int], malicious: Iterable[int], participants: Iterable[int]) -> Detection:
    """Count TP/FP/FN/TN over the round's participants."""
    flagged, malicious = set(flagged), set(malicious)
    d = Detection()
    for c in participants:
        if c in malicious:
            if c in flagged:
                d.tp += 1
            else:
                d.fn += 1
        elif c in flagged:
            d.fp += 1
        else:
            d.tn += 1
    return d
