"""Run a grid of defenses x settings in-process and print the comparison table.

Resumable: a run whose summary.json exists is read, not re-run. Usage:

    python benchmarks/defense_table.py --out results/lf-table \
        --set dataset=mnist --set data-dir=../shared/data ... \
        --defenses fedavg,median,lfighter --vary partition=iid,dirichlet --baseline
    python benchmarks/defense_table.py --out results/lf --config experiments/lfighter_mnist.toml --sweep defenses

Prints one markdown row per run: accuracy, source accuracy, ASR (last-10 means,
the LFighter paper's convention) and detection precision / recall / F1.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from pathlib import Path

from fl_poison.cli import config_from_args
from fl_poison.engine.parallel import close_grid, make_grid
from fl_poison.federation import federation_for
from fl_poison.results import read_summary, run_dir_for


def run_one(cfg, out: Path) -> dict:
    from fl_poison.app.experiment import run_experiment

    d = run_dir_for(cfg, out)
    if (d / "summary.json").exists():
        return read_summary(d)
    # no summary = unfinished or never run: this sweep re-runs it from scratch
    federation_for(cfg)  # load data before the workers fork, so they share it
    grid = make_grid(cfg.to_dict(), cfg["num-clients"], cfg["engine-workers"], device=cfg["device"])
    try:
        return run_experiment(grid, cfg, out_dir=out, overwrite=True)
    finally:
        close_grid(grid)


def fmt(v, digits=3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--config")
    ap.add_argument("--sweep", help="a [sweep.NAME] grid of the --config experiment file")
    ap.add_argument("--defenses", default="")
    ap.add_argument("--vary", action="append", default=[], help="key=v1,v2 (repeatable)")
    ap.add_argument("--baseline", action="store_true", help="also run attack=none per setting")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("flwr").setLevel(logging.ERROR)
    out = Path(args.out)
    axes = [(kv.split("=", 1)[0], kv.split("=", 1)[1].split(",")) for kv in args.vary]
    combos = [[f"{k}={v}" for (k, _), v in zip(axes, combo)] for combo in itertools.product(*[v for _, v in axes])]
    if args.sweep:
        from fl_poison.grid import expand, load_experiment

        grid = load_experiment(args.config).sweeps.get(args.sweep)
        if grid is None:
            ap.error(f"{args.config} has no [sweep.{args.sweep}]")
        combos = [[f"{k}={v}" for k, v in point.items()] for point in expand(grid)]
    combos = combos or [[]]
    print("| setting | defense | accuracy | source acc | ASR | precision | recall | F1 | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for extra in combos:
        label = " ".join(e for e in extra if not e.startswith("defense=")) or "-"
        runs = [("no attack", extra + ["attack=none", "defense=fedavg", "malicious-fraction=0"])] if args.baseline else []
        if args.defenses:
            runs += [(d, extra + [f"defense={d}"]) for d in args.defenses.split(",")]
        else:
            runs.append((next((e.split("=", 1)[1] for e in extra if e.startswith("defense=")), "config"), extra))
        for name, sets in runs:
            cfg = config_from_args(args.config, args.set + sets)
            s = run_one(cfg, out)
            l10, det = s["last10"], s.get("detection") or {}
            print(f"| {label} | {name} | {fmt(l10['accuracy'])} | {fmt(l10['source_accuracy'])} | "
                  f"{fmt(l10['attack_success_rate'])} | {fmt(det.get('precision'))} | {fmt(det.get('recall'))} | "
                  f"{fmt(det.get('f1'))} | {s['wall_seconds']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
