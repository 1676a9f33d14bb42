"""Per-run summary of a defense's weights for honest vs malicious clients, from ``defense.jsonl``.

Usage: ``python benchmarks/defense_weights.py RUN_DIR [RUN_DIR ...]``. Prints one markdown row
per run: mean raw FoolsGold ``wv`` (when the defense reports it) and mean aggregation share for
honest and malicious sampled clients over all rounds, and detection over all rounds / the last 10
(from ``summary.json``). Written to compare FoolsGold's history scopes under partial participation.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def summarise(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    bad = set(summary["malicious_clients"])
    wv = {True: [], False: []}
    share = {True: [], False: []}
    for line in (run / "defense.jsonl").read_text().splitlines():
        rec = json.loads(line)
        raw = rec.get("info", {}).get("wv")
        for i, c in enumerate(rec["clients"]):
            share[c in bad].append(rec["weights"][i])
            if raw is not None:
                wv[c in bad].append(raw[i])
    det = summary["detection"]
    mean = lambda xs: float(np.nanmean(xs)) if xs else float("nan")  # noqa: E731
    return {
        "wv_honest": mean(wv[False]), "wv_malicious": mean(wv[True]),
        "share_honest": mean(share[False]), "share_malicious": mean(share[True]),
        "f1": det["f1"], "precision": det["precision"], "recall": det["recall"],
        "f1_last10": det["last10"]["f1"], "source_acc": summary["last10"]["source_accuracy"],
        "asr": summary["last10"]["attack_success_rate"], "accuracy": summary["last10"]["accuracy"],
    }


def main(argv: list[str]) -> int:
    cols = ["wv_honest", "wv_malicious", "share_honest", "share_malicious", "precision", "recall", "f1",
            "f1_last10", "accuracy", "source_acc", "asr"]
    print("| run | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for d in argv:
        s = summarise(Path(d))
        print(f"| {Path(d).name} | " + " | ".join("–" if s[c] is None else f"{s[c]:.3f}" for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
