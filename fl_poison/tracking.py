"""Experiment tracking: a run's config and per-round metrics in TensorBoard or MLflow, local stores only.

``tracking = none | tensorboard | mlflow`` (run key, default ``none``). The run recorder
(:class:`fl_poison.results.RunRecorder`) opens a tracker with the run directory, logs the resolved config
once, every row it writes to ``rounds.csv`` (each numeric column a scalar, step = the round) and closes it
with the run's status. Nothing leaves the machine:

* ``tensorboard`` — event files under ``<run>/tensorboard/`` (``torch.utils.tensorboard.SummaryWriter``;
  the config as a text summary ``config``). ``tensorboard --logdir results/`` shows every run.
* ``mlflow`` — a file store under ``<run>/mlruns/`` (a ``file:`` URI; an ``MlflowClient`` bound to it, and
  ``MLFLOW_TRACKING_URI`` set to it only while the run is open): experiment ``fl-poison``, one MLflow run
  named after the run directory, the config as params, the rounds as metrics. MLflow 3 keeps its file
  store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true``, which is also set only
  while the run is open (a store inside the run directory needs no database or server).
  ``MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri <run>/mlruns`` shows it.

The packages are optional extras (``pip install 'fl-poison[tensorboard]'`` / ``'fl-poison[mlflow]'``);
:func:`check_installed` refuses a run whose tracker is missing with one line naming the key and the extra,
before any data loads. It is called where a run starts (the CLI, sweep planning, the ServerApp), not in
``resolve``: a deployment's ClientApps resolve the same config and need no tracker.
"""

from __future__ import annotations

import importlib
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from fl_poison.config import TRACKING_CHOICES as TRACKERS, ConfigError  # noqa: F401 (re-exported)

#: tracker -> (the module that must import, the pip extra that installs it)
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
#: environment variables the MLflow tracker sets while a run is open (and restores after)
_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE")
#: MLflow's limits per log_batch call
_MLFLOW_PARAMS_PER_BATCH, _MLFLOW_METRICS_PER_BATCH = 100, 1000


def _import(module: str) -> Any:
    return importlib.import_module(module)


def check_installed(cfg: Mapping[str, Any]) -> None:
    """ConfigError (one line: the key, the missing package, the extra to install) unless the tracker imports."""
    name = cfg["tracking"]
    if name not in PACKAGES:
        return
    module, extra = PACKAGES[name]
    try:
        _import(module)
    except ImportError:
        raise ConfigError("tracking", name, f"none, or install the {module} package: "
                          f"pip install 'fl-poison[{extra}]'") from None


def scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """The numeric, finite columns of a rounds.csv row (``round`` is the step, not a metric)."""
    out = {}
    for k, v in row.items():
        if k == "round" or isinstance(v, (bool, str, list, dict, tuple)) or v is None:
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[k] = f
    return out


class Tracker:
    """No tracking (``tracking=none``); the interface the others implement."""

    def log_config(self, config: Mapping[str, Any]) -> None:
        pass

    def log_round(self, step: int, values: Mapping[str, float]) -> None:
        pass

    def close(self, status: str) -> None:
        pass


class TensorBoardTracker(Tracker):
    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.dir))

    def log_config(self, config: Mapping[str, Any]) -> None:
        text = "| key | value |\n|---|---|\n" + "\n".join(f"| {k} | `{json.dumps(v)}` |" for k, v in config.items())
        self.writer.add_text("config", text, global_step=0)
        self.writer.flush()

    def log_round(self, step: int, values: Mapping[str, float]) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            self.writer.add_scalar(k, v, global_step=step)
        self.writer.flush()  # a run cut short keeps every finished round

    def close(self, status: str) -> None:
        if self.writer is not None:
            self.writer.add_text("status", status)
            self.writer.close()
            self.writer = None


class MLflowTracker(Tracker):
    def __init__(self, run_dir: Path) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = (run_dir / "mlruns").resolve().as_uri()  # file:///...: a local file store, never a server
        # while the run is open only: the store, and MLflow 3's opt-in to its file store (it refuses one otherwise)
        self._saved = {k: os.environ.get(k) for k in _MLFLOW_ENV}
        os.environ.update({"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_ALLOW_FILE_STORE": "true"})
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name("fl-poison")
        experiment = found.experiment_id if found is not None else self.client.create_experiment("fl-poison")
        self.run_id = self.client.create_run(experiment, run_name=run_dir.name).info.run_id

    def log_config(self, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in config.items()]
        for i in range(0, len(params), _MLFLOW_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + _MLFLOW_PARAMS_PER_BATCH])

    def log_round(self, step: int, values: Mapping[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        for i in range(0, len(metrics), _MLFLOW_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + _MLFLOW_METRICS_PER_BATCH])

    def close(self, status: str) -> None:
        try:
            mlflow_status = {"complete": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
            self.client.set_terminated(self.run_id, status=mlflow_status)
        finally:
            for k, v in self._saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def open_tracker(cfg: Mapping[str, Any], run_dir: Path) -> Tracker:
    """The configured tracker for ``run_dir`` (the config logged once)."""
    name = cfg["tracking"]
    tracker = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker}.get(name)
    out = tracker(Path(run_dir)) if tracker is not None else Tracker()
    out.log_config(dict(cfg))
    return out
