"""The ``fl-poison`` command: run | datasets | keys."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from fl_poison.config import ConfigError, Config, describe_keys, parse_assignment, resolve

EXIT_BAD_CONFIG = 2


def load_toml(path: str | Path) -> dict[str, Any]:
    """An experiment file's base ``[config]`` (its ``[sweep.*]`` grids are for sweeps)."""
    from fl_poison.grid import load_experiment

    return load_experiment(path).config


def config_from_args(config_file: str | None, sets: Sequence[str]) -> Config:
    layers = [load_toml(config_file)] if config_file else []
    layers.append(dict(parse_assignment(s) for s in sets))
    return resolve(*layers)


class Progress:
    """One updating line on a terminal, a plain line per round otherwise."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()

    def __call__(self, row: dict[str, Any], cfg: Config, elapsed: float) -> None:
        r, total = row["round"], cfg["num-rounds"]
        eta = elapsed / r * (total - r) if r else float("nan")
        parts = [f"round {r:>3}/{total}", f"acc {row['accuracy']:.4f}", f"loss {row['loss']:.4f}"]
        if row.get("source_accuracy") is not None:
            parts.append(f"src-acc {row['source_accuracy']:.3f}")
            parts.append(f"asr {row['attack_success_rate']:.3f}")
        if row.get("f1") is not None:
            parts.append(f"det-f1 {row['f1']:.2f}")
        parts += [f"elapsed {elapsed:6.1f}s", f"eta {eta:6.1f}s" if r else "eta    -"]
        line = "  ".join(parts)
        if self.tty:
            self.stream.write("\r" + line + "\033[K" + ("\n" if r == total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def cmd_run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args.config, args.set)
    from fl_poison.app.experiment import run_experiment
    from fl_poison.engine.inprocess import inprocess_grid
    from fl_poison.federation import federation_for
    from fl_poison.results import run_dir_for

    if args.config:
        from fl_poison.grid import load_experiment

        sweeps = load_experiment(args.config).sweeps
        if sweeps:
            print(f"fl-poison: running the base [config] of {args.config}; its grids ({', '.join(sweeps)}) run with "
                  f"fl-poison sweep {args.config} --sweep NAME --out DIR", file=sys.stderr)
    federation_for(cfg)  # load data and plan attackers first: bad data or plans fail before training
    out = run_dir_for(cfg, args.out)
    print(f"fl-poison: {cfg['dataset']} · {cfg['num-clients']} clients · attack={cfg['attack']} · "
          f"defense={cfg['defense']} · {cfg['num-rounds']} rounds -> {out}", file=sys.stderr)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    grid = inprocess_grid(cfg.to_dict(), cfg["num-clients"])
    summary = run_experiment(grid, cfg, out_dir=args.out, progress=Progress())
    line = f"accuracy {summary['accuracy']:.4f}  loss {summary['loss']:.4f}"
    if summary["source_accuracy"] is not None:
        line += f"  source-acc {summary['source_accuracy']:.4f}  ASR {summary['attack_success_rate']:.4f}"
    if summary["detection"] and summary["detection"]["f1"] is not None:
        line += f"  detection F1 {summary['detection']['f1']:.3f}"
    print(f"{line}  ({summary['wall_seconds']:.1f}s)\nresults: {out}", file=sys.stderr)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from fl_poison.data.datasets import DATASETS, describe_files

    cfg = config_from_args(args.config, args.set)
    for name, spec in DATASETS.items():
        info = describe_files(name, Path(cfg["data-dir"]).expanduser())
        found = [p for p in info["files"].values() if p]
        if info["complete"] and not info["files"]:
            where = info.get("source", "bundled")
        elif info["complete"]:
            where = f"found in {Path(found[0]).parent}"
        else:
            missing = [f for f, p in info["files"].items() if not p]
            where = f"missing {', '.join(missing)} (searched {', '.join(map(str, info['searched']))})"
        print(f"{name:14s} {spec.num_classes} classes, input {spec.input_shape}, model {spec.default_model}: {where}")
    if args.stats:
        import numpy as np

        from fl_poison.data.partition import partition_stats
        from fl_poison.federation import federation_for

        fed = federation_for(cfg)
        labels = fed.dataset.y_train.numpy()
        stats = partition_stats(labels, list(fed.parts), fed.num_classes)
        print(f"\npartition={cfg['partition']} of {cfg['dataset']} over {cfg['num-clients']} clients "
              f"(seed {cfg['seed']}):")
        sizes = np.asarray(stats["sizes"])
        print(f"    samples per client: min {sizes.min()}, median {int(np.median(sizes))}, max {sizes.max()}")
        for cid, counts in enumerate(stats["class_counts"]):
            mark = " (malicious)" if cid in fed.malicious else ""
            print(f"    client {cid:3d}: {int(sizes[cid]):6d} samples, classes {list(counts)}{mark}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from fl_poison.compare import compare_runs

    try:
        r = compare_runs(args.attack_run, args.baseline_run)
    except (OSError, ValueError, KeyError) as exc:
        print(f"fl-poison: error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    s, t = r["source_class"], r["target_class"]
    print(f"baseline m_cnt({s}->{t}) = {r['baseline_m_cnt']}   (most confused pairs: "
          + ", ".join(f"{i}->{j}:{c}" for i, j, c in r["baseline_top_confusions"]) + ")")
    print(f"delta source recall  {r['delta_source_recall']:+.4f}")
    print(f"delta target recall  {r['delta_target_recall']:+.4f}")
    print(f"sum delta other recall {r['delta_other_recall']:+.4f}")
    print(f"accuracy {r['accuracy_baseline']:.4f} -> {r['accuracy_attack']:.4f}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Issue 10: every point of the file's grids as a Ray task (or in-process with --local), resumable."""
    from fl_poison.sweep import SweepProgress, parse_resources, plan, run_sweep, write_manifest
    from fl_poison.grid import load_experiment

    cpus, gpus = parse_resources(args.resources)
    exp = load_experiment(args.config)
    runs = plan(exp, args.sweep, dict(parse_assignment(s) for s in args.set))  # all bad points -> exit 2
    write_manifest(Path(args.out), exp.path, runs)
    print(f"fl-poison: {len(runs)} runs from [{', '.join(args.sweep) or 'all sweeps'}] of {args.config} -> "
          f"{args.out}", file=sys.stderr)
    prog = SweepProgress(len(runs))
    res = run_sweep(runs, args.out, engine="local" if args.local else "ray", address=args.address,
                    max_parallel=args.max_parallel, cpus=cpus, gpus=gpus, threads=args.threads,
                    retry_failed=args.retry_failed, progress=prog)
    prog.close()
    print(f"fl-poison: {res.skipped} already done, {len(res.complete)} finished now, {len(res.failed)} failed"
          + (" — INTERRUPTED: run the same command again to resume" if res.interrupted else ""), file=sys.stderr)
    return 130 if res.interrupted else (1 if res.failed else 0)


def cmd_report(args: argparse.Namespace) -> int:
    from fl_poison.report import make_report

    try:
        r = make_report(args.dir, args.by or None, args.metric or None, args.out, args.runs or None)
    except (FileNotFoundError, ValueError) as exc:
        print(f"fl-poison: error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    print((Path(r["files"][1])).read_text())
    print(f"{r['runs']} runs; wrote " + ", ".join(str(f) for f in r["files"]), file=sys.stderr)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    for line in describe_keys():
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fl-poison", description="Poisoning attacks and defenses for federated learning.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (("run", cmd_run, "run one experiment in-process"),
                            ("datasets", cmd_datasets, "list data sets, their files and partition statistics"),
                            ("keys", cmd_keys, "list every run key with its default"),
                            ("compare", cmd_compare, "Tolpegin's m_cnt and recall deltas: attack run vs baseline"),
                            ("sweep", cmd_sweep, "run an experiment file's [sweep.*] grids on Ray, resumably"),
                            ("report", cmd_report, "tables and figures of a sweep folder")):
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(fn=fn)
        if name in ("run", "datasets"):
            sp.add_argument("--config", "-c", help="experiment TOML file")
            sp.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE",
                            help="override a run key (repeatable)")
        if name == "run":
            sp.add_argument("--out", "-o", help="folder for the run directory (default: out-dir key)")
        if name == "compare":
            sp.add_argument("attack_run", help="run directory of the attack run")
            sp.add_argument("baseline_run", help="run directory of the same setup without attack")
        if name == "sweep":  # issue 10
            sp.add_argument("config", help="experiment TOML file with [sweep.NAME] grids")
            sp.add_argument("--sweep", action="append", default=[], metavar="NAME", help="grid to run (repeatable; default all)")
            sp.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE", help="override a base key")
            sp.add_argument("--out", "-o", default="results/sweep", help="sweep folder (runs/, manifest.json)")
            sp.add_argument("--address", help="existing Ray cluster: auto or ray://HOST:PORT (default: a local Ray)")
            sp.add_argument("--max-parallel", type=int, help="runs at once (default: as many as the CPUs allow)")
            sp.add_argument("--resources", default="cpus=1,gpus=0", help="per run, e.g. cpus=1,gpus=0.25")
            sp.add_argument("--threads", type=int, default=1, help="torch threads per run (0 = torch default)")
            sp.add_argument("--retry-failed", action="store_true", help="run again the runs that raised")
            sp.add_argument("--local", action="store_true", help="no Ray: one run after another in this process")
        if name == "report":  # issue 10
            sp.add_argument("dir", help="sweep folder (or a folder of run directories)")
            sp.add_argument("--by", action="append", default=[], metavar="KEY", help="row keys (default: the varied keys)")
            sp.add_argument("--metric", action="append", default=[], metavar="M", help="metrics (default: all present)")
            sp.add_argument("--runs", action="append", default=[], metavar="RUN_ID", help="runs for the per-round figure")
            sp.add_argument("--out", "-o", help="output folder (default DIR/report)")
        if name == "datasets":
            sp.add_argument("--stats", action="store_true", help="print per-client partition statistics")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as exc:
        print(f"fl-poison: error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except Exception as exc:  # data errors etc.: one clear line, no traceback
        from fl_poison.data.formats import DataError

        if isinstance(exc, DataError):
            print(f"fl-poison: error: {exc}", file=sys.stderr)
            return EXIT_BAD_CONFIG
        raise


if __name__ == "__main__":
    sys.exit(main())
