"""Print key numbers of run directories: python benchmarks/poisoning_table.py DIR..."""
import json
import sys
from pathlib import Path

from fl_poison.results import read_rounds

for d in sys.argv[1:]:
    p = Path(d)
    if not (p / "summary.json").exists():
        print(f"{p.name}: (no summary)"); continue
    s = json.loads((p / "summary.json").read_text())
    rows = read_rounds(p)[1:]
    mx, mean = s.get("max_over_rounds", {}), s.get("mean_over_rounds", {})
    det = s.get("detection") or {}
    f = lambda v: "-" if v is None else f"{v:.3f}"
    hn = [r.get("honest_update_norm_mean") for r in rows]
    mn = [r.get("malicious_update_norm_max") for r in rows if r.get("malicious_update_norm_max") is not None]
    ada = [int(r["ada_target"]) for r in rows if r.get("ada_target") is not None]
    print(f"{p.name}: acc {f(s['accuracy'])} | ata_t {s.get('ata_target')} ata {f(s.get('ata'))} max-ata(max) {f(mx.get('max_ata'))} "
          f"ata(max) {f(mx.get('ata'))} mta(max) {f(mx.get('mta'))} | bd {f(s.get('backdoor_accuracy'))} | "
          f"norm honest mean {f(mean.get('honest_update_norm_mean'))} mal max {f(max(mn) if mn else None)} | "
          f"det tp {det.get('tp')} fp {det.get('fp')} fn {det.get('fn')} tn {det.get('tn')} | ada_targets {ada}")
