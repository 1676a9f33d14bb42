"""The ``fl-poison`` command: run | datasets | keys."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from fl_poison.config import ConfigError, Config, config_warnings, describe_keys, parse_assignment, resolve
from fl_poison.interrupts import StopOnSignals, exit_code

EXIT_BAD_CONFIG = 2
EXIT_RUN_FAILED = 1


def load_toml(path: str | Path) -> dict[str, Any]:
    """An experiment file's base ``[config]`` (its ``[sweep.*]`` grids are for sweeps)."""
    from fl_poison.experiment_file import load_experiment

    return load_experiment(path).config


def config_layers(config_file: str | None, sets: Sequence[str]) -> list[dict[str, Any]]:
    """The experiment file's [config], then the --set assignments (later wins)."""
    layers = [load_toml(config_file)] if config_file else []
    layers.append(dict(parse_assignment(s) for s in sets))
    return layers


def config_from_args(config_file: str | None, sets: Sequence[str]) -> Config:
    return resolve(*config_layers(config_file, sets))


class Progress:
    """One updating line on a terminal, a plain line per round otherwise."""

    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr  # today's stderr, not import time's
        self.tty = self.stream.isatty()

    def __call__(self, row: dict[str, Any], cfg: Config, elapsed: float) -> None:
        r, total = row["round"], cfg["num-rounds"]
        eta = elapsed / r * (total - r) if r else float("nan")
        parts = [f"round {r:>3}/{total}", f"acc {row['accuracy']:.4f}", f"loss {row['loss']:.4f}"]
        if row.get("source_accuracy") is not None:
            parts.append(f"src-acc {row['source_accuracy']:.3f}")
        if row.get("attack_success_rate") is not None:  # None when the target is not fixed (ADA)
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


def attack_warnings(cfg: Config) -> list[str]:
    """Settings under which the configured attack can never act (legal, but almost always a mistake)."""
    if not cfg.has_attack:
        return []
    from fl_poison.threat import num_malicious

    out = []
    if num_malicious(cfg["num-clients"], cfg["malicious-fraction"], cfg["num-malicious"]) == 0:
        out.append(f"attack={cfg['attack']} but no client is malicious (malicious-fraction="
                   f"{cfg['malicious-fraction']}, num-malicious={cfg['num-malicious']}): the attack never acts")
    if cfg["attack-start-round"] > cfg["num-rounds"]:
        out.append(f"attack-start-round={cfg['attack-start-round']} is after the last round "
                   f"(num-rounds={cfg['num-rounds']}): the attack never acts")
    return out


def cmd_run(args: argparse.Namespace) -> int:
    if args.out is not None and not args.out.strip():
        raise ConfigError("--out", args.out, "a folder path (got an empty string)")
    layers = config_layers(args.config, args.set)
    cfg = resolve(*layers)
    from fl_poison.tracking import check_installed

    check_installed(cfg)  # the tracker's package, before any data loads
    for warning in attack_warnings(cfg) + config_warnings(cfg, {k for layer in layers for k in layer}):
        print(f"fl-poison: warning: {warning}", file=sys.stderr)
    from fl_poison.app.experiment import run_experiment
    from fl_poison.engine.choose import grid_for
    from fl_poison.engine.parallel import close_grid
    from fl_poison.federation import federation_for
    from fl_poison.results import run_dir_for

    if args.config:
        from fl_poison.experiment_file import load_experiment

        sweeps = load_experiment(args.config).sweeps
        if sweeps:
            print(f"fl-poison: running the base [config] of {args.config}; its grids ({', '.join(sweeps)}) run with "
                  f"fl-poison sweep {args.config} --sweep NAME --out DIR", file=sys.stderr)
    from fl_poison.results import check_run_dir

    out = run_dir_for(cfg, args.out)
    check_run_dir(out, args.overwrite)  # before loading data: a clash or a bad --out fails in no time
    federation_for(cfg)  # load data and plan attackers first: bad data or plans fail before training
    grid = None
    try:
        grid, engine = grid_for(cfg)  # refuses an engine that cannot reproduce the ClientApp, before training
        print(f"fl-poison: {cfg['dataset']} · {cfg['num-clients']} clients · attack={cfg['attack']} · "
              f"defense={cfg['defense']} · {cfg['num-rounds']} rounds · {engine} -> {out}", file=sys.stderr)
        logging.getLogger("flwr").setLevel(logging.WARNING)
        summary = run_experiment(grid, cfg, out_dir=args.out, progress=Progress(), overwrite=args.overwrite)
    except KeyboardInterrupt as exc:
        from fl_poison.results import STATUS_NAME

        try:
            done = json.loads((out / STATUS_NAME).read_text())["round"]
        except (OSError, ValueError, KeyError):
            done = 0
        print(f"\nfl-poison: interrupted after round {done}; partial results in {out}", file=sys.stderr)
        return exit_code(exc)
    finally:
        if grid is not None:
            close_grid(grid)
    if summary.get("status") == "non_finite":
        print(f"fl-poison: error: the run stopped, not a result: {summary.get('reason')}; rounds so far in {out}",
              file=sys.stderr)
        return EXIT_RUN_FAILED
    if summary.get("status") != "complete":
        print(f"fl-poison: error: the run trained nothing: {summary.get('reason')}; results in {out} describe "
              f"the initial model", file=sys.stderr)
        return EXIT_RUN_FAILED
    line = f"accuracy {summary['accuracy']:.4f}  loss {summary['loss']:.4f}"
    if summary["source_accuracy"] is not None:
        line += f"  source-acc {summary['source_accuracy']:.4f}"
    if summary.get("attack_success_rate") is not None:  # None when the target is not fixed (ADA)
        line += f"  ASR {summary['attack_success_rate']:.4f}"
    if summary["detection"] and summary["detection"]["f1"] is not None:
        line += f"  detection F1 {summary['detection']['f1']:.3f}"
    print(f"{line}  ({summary['wall_seconds']:.1f}s)\nresults: {out}", file=sys.stderr)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from fl_poison.data.datasets import DATA_ENV, DATASETS, describe_files, resolve_data_dir

    cfg = config_from_args(args.config, args.set)
    env = os.environ.get(DATA_ENV)
    print(f"data-dir: {resolve_data_dir(cfg['data-dir'])}"
          + (f" (from ${DATA_ENV})" if env and cfg["data-dir"] == "data" else
             f" (set data-dir or ${DATA_ENV} to look elsewhere)"))
    for name, spec in DATASETS.items():
        info = describe_files(name, resolve_data_dir(cfg["data-dir"]))
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

    from fl_poison.results import read_summary

    for d in (args.attack_run, args.baseline_run):
        if not (Path(d) / "summary.json").is_file():
            what = "does not exist" if not Path(d).exists() else "is not a finished run directory (no summary.json)"
            print(f"fl-poison: error: {d} {what}", file=sys.stderr)
            return EXIT_BAD_CONFIG
    a, b = (read_summary(d)["config"]["dataset"] for d in (args.attack_run, args.baseline_run))
    if a != b:
        print(f"fl-poison: error: the runs are of different data sets ({a} vs {b}); compare an attack run "
              f"with its baseline on the same data", file=sys.stderr)
        return EXIT_BAD_CONFIG
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


def sweep_command(args: argparse.Namespace) -> str:
    """The sweep as a command line: what decides its runs (file, grids, --set, --out), not how they execute."""
    words = ["fl-poison", "sweep", args.config]
    for name in args.sweep:
        words += ["--sweep", name]
    for assignment in args.set:
        words += ["--set", assignment]
    return shlex.join(words + ["--out", args.out])


def cmd_sweep(args: argparse.Namespace) -> int:
    """Every point of the file's grids as a Ray task (or in-process with --local), resumable."""
    from fl_poison.sweep import (SweepProgress, check_executor, check_store, failure_lines, migrate_store,
                                 parse_resources, plan, run_sweep, survey, write_manifest)
    from fl_poison.experiment_file import load_experiment

    cpus, gpus = parse_resources(args.resources)
    check_executor(args.address, args.max_parallel, args.threads)
    exp = load_experiment(args.config)
    runs = plan(exp, args.sweep, dict(parse_assignment(s) for s in args.set))  # all bad points -> exit 2
    from fl_poison.paper_report import check_sweep  # [paper] cells against the plan: exit 2 before anything runs

    for warning in check_sweep(exp, runs):
        print(f"fl-poison: warning: {warning}", file=sys.stderr)
    runs_dir = Path(args.out) / "runs"
    check_store(args.out, runs)  # a bad --out / store -> exit 2, before anything in it moves
    from fl_poison.store_lock import locked_store

    with locked_store(args.out):  # a second sweep into this store -> exit 2, before anything in it moves
        if renamed := migrate_store(args.out):
            print(f"fl-poison: {len(renamed)} run folders renamed to the current run ids", file=sys.stderr)
        for note in survey(runs, args.out, args.retry_failed).notes(runs_dir):  # a bad --out / store -> exit 2
            print(f"fl-poison: {note}", file=sys.stderr)
        write_manifest(Path(args.out), exp.path, runs, sweep_command(args))
        print(f"fl-poison: {len(runs)} runs from [{', '.join(args.sweep) or 'all sweeps'}] of {args.config} -> "
              f"{args.out}", file=sys.stderr)
        prog = SweepProgress(len(runs))
        res = run_sweep(runs, args.out, engine="local" if args.local else "ray", address=args.address,
                        max_parallel=args.max_parallel, cpus=cpus, gpus=gpus, threads=args.threads,
                        retry_failed=args.retry_failed, progress=prog)
        prog.close()
    failed = res.all_failed
    print(f"fl-poison: {res.skipped} already done, {len(res.complete)} finished now, {len(failed)} failed"
          + (" — INTERRUPTED: run the same command again to resume" if res.interrupted else "")
          + (f" (errors in {runs_dir}/<id>/error.json; --retry-failed runs them again):" if failed else ""),
          file=sys.stderr)
    for line in failure_lines(runs, failed, runs_dir):
        print(line, file=sys.stderr)
    return 128 + res.signal if res.interrupted else (1 if failed else 0)


def cmd_report(args: argparse.Namespace) -> int:
    from fl_poison.report import make_report

    try:
        r = make_report(args.dir, args.by or None, args.metric or None, args.out, args.runs or None,
                        strict=args.strict)
    except (FileNotFoundError, ValueError) as exc:
        print(f"fl-poison: error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    for bad in r["skipped"]:
        print(f"fl-poison: warning: skipped run {bad.run_dir.name}: {bad.file}: {bad.why}", file=sys.stderr)
    print((Path(r["files"][1])).read_text())
    print(f"{r['runs']} runs; wrote " + ", ".join(str(f) for f in r["files"]), file=sys.stderr)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from fl_poison.config import render_flwr_config, write_pyproject

    if args.write_pyproject:
        changed = write_pyproject(args.write_pyproject)
        print(f"{args.write_pyproject}: {'updated' if changed else 'already up to date'}", file=sys.stderr)
        return 0
    if args.toml:
        print(render_flwr_config(), end="")
        return 0
    for line in describe_keys():
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fl-poison", description="Poisoning attacks and defenses for federated learning.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (("run", cmd_run, "run one experiment in-process"),
                            ("datasets", cmd_datasets, "list data sets, their files and partition statistics"),
                            ("keys", cmd_keys, "list every run key with its default, grouped by plug-in"),
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
            sp.add_argument("--overwrite", action="store_true",
                            help="replace an existing run directory (default: refuse to touch it)")
        if name == "compare":
            sp.add_argument("attack_run", help="run directory of the attack run")
            sp.add_argument("baseline_run", help="run directory of the same setup without attack")
        if name == "keys":
            sp.add_argument("--toml", action="store_true", help="print pyproject's [tool.flwr.app.config] table")
            sp.add_argument("--write-pyproject", metavar="PYPROJECT",
                            help="regenerate the [tool.flwr.app.config] table of this pyproject.toml in place")
        if name == "sweep":
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
        if name == "report":
            sp.add_argument("dir", help="sweep folder (or a folder of run directories)")
            sp.add_argument("--by", action="append", default=[], metavar="KEY", help="row keys (default: the varied keys)")
            sp.add_argument("--metric", action="append", default=[], metavar="M", help="metrics (default: all present)")
            sp.add_argument("--runs", action="append", default=[], metavar="RUN_ID", help="runs for the per-round figure")
            sp.add_argument("--out", "-o", help="output folder (default DIR/report)")
            sp.add_argument("--strict", action="store_true",
                            help="refuse (exit 2, nothing written) when a run's files are unreadable; "
                                 "default: skip that run and name it")
        if name == "datasets":
            sp.add_argument("--stats", action="store_true", help="print per-client partition statistics")
    from fl_poison.deploy import add_parser as add_deploy_parser

    add_deploy_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        with StopOnSignals():  # SIGTERM ends a command like Ctrl-C: one line, exit 143 (see fl_poison.interrupts)
            return args.fn(args)
    except KeyboardInterrupt as exc:  # before or after a run's own handling (loading data, planning a sweep)
        print("\nfl-poison: interrupted", file=sys.stderr)
        return exit_code(exc)
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
