"""The GAN blog's summary claims about its (G, T) matrix, as checks with a stated rule and a verdict.

The blog (seed 002) states its MNIST findings in words, not numbers; each check below turns one
sentence into a rule on our pair rows (:func:`clients.gan_report.pair_rows`: per pair, the attack
accuracy averaged over training and over seeds) and says whether it holds:

* "reaches average attack accuracies between 0.2 and 0.5": at least ``RANGE_SHARE`` of the pairs
  lie in [0.2, 0.5];
* "a single outlier ... of over 0.5": at most one pair per 90 (at least one) lies above 0.5;
* "not symmetric ... many combinations reach a significantly different attack accuracy from their
  mirrored counterpart": at least ``ASYMMETRIC_SHARE`` of the mirrored couples differ by more than
  two standard errors of their seeds (a symmetric matrix would give about 5 %);
* "no class that is significantly vulnerable or robust": Kruskal–Wallis over the generated class G
  and over the target class T, both p >= 0.05 (with few pairs per class the test has little power:
  the rows say how many pairs each class has);
* "constantly fluctuating attack accuracy ... not a steadily increasing" one: per run, the share of
  rounds after the attack started whose attack accuracy is below the round before; the claim holds
  when the median run has at least ``FLUCTUATION_SHARE`` of such rounds (a steady increase has none).

Thresholds are ours (the blog gives none) and are printed beside each verdict.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

RANGE = (0.2, 0.5)
RANGE_SHARE = 0.9
OUTLIER_ABOVE = 0.5
ASYMMETRIC_SHARE = 1 / 3
FLUCTUATION_SHARE = 0.3
ALPHA = 0.05


@dataclass(frozen=True)
class ClaimResult:
    claim: str  # the blog's words
    rule: str  # our rule
    measured: str  # our numbers
    holds: bool | None  # None: not enough runs to decide


def _acc(rows: Sequence[dict[str, Any]]) -> list[float]:
    return [r["attack_accuracy"] for r in rows if r["attack_accuracy"] is not None]


def in_range(rows: Sequence[dict[str, Any]], lo: float = RANGE[0], hi: float = RANGE[1],
             share: float = RANGE_SHARE) -> ClaimResult:
    acc = _acc(rows)
    inside = sum(lo <= a <= hi for a in acc)
    rule = f"at least {share:.0%} of the pairs in [{lo:g}, {hi:g}]"
    if not acc:
        return ClaimResult("average attack accuracies between 0.2 and 0.5", rule, "no pairs", None)
    got = f"{inside} of {len(acc)} pairs ({inside / len(acc):.0%}); range {min(acc):.3f}–{max(acc):.3f}, " \
          f"median {float(np.median(acc)):.3f}"
    return ClaimResult("average attack accuracies between 0.2 and 0.5", rule, got, inside >= share * len(acc))


def outliers(rows: Sequence[dict[str, Any]], above: float = OUTLIER_ABOVE) -> ClaimResult:
    acc = _acc(rows)
    allowed = max(1, math.ceil(len(acc) / 90))
    high = sorted(((r["attack_accuracy"], r["G"], r["T"]) for r in rows
                   if r["attack_accuracy"] is not None and r["attack_accuracy"] > above), reverse=True)
    rule = f"at most {allowed} pair(s) above {above:g} (one per 90 pairs)"
    got = f"{len(high)} above {above:g}" + (": " + ", ".join(f"{g}→{t} {a:.3f}" for a, g, t in high[:5])
                                          if high else "")
    return ClaimResult("a single outlier above 0.5", rule, got, len(high) <= allowed if acc else None)


def mirrored_couples(rows: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each (G, T) row with its (T, G) row, once per couple (G < T), where both were measured."""
    by = {(r["G"], r["T"]): r for r in rows if r["attack_accuracy"] is not None}
    return [(by[(g, t)], by[(t, g)]) for (g, t) in sorted(by) if g < t and (t, g) in by]


def asymmetry(rows: Sequence[dict[str, Any]], share: float = ASYMMETRIC_SHARE) -> ClaimResult:
    couples = mirrored_couples(rows)
    rule = f"at least {share:.0%} of the mirrored couples differ by more than 2 standard errors of their seeds"
    if not couples or any(a["n"] < 2 or b["n"] < 2 for a, b in couples):
        return ClaimResult("the matrix is not symmetric", rule, f"{len(couples)} couples (need ≥ 2 seeds each)", None)
    diffs = [(abs(a["attack_accuracy"] - b["attack_accuracy"]),
              math.sqrt(a["attack_accuracy_std"] ** 2 / a["n"] + b["attack_accuracy_std"] ** 2 / b["n"]))
             for a, b in couples]
    apart = sum(d > 2 * se for d, se in diffs)
    got = f"{apart} of {len(couples)} couples; mean |A(G,T) − A(T,G)| {float(np.mean([d for d, _ in diffs])):.3f}"
    return ClaimResult("the matrix is not symmetric", rule, got, apart >= share * len(couples))


def class_effect(rows: Sequence[dict[str, Any]], alpha: float = ALPHA) -> ClaimResult:
    from scipy.stats import kruskal

    rule = f"Kruskal–Wallis over G and over T: both p ≥ {alpha:g}"
    parts, ps = [], []
    for side in ("G", "T"):
        groups = {}
        for r in rows:
            if r["attack_accuracy"] is not None:
                groups.setdefault(r[side], []).append(r["attack_accuracy"])
        usable = [g for g in groups.values() if len(g) >= 1]
        if len(usable) < 2 or sum(len(g) for g in usable) <= len(usable):
            return ClaimResult("no class is significantly vulnerable or robust", rule,
                               f"too few pairs per {side} class", None)
        p = float(kruskal(*usable).pvalue)
        ps.append(p)
        sizes = sorted({len(g) for g in usable})
        parts.append(f"{side}: p = {p:.3f} ({len(usable)} classes, {sizes[0]}–{sizes[-1]} pairs each)")
    return ClaimResult("no class is significantly vulnerable or robust", rule, "; ".join(parts),
                       all(p >= alpha for p in ps))


def falling_share(asr: Sequence[float]) -> float | None:
    """Share of steps (round to round) where the attack accuracy falls; None for fewer than 2 rounds."""
    steps = np.diff(np.asarray(asr, dtype=float))
    return float(np.mean(steps < 0)) if steps.size else None


def attack_rounds(run_dir: str | Path) -> list[float]:
    """The attack accuracy of each round from the first the GAN ran in (``gan_recognised`` written; else all)."""
    path = Path(run_dir) / "rounds.csv"
    if not path.exists():
        return []
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("attack_success_rate") not in (None, "")]
    active = [i for i, r in enumerate(rows) if r.get("gan_recognised") not in (None, "")]
    start = active[0] if active else 0
    return [float(r["attack_success_rate"]) for r in rows[start:]]


def fluctuation(runs: Sequence[dict[str, Any]], share: float = FLUCTUATION_SHARE) -> ClaimResult:
    shares = [s for r in runs if r["config"].get("attack") == "gan"
              if (s := falling_share(attack_rounds(r["dir"]))) is not None]
    rule = f"the median run's attack accuracy falls from one round to the next in ≥ {share:.0%} of its rounds"
    if not shares:
        return ClaimResult("the attack accuracy fluctuates over training", rule, "no rounds", None)
    med = float(np.median(shares))
    got = f"median {med:.0%} of rounds falling ({len(shares)} runs; range {min(shares):.0%}–{max(shares):.0%})"
    return ClaimResult("the attack accuracy fluctuates over training", rule, got, med >= share)


def check_claims(rows: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]]) -> list[ClaimResult]:
    """Every claim, on one defense's pair rows and its runs."""
    return [in_range(rows), outliers(rows), asymmetry(rows), class_effect(rows), fluctuation(runs)]


def claims_markdown(defense: str, results: Sequence[ClaimResult]) -> list[str]:
    word = {True: "holds", False: "fails", None: "not decided"}
    lines = [f"### defense = {defense}", "", "| the blog says | our rule | ours | verdict |", "|---|---|---|---|"]
    lines += [f"| {c.claim} | {c.rule} | {c.measured} | {word[c.holds]} |" for c in results]
    held = sum(c.holds is True for c in results)
    return lines + ["", f"{held} of {len(results)} claims hold.", ""]
