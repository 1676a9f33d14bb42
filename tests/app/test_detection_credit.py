"""A defense is credited only with the clients it flagged; replies dropped as invalid are reported apart."""

from __future__ import annotations

import json

from fl_poison.cli import main
from fl_poison.results import read_rounds

FAST = ["--set", "num-clients=4", "--set", "clients-per-round=4", "--set", "num-rounds=2", "--set", "figures=false",
        "--set", "received-eval-samples=0"]


def test_fedavg_gets_no_detection_credit_for_attackers_whose_replies_were_invalid(tmp_path):
    # scale-factor 1e39 overflows float32: both attackers' replies are Inf and dropped before FedAvg sees them
    args = ["run", *FAST, "--set", "attack=scale", "--set", "scale-factor=1e39", "--set", "num-malicious=2",
            "--set", "run-name=r", "--out", str(tmp_path)]
    assert main(args) == 0
    d = tmp_path / "r"
    summary = json.loads((d / "summary.json").read_text())
    det = summary["detection"]
    assert (det["tp"], det["fp"], det["fn"], det["tn"]) == (0, 0, 0, 4)  # FedAvg flagged nobody
    assert det["f1"] is None and det["recall"] is None
    assert summary["invalid_replies"] == {"total": 4, "malicious": 4, "rounds": 2}
    rows = read_rounds(d)[1:]
    assert [(r["num_invalid"], r["invalid_malicious"], r["num_flagged"]) for r in rows] == [(2, 2, 0)] * 2
    for line in (d / "defense.jsonl").read_text().splitlines():
        entry = json.loads(line)
        assert entry["flagged"] == [] and len(entry["invalid"]) == 2
