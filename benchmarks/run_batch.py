"""Run many small experiments in ONE process (no per-run start-up): BASE=k=v,k=v python benchmarks/run_batch.py OUT NAME:k=v,k=v ..."""
import os
import sys
import time

from fl_poison.app.client_app import app
from fl_poison.app.experiment import run_experiment
from fl_poison.config import resolve
from fl_poison.engine.inprocess import inprocess_grid

out = sys.argv[1]
base = dict(kv.split("=", 1) for kv in os.environ.get("BASE", "").split(",") if kv)
for spec in sys.argv[2:]:
    name, _, rest = spec.partition(":")
    over = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    if os.path.exists(f"{out}/{name}/summary.json"):
        continue
    cfg = resolve({**base, **over, "run-name": name})
    t = time.time()
    s = run_experiment(inprocess_grid(cfg.to_dict(), cfg["num-clients"], app), cfg, out_dir=out)
    print(f"{name}: {time.time() - t:.0f}s acc {s['accuracy']:.3f} load {os.getloadavg()[0]:.1f}", flush=True)
