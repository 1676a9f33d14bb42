"""A thin caller of ``fl-poison sweep`` + ``fl-poison report``: one grid, one after another, then its table.

Kept for old commands and for ``benchmarks/engines.py`` (``run_one``). Prefer:

    fl-poison sweep experiments/lfighter_mnist.toml --sweep defenses --out results/lf
    fl-poison report results/lf
"""

from __future__ import annotations

import sys
from pathlib import Path

from fl_poison.results import read_summary, run_dir_for


def run_one(cfg, out: Path) -> dict:
    """One run in this process into ``run_dir_for(cfg, out)``, read back when already finished."""
    from fl_poison.app.experiment import run_experiment
    from fl_poison.engine.choose import grid_for
    from fl_poison.engine.parallel import close_grid
    from fl_poison.federation import federation_for

    d = run_dir_for(cfg, out)
    if (d / "summary.json").exists():
        return read_summary(d)
    # no summary = unfinished or never run: this sweep re-runs it from scratch
    federation_for(cfg)  # load data before the workers fork, so they share it
    grid, _ = grid_for(cfg)
    try:
        return run_experiment(grid, cfg, out_dir=out, overwrite=True)
    finally:
        close_grid(grid)


def main(argv: list[str] | None = None) -> int:
    """``defense_table.py --config FILE --sweep NAME --out DIR`` = sweep --local, then report."""
    from fl_poison.cli import main as cli

    args = list(sys.argv[1:] if argv is None else argv)
    out = args[args.index("--out") + 1] if "--out" in args else "results/sweep"
    if "--config" in args:  # old spelling of the positional experiment file
        i = args.index("--config")
        args = [args[i + 1]] + args[:i] + args[i + 2:]
    rc = cli(["sweep", *args, "--local", "--threads", "0"])
    return rc if rc not in (0, 1) else cli(["report", out])


if __name__ == "__main__":
    sys.exit(main())
