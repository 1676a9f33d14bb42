"""Seconds per round of one config on three engines: in-process Grid, Flower simulation, plain loop.

    python benchmarks/engines.py                      # 20 MNIST clients, 5 rounds, 1 epoch
    python benchmarks/engines.py --set num-rounds=3   # any run key

All three train the same clients on the same data with the same local
settings and evaluate centrally each round. The Flower simulation runs
``flwr run .`` (local SuperLink, Ray backend, 1 CPU per client) offline, so it
also pays Flower's start-up; its per-round figure comes from the run's own
rounds.csv, like the in-process one. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.plain_loop import plain_fedavg  # noqa: E402
from fl_poison.cli import config_from_args  # noqa: E402
from fl_poison.results import read_rounds  # noqa: E402

DEFAULT = ["dataset=mnist", f"data-dir={ROOT.parent / 'shared' / 'data'}", "num-clients=20",
           "clients-per-round=20", "num-rounds=5", "local-epochs=1", "batch-size=64", "lr=0.01",
           "figures=false"]


def per_round(run_dir: Path) -> list[float]:
    el = [r["elapsed"] for r in read_rounds(run_dir)]
    return list(np.diff(el))


def inprocess(cfg, out: Path) -> tuple[list[float], float]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from defense_table import run_one

    t0 = time.perf_counter()
    cfg = cfg.replace(run_name="inprocess")
    run_one(cfg, out)
    return per_round(out / "inprocess"), time.perf_counter() - t0


def flower_simulation(cfg, out: Path) -> tuple[list[float], float]:
    def lit(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(v) if isinstance(v, (int, float)) else f'"{v}"'

    values = {**cfg.to_dict(), "out-dir": str(out), "run-name": "simulation"}
    run_config = " ".join(f"{k}={lit(v)}" for k, v in values.items())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "FLWR_HOME": tempfile.mkdtemp(prefix="flwr-home-"),
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "FLWR_TELEMETRY_ENABLED": "0"}
    flwr = shutil.which("flwr") or str(Path(sys.executable).parent / "flwr")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [flwr, "run", str(ROOT), "--run-config", run_config, "--federation-config",
         f"num-supernodes={cfg['num-clients']} client-resources-num-cpus=1", "--stream"],
        env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    subprocess.run(["pkill", "-f", "flower-superlink"], check=False)
    if proc.returncode != 0 or not (out / "simulation" / "rounds.csv").exists():
        raise RuntimeError(f"flwr run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return per_round(out / "simulation"), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--skip-simulation", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("flwr").setLevel(logging.ERROR)
    cfg = config_from_args(None, DEFAULT + args.set)
    out = Path(tempfile.mkdtemp(prefix="fl-poison-bench-"))
    results = {}
    t0 = time.perf_counter()
    times, _ = plain_fedavg(cfg)
    results["plain PyTorch loop"] = (times, time.perf_counter() - t0)
    results["fl-poison in-process"] = inprocess(cfg, out)
    if not args.skip_simulation:
        results["Flower simulation (flwr run)"] = flower_simulation(cfg, out)
    base = float(np.median(results["plain PyTorch loop"][0]))
    print(f"{cfg['dataset']}, {cfg['num-clients']} clients x {cfg['clients-per-round']} per round, "
          f"{cfg['num-rounds']} rounds, {cfg['local-epochs']} epoch(s), batch {cfg['batch-size']}")
    print(f"{'engine':32s} {'median s/round':>15s} {'vs plain':>9s} {'total wall s':>13s}")
    for name, (t, wall) in results.items():
        med = float(np.median(t))
        print(f"{name:32s} {med:15.2f} {med / base:9.2f} {wall:13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
