"""Sweeps: every point of an experiment file's ``[sweep.*]`` grids as one run, on Ray or in this process.

Why a run store and not a job queue: a run directory ``<out>/runs/<run id>`` named by a
stable hash of the resolved config *is* the state. A run is finished iff its
``summary.json`` and ``rounds.csv`` are a readable result (:mod:`fl_poison.run_files`;
summary.json is written last and atomically by the recorder), so a restart after Ctrl-C,
SIGTERM or a killed Ray worker re-plans the grid, skips what is finished, deletes what is
half-written or corrupt and runs the rest: nothing lost, nothing twice. A run that raised
keeps ``error.json`` (error + traceback), stays failed (listed, exit 1) on every re-run and
is retried only with ``retry_failed``. ``<out>/manifest.json`` maps each grid point (sweep
name + coordinates) to its run id. Everything the store holds is checked before anything is
written: a ``--out`` or ``runs`` that is a file, a manifest that is not ours, and a run
directory that is a symlink are refused (ConfigError).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from fl_poison.config import Config, ConfigError, resolve
from fl_poison.experiment_file import REPLICATE_AXES, ExperimentFile, expand, load_experiment
from fl_poison.run_files import BadRunFiles, load_finished
from fl_poison.interrupts import StopOnSignals
from fl_poison.process_tree import descendants, end
from fl_poison.process_tree import names as process_names
from fl_poison.ray_node import NodeGuard, node_processes, session_dir
from fl_poison.tracking import check_installed

#: Keys that name where or how a run is written, not what it computes, and the engine keys (a sweep task runs the
#: serial in-process engine, or the batched one where ``engine`` picks it, whose replies equal the serial ones to
#: float rounding): left out of the run id.
NOT_IN_RUN_ID = ("run-name", "out-dir", "tracking", "engine", "engine-memory-mb")


class GridErrors(ConfigError):
    """Every invalid grid point at once (the CLI prints them all and exits 2)."""

    def __init__(self, errors: list[tuple[str, dict[str, Any], str]]) -> None:
        self.errors = errors
        lines = [f"[sweep.{name}] {json.dumps(coords)}: {msg}" for name, coords, msg in errors]
        ValueError.__init__(self, f"{len(errors)} invalid grid point(s):\n  " + "\n  ".join(lines))
        self.key, self.value, self.allowed = "sweep", len(errors), "valid grid points"

    def __str__(self) -> str:
        return self.args[0]


@dataclass
class Run:
    """One distinct configuration of a sweep and every grid point that asked for it."""

    run_id: str
    cfg: Config
    points: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _canonical(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def id_of_values(values: dict[str, Any]) -> str:
    """The run id of a resolved config's values (a ``config.json`` read back, or ``Config.to_dict()``).

    Hashes the keys whose value differs from the key's default (and keys the schema does not
    know), without the output location: a key added later with a default leaves every stored
    run's id, and so every finished run of a store, as it was.
    """
    from fl_poison.config import schema

    defaults = schema().defaults
    kept = {k: v for k, v in values.items() if k not in NOT_IN_RUN_ID
            and (k not in defaults or _canonical(v) != _canonical(defaults[k]))}
    return hashlib.sha256(_canonical(kept).encode()).hexdigest()[:16]


def run_id(cfg: Config) -> str:
    """A stable hash of the resolved config's non-default values, without its output location (16 hex digits)."""
    return id_of_values(cfg.to_dict())


def migrate_store(out: str | Path) -> dict[str, str]:
    """Rename run folders whose name is not the id of their ``config.json`` (ids of an older rule); fix the manifest.

    Returns ``{old: new}``. A folder whose id is taken by another, or whose config cannot be
    read, is left alone (the sweep then plans it afresh, as before).
    """
    out = Path(out)
    runs_dir = out / "runs"
    if not runs_dir.is_dir():
        return {}
    renamed: dict[str, str] = {}
    for d in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        try:
            values = json.loads((d / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(values, dict):
            continue
        new = id_of_values(values)
        if new == d.name or (runs_dir / new).exists():
            continue
        os.replace(d, runs_dir / new)
        if values.get("run-name") == d.name:
            values["run-name"] = new
            write_json_atomic(runs_dir / new / "config.json", values)
        renamed[d.name] = new
    if renamed and (out / MANIFEST).is_file():
        manifest = json.loads((out / MANIFEST).read_text())
        for point in manifest.get("points", []):
            point["run"] = renamed.get(point.get("run"), point.get("run"))
        write_json_atomic(out / MANIFEST, manifest)
    return renamed


def varied_by(grid: dict[str, Any]) -> list[str]:
    """The run keys a grid sets at each point (``seeds`` sets ``seed``; ``repeats`` only offsets it)."""
    keys: list[str] = []
    for axis in grid:
        if axis == "seeds":
            keys.append("seed")
        elif axis not in REPLICATE_AXES:
            keys += [k.strip() for k in axis.split(",")]
    return keys


def check_overrides(exp: ExperimentFile, names: Sequence[str], overrides: dict[str, Any] | None) -> None:
    """Refuse a ``--set`` of a key a chosen grid varies: the grid would override it at every point, silently."""
    for key, value in (overrides or {}).items():
        for name in names:
            if key in varied_by(exp.sweeps[name]):
                raise ConfigError(f"--set {key}", value, f"a key that [sweep.{name}] does not vary: that sweep sets "
                                  f"{key} at every point, so --set would be ignored; drop --set {key} or edit the grid")


def plan(exp: ExperimentFile, names: Sequence[str] = (), overrides: dict[str, Any] | None = None) -> list[Run]:
    """Resolve every grid point of the chosen sweeps (all when none named); raise GridErrors listing every bad one.

    Refused first (ConfigError): a file without grids, an unknown ``--sweep``, a grid that
    varies nothing (``repeats = 1`` runs the base config once, on purpose) and ``--set`` of a
    varied key.
    """
    if not exp.sweeps:
        raise ConfigError("[sweep.NAME]", str(exp.path), f"at least one grid in the file: it has none "
                          f"(fl-poison run -c {exp.path} runs its base [config])")
    names = list(names) or list(exp.sweeps)
    errors: list[tuple[str, dict[str, Any], str]] = []
    missing = [n for n in names if n not in exp.sweeps]
    if missing:
        raise ConfigError("--sweep", ", ".join(missing), f"a grid of {exp.path}: {', '.join(exp.sweeps) or 'none'}")
    for name in names:
        if not exp.sweeps[name]:
            raise ConfigError(f"[sweep.{name}]", {}, f"a grid with at least one key: sweep '{name}' varies nothing "
                              f"(to run the base config alone, write repeats = 1)")
    check_overrides(exp, names, overrides)
    runs: dict[str, Run] = {}
    try:
        base_seed = int(resolve(exp.config, overrides)["seed"])
    except ConfigError:
        base_seed = 0
    for name in names:
        try:
            points = expand(exp.sweeps[name], base_seed)
        except ConfigError as exc:
            errors.append((name, {}, str(exc)))
            continue
        for coords in points:
            try:
                cfg = resolve(exp.config, overrides, coords)
                check_installed(cfg)
            except ConfigError as exc:
                errors.append((name, coords, str(exc)))
                continue
            rid = run_id(cfg)
            cfg = cfg.replace(run_name=rid)
            runs.setdefault(rid, Run(rid, cfg)).points.append((name, coords))
    if errors:
        raise GridErrors(errors)
    return list(runs.values())


# ------------------------------------------------------------------------------------------ run store


MANIFEST = "manifest.json"


def inspect_run(run_dir: Path) -> tuple[str, str]:
    """(state, why): complete | corrupt (finished-looking, files unreadable) | failed | partial | new."""
    if (run_dir / "summary.json").exists():
        try:
            load_finished(run_dir)
            return "complete", ""
        except BadRunFiles as exc:
            return "corrupt", f"{exc.file}: {exc.why}"
    if (run_dir / "error.json").exists():
        return "failed", ""
    if run_dir.is_dir() and any(run_dir.iterdir()):
        return "partial", ""
    return "new", ""


def run_state(run_dir: Path) -> str:
    return inspect_run(run_dir)[0]


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def check_store(out: str | Path, runs: Iterable[Run] = ()) -> None:
    """Refuse (ConfigError naming the path) a store the sweep cannot use; reads only, writes nothing.

    ``out`` and ``out/runs`` must be folders (or not exist yet), a ``manifest.json`` must be
    one this module wrote, and each planned run directory must be a real folder, never a
    symlink: a half-written run is deleted and a new one written in its place.
    """
    out = Path(out)
    for parent in (out, *out.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ConfigError("--out", str(parent), "a folder for the sweep (this path is a file)")
            break
    runs_dir = out / "runs"
    if (runs_dir.exists() or runs_dir.is_symlink()) and not runs_dir.is_dir():
        raise ConfigError("--out", str(runs_dir), "a folder of run directories (this path is a file or a broken "
                          "link); move it away or choose another --out")
    read_manifest(out)
    for r in runs:
        p = runs_dir / r.run_id
        if p.is_symlink():
            raise ConfigError("--out", str(p), f"a run directory, not a symlink (it links to {p.resolve()}): like "
                              f"fl-poison run, the sweep never writes or deletes through a link; remove the link "
                              f"or choose another --out")
        elif p.exists() and not p.is_dir():
            raise ConfigError("--out", str(p), "a run directory (this path is a file); move it away")


def read_manifest(out: Path) -> dict[str, Any]:
    """``<out>/manifest.json`` (empty when absent); ConfigError naming the file when it is not a sweep manifest."""
    path = Path(out) / MANIFEST
    if not path.exists() and not path.is_symlink():
        return {"points": []}
    fix = "move it away or choose another --out"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError("--out", str(path), f"a manifest written by fl-poison sweep: it cannot be read "
                          f"({exc}); {fix}") from None
    points = data.get("points") if isinstance(data, dict) else None
    if not isinstance(points, list) or not all(
            isinstance(p, dict) and isinstance(p.get("sweep"), str) and isinstance(p.get("coords"), dict)
            and isinstance(p.get("run"), str) for p in points):
        raise ConfigError("--out", str(path), f"a manifest written by fl-poison sweep: a JSON object whose "
                          f"'points' list holds {{sweep, coords, run}} objects; {fix}")
    return data


def write_manifest(out: Path, exp_path: Path, runs: Iterable[Run], command: str | None = None) -> Path:
    """Merge this sweep's points into ``<out>/manifest.json`` (earlier sweeps into the same folder stay);
    ``command`` joins the list of sweep commands that filled the folder (the report page shows them)."""
    path = out / MANIFEST
    old = read_manifest(out)
    commands = [c for c in old.get("commands", []) if isinstance(c, str)]
    if command and command not in commands:
        commands.append(command)
    points = {(p["sweep"], json.dumps(p["coords"], sort_keys=True)): p for p in old["points"]}
    for r in runs:
        for name, coords in r.points:
            points[(name, json.dumps(coords, sort_keys=True))] = {"sweep": name, "coords": coords, "run": r.run_id}
    out.mkdir(parents=True, exist_ok=True)
    exp = Path(exp_path).resolve()
    # the relative path lets a store committed with its repository find the file from any clone
    relative = os.path.relpath(exp, out.resolve())
    write_json_atomic(path, {"experiment": str(exp), "experiment_from_store": relative, "commands": commands,
                             "points": list(points.values())})
    return path


@dataclass
class Store:
    """Where each planned run stands before a sweep starts."""

    pending: list[Run] = field(default_factory=list)
    done: list[Run] = field(default_factory=list)
    failed: list[Run] = field(default_factory=list)  # raised before, kept failed (no retry_failed)
    corrupt: list[tuple[Run, str]] = field(default_factory=list)  # counted as pending: redone

    def notes(self, runs_dir: Path) -> list[str]:
        return [f"run {r.run_id} is run again: its files are corrupt ({runs_dir / r.run_id}/{why})"
                for r, why in self.corrupt]


def survey(runs: Sequence[Run], out: str | Path, retry_failed: bool = False) -> Store:
    """Check the store (:func:`check_store`), then sort the runs into pending, done and kept-failed."""
    check_store(out, runs)
    runs_dir = Path(out) / "runs"
    store = Store()
    for r in runs:
        state, why = inspect_run(runs_dir / r.run_id)
        if state == "complete":
            store.done.append(r)
        elif state == "failed" and not retry_failed:
            store.failed.append(r)
        else:
            store.pending.append(r)
            if state == "corrupt":
                store.corrupt.append((r, why))
    return store


def error_line(run_dir: Path, limit: int = 200) -> str:
    """The first line of a failed run's error, from its error.json."""
    try:
        err = json.loads((run_dir / "error.json").read_text(encoding="utf-8")).get("error", "")
        line = str(err).strip().splitlines()[0] if str(err).strip() else "(no error message)"
    except FileNotFoundError:
        return "no error.json: the worker died mid-run; run the command again"
    except (OSError, ValueError, AttributeError) as exc:
        return f"error.json unreadable ({type(exc).__name__})"
    return line if len(line) <= limit else line[:limit - 1] + "…"


def failure_lines(runs: Sequence[Run], failed_ids: Iterable[str], runs_dir: Path) -> list[str]:
    """One line per failed run: id, its first grid point, its error's first line."""
    by_id = {r.run_id: r for r in runs}
    lines = []
    for rid in dict.fromkeys(failed_ids):
        r = by_id.get(rid)
        where = ""
        if r is not None and r.points:
            name, coords = r.points[0]
            more = f" (+{len(r.points) - 1} more)" if len(r.points) > 1 else ""
            where = f" [sweep.{name}] {json.dumps(coords)}{more}"
        lines.append(f"  {rid}{where}: {error_line(runs_dir / rid)}")
    return lines


def clear_run_dir(run_dir: Path) -> None:
    """Delete a half-written run (``check_store`` has refused symlinked run directories)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    l10 = summary.get("last10") or {}
    det = summary.get("detection") or {}
    return {"accuracy": l10.get("accuracy"), "source_accuracy": l10.get("source_accuracy"),
            "asr": l10.get("attack_success_rate"), "f1": det.get("f1"), "wall": summary.get("wall_seconds")}


def execute(cfg_dict: dict[str, Any], runs_dir: str, threads: int | None = 1, cwd: str | None = None) -> dict[str, Any]:
    """One run, start to end, in whatever process calls it (a Ray task body; never starts Ray).

    Deletes a half-written directory first (a run refuses a non-empty one), writes
    ``error.json`` when the run raises, and drops this run's federation from the process
    cache afterwards so a long-lived worker's memory stays bounded.
    """
    import logging

    import torch

    from fl_poison import federation
    from fl_poison.app.experiment import run_experiment
    from fl_poison.engine.choose import task_grid
    from fl_poison.engine.parallel import close_grid

    logging.getLogger("flwr").setLevel(logging.ERROR)
    if cwd and os.path.isdir(cwd):  # relative data-dir keys mean the driver's folder, wherever the worker started
        os.chdir(cwd)
    if threads:
        torch.set_num_threads(threads)
    cfg = resolve(cfg_dict)
    run_dir = Path(runs_dir) / cfg["run-name"]
    clear_run_dir(run_dir)
    grid = None
    try:
        grid, _ = task_grid(cfg)  # a refused engine=batched is this run's ConfigError, kept in error.json
        summary = run_experiment(grid, cfg, out_dir=runs_dir)
        return {"run": cfg["run-name"], "status": "complete", **headline(summary)}
    except Exception as exc:  # the run's own failure: keep it, do not crash the sweep
        run_dir.mkdir(parents=True, exist_ok=True)
        err = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        write_json_atomic(run_dir / "error.json", err)
        return {"run": cfg["run-name"], "status": "failed", "error": err["error"]}
    finally:
        if grid is not None:
            close_grid(grid)
        with federation._lock:
            federation._cache.pop(cfg.digest(), None)


# ------------------------------------------------------------------------------------------ progress


class SweepProgress:
    """done / running / failed / queued, ETA and the last finished run's numbers; one updating line on a TTY."""

    def __init__(self, total: int, stream=sys.stderr) -> None:
        self.total, self.stream, self.tty = total, stream, stream.isatty()
        self.t0 = time.perf_counter()
        self.last = ""
        self._printed = ""

    def __call__(self, done: int, running: int, failed: int, queued: int, finished: dict | None = None) -> None:
        if finished is not None:
            if finished["status"] == "complete":
                f = lambda k: "-" if finished.get(k) is None else f"{finished[k]:.3f}"  # noqa: E731
                self.last = (f"last {finished['run'][:8]}: acc {f('accuracy')} src {f('source_accuracy')} "
                             f"asr {f('asr')} f1 {f('f1')} ({finished['wall']:.0f}s)")
            else:
                self.last = f"last {finished['run'][:8]}: {finished['status'].upper()} {finished.get('error', '')}"
        elapsed = time.perf_counter() - self.t0
        rate = done / elapsed if done else 0.0
        left = running + queued
        eta = f"{left / rate:.0f}s" if rate else "-"
        line = (f"done {done}/{self.total}  running {running}  failed {failed}  queued {queued}  "
                f"elapsed {elapsed:.0f}s  eta {eta}  {self.last}")
        if self.tty:
            self.stream.write("\r" + line[:200] + "\033[K")
        elif line != self._printed and finished is not None:
            self.stream.write(line + "\n")
        self._printed = line
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ------------------------------------------------------------------------------------------ driver


def parse_resources(text: str) -> tuple[float, float]:
    """``cpus=1,gpus=0.5`` -> (1.0, 0.5)."""
    out = {"cpus": 1.0, "gpus": 0.0}
    for part in filter(None, (t.strip() for t in text.split(","))):
        k, _, v = part.partition("=")
        if k not in out:
            raise ConfigError("--resources", part, "cpus=N and/or gpus=N (fractions allowed)")
        try:
            out[k] = float(v)
        except ValueError:
            raise ConfigError("--resources", part, "a number, e.g. gpus=0.25") from None
        if not math.isfinite(out[k]) or out[k] < 0 or (k == "cpus" and out[k] == 0):
            raise ConfigError("--resources", part, "finite numbers: cpus > 0, gpus >= 0")
    return out["cpus"], out["gpus"]


#: seconds to wait for a TCP answer from an ``--address``; Ray itself retries for minutes
CONNECT_TIMEOUT_S = 3.0


def check_executor(address: str | None, max_parallel: int | None, threads: int | None) -> None:
    """Refuse bad ``--address`` / ``--max-parallel`` / ``--threads`` in seconds, before anything is planned or run."""
    if max_parallel is not None and max_parallel < 1:
        raise ConfigError("--max-parallel", max_parallel, "a positive integer, or leave it out for as many "
                                                          "runs as the CPUs allow")
    if threads is not None and threads < 0:
        raise ConfigError("--threads", threads, "an integer >= 1, or 0 for torch's default")
    if address is None or address == "auto":  # auto: ray.init finds the cluster or says at once that there is none
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("--address", address, "auto, HOST:PORT (a Ray head's GCS) or ray://HOST:PORT (Ray client)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError("--address", address, f"a running Ray cluster; nothing answers at {host}:{port} "
                                                f"({exc.strerror or type(exc).__name__})") from None


@dataclass
class SweepResult:
    planned: int
    skipped: int  # finished before this sweep started
    complete: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # failed in this sweep
    interrupted: bool = False
    failed_before: list[str] = field(default_factory=list)  # failed earlier, not retried (no retry_failed)
    #: the signal that interrupted the sweep (exit code 128 + it), None if none did
    signal: int | None = None

    @property
    def all_failed(self) -> list[str]:
        return self.failed_before + self.failed


def run_sweep(runs: list[Run], out: str | Path, *, engine: str = "ray", address: str | None = None,
              max_parallel: int | None = None, cpus: float = 1.0, gpus: float = 0.0, threads: int | None = 1,
              retry_failed: bool = False, progress: Callable[..., None] | None = None) -> SweepResult:
    """Run what is not finished; engine ``ray`` (tasks) or ``local`` (this process, one after another).

    SIGINT / SIGTERM stop it cleanly (see :mod:`fl_poison.interrupts`): runs in flight are
    told to stop (their ``status.json`` says "interrupted"), nothing is left running, and the
    result says ``interrupted`` and by which ``signal``.
    """
    store = survey(runs, out, retry_failed)
    runs_dir = (Path(out) / "runs").resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    pending = store.pending
    res = SweepResult(len(runs), len(store.done), failed_before=[r.run_id for r in store.failed])
    progress = progress or (lambda *a, **k: None)
    with StopOnSignals() as stop:
        try:
            if engine == "local":
                _run_local(pending, runs_dir, threads, res, progress)
            else:
                _run_ray(pending, runs_dir, address, max_parallel, cpus, gpus, threads, res, progress, stop)
        except KeyboardInterrupt:
            res.interrupted = True
            res.signal = stop.fired or signal.SIGINT
    return res


def _run_local(pending, runs_dir, threads, res, progress) -> None:
    for i, r in enumerate(pending):
        progress(len(res.complete), 1, len(res.failed), len(pending) - i - 1)
        out = execute(r.cfg.to_dict(), str(runs_dir), threads)
        (res.complete if out["status"] == "complete" else res.failed).append(r.run_id)
        progress(len(res.complete), 0, len(res.failed), len(pending) - i - 1, out)


#: seconds runs in flight get to record "interrupted" before their Ray workers are killed
CANCEL_GRACE_S = 3.0


def _ray_init(address: str | None, max_parallel: int | None, cpus: float, stop: StopOnSignals | None) -> bool:
    """Connect to ``address`` or start a local Ray; True if started here. No cluster -> ConfigError.

    ``ray.init`` replaces the driver's SIGTERM handler (``sys.exit``, then a C++ stack dump):
    ``stop`` takes it back. A local Ray's processes are started with SIGTERM blocked (Ray
    itself blocks SIGINT in them): a terminal or ``kill -TERM -PGID`` signals the whole
    process group, and the driver, not the signal, must end the runs and then Ray. They
    still end with the driver (Ray's fate sharing) and at ``ray.shutdown()``.
    """
    import ray

    if ray.is_initialized():
        return False
    env = {"env_vars": {"FLWR_TELEMETRY_ENABLED": "0", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        if address:
            ray.init(address=address, log_to_driver=False, runtime_env=env)
        else:
            ray.init(num_cpus=max(1, int(max_parallel or os.cpu_count() or 1) * int(max(cpus, 1))),
                     log_to_driver=False, include_dashboard=False, runtime_env=env)
    except ConnectionError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError("--address", address, f"no Ray cluster at {address} ({reason}); start one with "
                                                "`ray start --head` or leave --address out for a local Ray") from None
    finally:
        if stop is not None:
            stop.install()  # before unblocking: a SIGTERM that came during ray.init is ours to handle
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return True


def _cancel(refs: list, kill_left: bool, grace_s: float = CANCEL_GRACE_S) -> None:
    """Interrupt each task (a KeyboardInterrupt inside the run) and give them ``grace_s`` to record it.

    Then, only where ``kill_left`` (a cluster that is not ours), force-cancel the tasks still running.
    On a node of its own the sweep does not force-cancel: the node's shutdown ends those workers,
    and a force-cancel racing a task that has just finished aborts the driver inside Ray's C++
    (``task_manager.cc``: "Tried to complete task that was not pending", exit code 1), before the
    driver could end the node's processes.
    """
    import ray

    for ref in refs:
        try:
            ray.cancel(ref, force=False)
        except Exception:  # already finished, or its worker is gone (SIGTERM to the process group)
            pass
    left = refs
    if refs:
        try:
            _, left = ray.wait(refs, num_returns=len(refs), timeout=grace_s)
        except Exception:
            pass
    for ref in left if kill_left else []:
        try:
            ray.cancel(ref, force=True)
        except Exception:
            pass


def _run_ray(pending, runs_dir, address, max_parallel, cpus, gpus, threads, res, progress,
             stop: StopOnSignals | None = None) -> None:
    import ray

    started_here = _ray_init(address, max_parallel, cpus, stop)
    # A node of its own (its raylet is our child; ray.init can also join a running local cluster, whose
    # processes are not ours to end). Asked now: a signal to the group may end the raylet before the finally.
    session = session_dir() if started_here and "raylet" in process_names(descendants()) else None
    guard = NodeGuard(session) if session else None  # ends the node should this process die without doing it
    try:
        # max_retries: a worker killed mid-run (kill -9, OOM) reruns the task; execute() clears its leftovers.
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=2)(execute)
        limit = max_parallel or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
        queue = list(pending)
        inflight: dict[Any, Run] = {}
        try:
            progress(0, 0, 0, len(queue))
            while queue or inflight:
                while queue and len(inflight) < limit:
                    r = queue.pop(0)
                    inflight[task.remote(r.cfg.to_dict(), str(runs_dir), threads, os.getcwd())] = r
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
                finished = None
                for ref in ready:
                    r = inflight.pop(ref)
                    try:
                        finished = ray.get(ref)
                    except Exception as exc:  # the worker died more often than max_retries: leave it for a restart
                        finished = {"run": r.run_id, "status": "crashed", "error": type(exc).__name__}
                    (res.complete if finished["status"] == "complete" else res.failed).append(r.run_id)
                progress(len(res.complete), len(inflight), len(res.failed), len(queue), finished)
        finally:
            _cancel(list(inflight), kill_left=not started_here)
    finally:
        if started_here:
            # every process of the node, re-parented agents included
            tree = (set(descendants()) - {guard.pid if guard else -1}) | node_processes(session)
            ray.shutdown()
            end(sorted(tree | node_processes(session)))
            if guard:
                guard.release()


def sweep_file(path: str | Path, names: Sequence[str] = (), out: str | Path = "results/sweep",
               overrides: dict[str, Any] | None = None, **kwargs: Any) -> tuple[list[Run], SweepResult]:
    """Plan (validating every point and the store first), write the manifest, then run."""
    exp = load_experiment(path)
    runs = plan(exp, names, overrides)
    check_store(out, runs)
    from fl_poison.store_lock import locked_store

    with locked_store(out):
        migrate_store(out)
        write_manifest(Path(out), exp.path, runs)
        return runs, run_sweep(runs, out, **kwargs)
