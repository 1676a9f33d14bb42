"""One result format: a run directory that report code can read without anything else.

Layout of a run directory::

    config.json     the resolved configuration
    rounds.csv      one row per round (round 0 = the initial model), one column per metric
    summary.json    final and last-10-round metrics, detection, attackers, wall time
    defense.jsonl   per round: the clients, who the defense kept, their weights, its diagnostics
    model.npz       the final global model (state_dict names -> arrays)
    *.png           figures (when figures = true)
    status.json     {"status": running|complete|interrupted|failed, "round": N, "error": ...}, kept current
    .lock           held (fcntl.flock) by the one process writing the run

A run owns its directory: :func:`check_run_dir` refuses a non-empty one
unless ``overwrite`` (which wipes it first), and the lock refuses a second
writer. ``summary.json`` is written last, so a run is finished iff its
``summary.json`` exists.
"""

from __future__ import annotations

import csv
import fcntl
import json
import math
import shutil
import time
from datetime import datetime, timezone
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from fl_poison import plugins
from fl_poison.config import Config, ConfigError
from fl_poison.measurement import final_columns, series_columns
from fl_poison.metrics.classification import coefficient_of_variation, last_k_mean
from fl_poison.metrics.detection import Detection
from fl_poison.metrics.model_poisoning import ata
from fl_poison.tracking import open_tracker, scalars

#: The core's columns summarised over rounds in summary.json (``last10``, means, max, min).
CORE_SERIES = ("accuracy", "loss", "source_accuracy", "attack_success_rate",
               "honest_train_accuracy", "malicious_train_accuracy",
               "honest_received_model_accuracy", "malicious_received_model_accuracy",
               # the model-poisoning family's metrics (absent columns summarise to null)
               "ata", "max_ata", "mta", "honest_update_norm_mean", "honest_update_norm_max",
               "malicious_update_norm_mean", "malicious_update_norm_max")


def last10_keys() -> tuple[str, ...]:
    """Columns summarised over rounds: the core's, then every registered plug-in's (null where absent).

    Every run lists every plug-in's columns, so summaries of different attacks share one shape.
    """
    return CORE_SERIES + tuple(c for c in series_columns() if c not in CORE_SERIES)


def run_dir_for(cfg: Config, out: str | Path | None = None) -> Path:
    """``<out-dir>/<run-name>``; an empty run-name becomes ``<dataset>-<attack>-<defense>-s<seed>-<hash>``."""
    base = Path(out if out is not None else cfg["out-dir"]).expanduser()
    name = cfg["run-name"] or (
        f"{cfg['dataset']}-{cfg['attack']}-{cfg['defense']}-s{cfg['seed']}-{cfg.digest()[:8]}")
    return base / name


LOCK_NAME = ".lock"
STATUS_NAME = "status.json"


def check_run_dir(run_dir: Path, overwrite: bool = False) -> None:
    """Raise ConfigError unless ``run_dir`` can become this run's directory (no side effects).

    Refused: a run directory that is a symbolic link (wherever it points:
    ``--overwrite`` would delete the link target's files and the run would
    land outside out-dir; out-dir itself may be a link), a path that is a
    file, a parent that cannot be created or written, and -- unless
    ``overwrite`` -- a directory that already holds files (an earlier run,
    finished or not: its results must not mix with ours).
    """
    run_dir = Path(run_dir)
    for link in (run_dir, run_dir / LOCK_NAME):
        if link.is_symlink():
            raise ConfigError("run-name", run_dir.name,
                              f"a real folder: {link} is a symbolic link (to {os.readlink(link)}); fl-poison never "
                              f"writes or deletes through a link: remove it or choose another run-name / --out")
    for parent in (run_dir, *run_dir.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError("--out", str(parent), "a folder (this path is a file)")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError("--out", str(parent), "a folder you can write to (permission denied)")
            try:  # os.access says yes to root everywhere (read-only mounts, /proc): try it, leave nothing behind
                os.rmdir(tempfile.mkdtemp(prefix=".fl-poison-probe-", dir=parent))
            except OSError as exc:
                raise ConfigError("--out", str(run_dir), f"a folder that can be created ({exc.strerror} in {parent})")
            break
    if run_dir.is_dir() and not overwrite and any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        finished = "a finished" if (run_dir / "summary.json").exists() else "an unfinished"
        raise ConfigError("run-name", run_dir.name,
                          f"a new run directory: {run_dir} already holds {finished} run; choose another "
                          f"run-name / --out, or pass --overwrite to replace it")


def claim_run_dir(run_dir: Path, overwrite: bool = False):
    """Create ``run_dir``, take its lock (exclusive, non-blocking), wipe it when ``overwrite``.

    Returns the open lock file; closing it releases the lock.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        check_run_dir(run_dir, overwrite)  # a file in the way, an unwritable parent
    run_dir.mkdir(parents=True, exist_ok=True)
    try:  # O_NOFOLLOW: a planted .lock link must not make us create or hold a file elsewhere
        fh = os.fdopen(os.open(run_dir / LOCK_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644), "a")
    except OSError as exc:
        raise ConfigError("run-name", run_dir.name, f"a real folder: {run_dir / LOCK_NAME} cannot be opened "
                          f"without following a link ({exc.strerror})") from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise ConfigError("run-name", run_dir.name, f"a directory no other run is writing to: another "
                          f"process holds {run_dir / LOCK_NAME}") from None
    try:
        check_run_dir(run_dir, overwrite)
    except ConfigError:
        fh.close()
        raise
    for p in run_dir.iterdir():
        if p.name != LOCK_NAME:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return fh


def _clean(v: Any) -> Any:
    """JSON has no NaN: write null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating,)):
        return _clean(float(v))
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, allow_nan=False))
    tmp.replace(path)


class RunRecorder:
    """Collects per-round rows and writes the run directory as the run goes."""

    def __init__(self, cfg: Config, run_dir: Path, malicious: Iterable[int] = (), overwrite: bool = False) -> None:
        self.cfg = cfg
        self.dir = Path(run_dir)
        self._lock = claim_run_dir(self.dir, overwrite)
        self.rows: list[dict[str, Any]] = []
        self.malicious = sorted(malicious)
        self.detection = Detection()
        self.weight_sums = {"honest": [0.0, 0], "malicious": [0.0, 0]}
        #: replies dropped as invalid before the defense saw them (errors, NaN / Inf, wrong shapes), over the run
        self.invalid_replies: dict[str, Any] = {"total": 0, "malicious": 0, "rounds": 0}
        self.t0 = time.perf_counter()
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_json(self.dir / "config.json", cfg.to_dict())
        try:
            self.tracker = open_tracker(cfg, self.dir)  # tracking=none: does nothing
        except BaseException:
            self._lock.close()
            raise
        self.set_status("running")

    @property
    def last_round(self) -> int:
        return int(self.rows[-1]["round"]) if self.rows else 0

    def set_status(self, status: str, error: str | None = None) -> None:
        """status.json: what a sweep runner reads to tell running / complete / interrupted / failed runs."""
        data: dict[str, Any] = {"status": status, "round": self.last_round}
        if error:
            data["error"] = error
        write_json(self.dir / STATUS_NAME, data)

    def close(self, status: str | None = None, error: str | None = None) -> None:
        """End the run: final status, no stray temporary files, lock released (idempotent)."""
        if self._lock is None:
            return
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        if status is not None:
            self.set_status(status, error)
        try:
            self.tracker.close(status or "closed")
        finally:
            self._lock.close()
        self._lock = None

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def count_invalid(self, n: int, malicious: int | None) -> None:
        """One round's invalid replies (``malicious`` None: who is malicious is not known to the server)."""
        inv = self.invalid_replies
        inv["total"] += n
        inv["rounds"] += int(n > 0)
        inv["malicious"] = None if malicious is None or inv["malicious"] is None else inv["malicious"] + malicious

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._write_csv()
        self.tracker.log_round(int(row["round"]), scalars(row))

    def log_defense(self, entry: dict[str, Any]) -> None:
        """Append one round's defense decision (JSON Lines: a crash keeps every finished round)."""
        with (self.dir / "defense.jsonl").open("a") as fh:
            fh.write(json.dumps(_clean(entry), allow_nan=False) + "\n")

    def _write_csv(self) -> None:
        columns: list[str] = []
        for r in self.rows:
            columns += [k for k in r if k not in columns and not isinstance(r[k], (list, dict))]
        tmp = self.dir / "rounds.csv.tmp"
        with tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            for r in self.rows:
                w.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                            for k, v in r.items() if k in columns})
        tmp.replace(self.dir / "rounds.csv")

    def summary(self, confusion: np.ndarray | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        trained = [r for r in self.rows if r["round"] >= 1]
        final = self.rows[-1] if self.rows else {}
        ata_target = plugins.get("attack", self.cfg["attack"]).ata_target(self.cfg, trained)
        for r in self.rows:
            if r.get("source_row") is not None and ata_target >= 0:
                r["ata"] = ata(r["source_row"], ata_target)
        if self.rows and ata_target >= 0:
            self._write_csv()  # rounds.csv gains the ata column once the target is known
            for r in self.rows:  # and so does the tracker
                self.tracker.log_round(int(r["round"]), scalars({"ata": r.get("ata")}))
        series = {k: [r.get(k) for r in trained] for k in last10_keys()}
        src = series["source_accuracy"]
        det = self.detection.as_dict() if self.cfg.has_attack else None
        if det is not None:
            tail = Detection()
            for r in trained[-10:]:
                if r.get("tp") is not None:
                    tail = tail + Detection(r["tp"], r["fp"], r["fn"], r["tn"])
            det["last10"] = tail.as_dict()
            det["mean_weight_honest"] = _mean(self.weight_sums["honest"])
            det["mean_weight_malicious"] = _mean(self.weight_sums["malicious"])
        out = {
            "config": self.cfg.to_dict(),
            "rounds": len(trained),
            "accuracy": final.get("accuracy"),
            "loss": final.get("loss"),
            "per_class_recall": final.get("per_class_recall"),
            "source_accuracy": final.get("source_accuracy"),
            "attack_success_rate": final.get("attack_success_rate"),
            "ata": final.get("ata"),
            "ata_target": ata_target,
            "max_ata": final.get("max_ata"),
            "mta": final.get("mta"),
            **{k: final.get(k) for k in final_columns()},  # plug-ins' top-level columns
            "last10": {k: last_k_mean(v, 10) for k, v in series.items()},
            "mean_over_rounds": {k: _agg(v, np.mean) for k, v in series.items()},
            "max_over_rounds": {k: _agg(v, np.max) for k, v in series.items()},
            "min_over_rounds": {k: _agg(v, np.min) for k, v in series.items()},
            "source_accuracy_cv": coefficient_of_variation(src) if self.cfg.source is not None else None,
            "confusion_matrix": confusion.tolist() if confusion is not None else None,
            "malicious_clients": self.malicious,
            "detection": det,
            "invalid_replies": dict(self.invalid_replies),
            "started": self.started,
            "wall_seconds": self.elapsed,
        }
        out.update(extra or {})
        return out

    def finish(self, state: dict[str, np.ndarray] | None, confusion: np.ndarray | None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Model and figures, then summary.json last (its presence means "finished"), then status."""
        summary = self.summary(confusion, extra)
        if state is not None:
            np.savez(self.dir / "model.npz", **state)
        if self.cfg["figures"] and self.rows:
            from fl_poison.figures import run_figures
            run_figures(self.dir, self.rows, self.cfg)
        write_json(self.dir / "summary.json", summary)
        ok = summary.get("status", "complete") == "complete"
        self.close("complete" if ok else "failed", None if ok else summary.get("reason"))
        return summary


def _agg(values: list, fn) -> float | None:
    ok = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(fn(ok)) if ok else None


def _mean(pair: list) -> float | None:
    return pair[0] / pair[1] if pair[1] else None


def read_rounds(run_dir: str | Path) -> list[dict[str, Any]]:
    """rounds.csv back as dicts of floats (empty cells -> None)."""
    with (Path(run_dir) / "rounds.csv").open() as fh:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
                for row in csv.DictReader(fh)]


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "summary.json").read_text())
