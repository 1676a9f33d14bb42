"""Seconds per round of a secured loopback deployment, per ClientApp isolation mode, beside the in-process engine.

    python benchmarks/deploy_rounds.py                         # 3 nodes, 6 rounds, both modes + in-process
    python benchmarks/deploy_rounds.py --rounds 4 --modes process

Each mode gets a fresh federation (``fl-poison deploy up DIR -n 3 --malicious 2
--isolation MODE``), one ``flwr run`` of the same label-flip / LFighter digits
config, then ``deploy down``. The figures come from the run's own rounds.csv
(``elapsed``): round 1 alone (it pays the first imports and data load) and the
mean of rounds 2..N (the steady state a long run sees). The in-process figure is
``fl-poison run`` of the same config with one planned malicious client.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "fl_poison.cli"]
RUN = ("dataset='digits' num-clients=3 clients-per-round=3 attack='label-flip' source-class=3 target-class=8 "
       "defense='lfighter' figures=false run-name='run' round-timeout=300.0")


def _elapsed(rounds_csv: Path) -> list[float]:
    return [float(r["elapsed"]) for r in csv.DictReader(rounds_csv.open())]


def per_round(elapsed: list[float]) -> tuple[float, float]:
    """(round 1's seconds, mean seconds of rounds 2..N) from rounds.csv's cumulative ``elapsed``."""
    first = elapsed[1] - elapsed[0]
    rest = (elapsed[-1] - elapsed[1]) / (len(elapsed) - 2) if len(elapsed) > 2 else float("nan")
    return first, rest


def deployed(mode: str, rounds: int, port: int, work: Path) -> tuple[float, float]:
    d = work / mode
    up = subprocess.run([*CLI, "deploy", "up", str(d), "-n", "3", "--malicious", "2", "--port", str(port),
                         "--isolation", mode], cwd=ROOT, capture_output=True, text=True, timeout=300)
    try:
        if up.returncode != 0:
            raise SystemExit(f"deploy up ({mode}) failed: {up.stderr.strip()}")
        out = d / "results"
        run_config = f"{RUN} num-rounds={rounds} out-dir='{out}' red-team-file='{d / 'red-team.txt'}'"
        r = subprocess.run([str(Path(sys.executable).parent / "flwr"), "run", ".", "fl-poison-local", "--stream",
                            "--run-config", run_config], cwd=ROOT, capture_output=True, text=True, timeout=1800,
                           env={**os.environ, "FLWR_HOME": str(d / "flwr-home")})
        if r.returncode != 0 or not (out / "run" / "rounds.csv").exists():
            raise SystemExit(f"flwr run ({mode}) failed: {(r.stdout + r.stderr)[-1500:]}")
        return per_round(_elapsed(out / "run" / "rounds.csv"))
    finally:
        subprocess.run([*CLI, "deploy", "down", str(d)], cwd=ROOT, capture_output=True, text=True, timeout=120)


def in_process(rounds: int, work: Path) -> tuple[float, float]:
    sets = [f"{kv.split('=', 1)[0]}={kv.split('=', 1)[1].strip(chr(39))}" for kv in RUN.split()]
    args = [a for kv in [*sets, f"num-rounds={rounds}", "num-malicious=1"] for a in ("--set", kv)]
    r = subprocess.run([*CLI, "run", *args, "--out", str(work / "inproc")], cwd=ROOT, capture_output=True,
                       text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"fl-poison run failed: {r.stderr[-1500:]}")
    return per_round(_elapsed(work / "inproc" / "run" / "rounds.csv"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--modes", nargs="+", default=["subprocess", "process"], choices=["subprocess", "process"])
    p.add_argument("--port", type=int, default=19393)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="deploy-rounds-") as tmp:
        rows = [(f"deployment, --isolation {m}", *deployed(m, args.rounds, args.port, Path(tmp)))
                for m in args.modes]
        rows.append(("in-process (fl-poison run)", *in_process(args.rounds, Path(tmp))))
    print(f"| how (3 nodes, {args.rounds} rounds) | round 1 (s) | s/round, rounds 2..{args.rounds} |\n|---|---|---|")
    for name, first, rest in rows:
        print(f"| {name} | {first:.1f} | {rest:.1f} |")


if __name__ == "__main__":
    main()
