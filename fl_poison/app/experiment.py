"""What the ServerApp does in an experiment: the defense's rounds plus the bookkeeping.

The Strategy (the defense) runs exactly as in a deployment. Around it, the
experiment side knows the run plan (who is malicious) and uses it only to
measure: central test metrics each round, client-side training signals split
honest / malicious, and detection counts of the defense's flags.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid

from fl_poison import plugins
from fl_poison.app.node import server_malicious
from fl_poison.adversary import seat_for
from fl_poison.app.replies import CountingGrid, innermost
from fl_poison.config import Config, ConfigError
from fl_poison.devices import resolve_device
from fl_poison.federation import Federation, federation_for, initial_state, new_model, server_trainer
from fl_poison.measurement import class_metrics, measurements_for
from fl_poison.metrics.classification import (
    accuracy, attack_success_rate, per_class_recall, source_accuracy,
)
from fl_poison.metrics.detection import detect
from fl_poison.metrics.model_poisoning import attack_round_metrics, most_common_target, norm_columns
from fl_poison.results import RunRecorder, run_dir_for
from fl_poison.tracking import check_installed
from fl_poison.sampling import sample_clients, sample_with_availability
from fl_poison.training import evaluate, set_state
from strategies.registry import build_strategy

log = logging.getLogger("fl_poison.experiment")


Progress = Callable[[dict[str, Any], Config, float], None]


class NonFiniteModel(Exception):
    """The global model's weights or test loss stopped being finite: no later round can mean anything."""


def _changed(before: list[np.ndarray] | None, after: list[np.ndarray]) -> bool:
    """Whether a round moved the global model: any array not bit-for-bit the previous one."""
    return before is None or any(not np.array_equal(a, b) for a, b in zip(before, after))


def _finite(arrays: list[np.ndarray]) -> bool:
    return all(np.isfinite(a).all() for a in arrays if np.issubdtype(a.dtype, np.inexact))


def _partitions(grid: Grid, nodes: list[int]) -> set[int]:
    """The num-partitions the given nodes report (-1 for deployment SuperNodes without one)."""
    msgs = [Message(RecordDict({"config": ConfigRecord({})}), node, f"{MessageType.QUERY}.identify")
            for node in nodes]
    return {int(r.content["identity"]["num-partitions"]) for r in grid.send_and_receive(msgs, timeout=60)
            if not r.has_error()}


def wait_for_nodes(grid: Grid, n: int, timeout: float = 600.0, settle: float = 3.0) -> list[int]:
    """Block until ``n`` nodes are connected (deployments register gradually).

    A simulation's nodes all say how big the federation is (``num-partitions``):
    if it is not ``n``, waiting cannot help, so this fails within seconds.
    A deployment logs every 30 s how many are still missing, and gives up
    after ``timeout`` seconds (run key ``wait-for-nodes``).
    """
    start = last_log = time.time()
    seen: list[int] = []
    checked = False
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= n:
            return nodes
        now = time.time()
        if nodes != seen:
            seen, changed, checked = nodes, now, False
        if nodes and not checked and now - changed >= settle:
            checked = True
            sizes = _partitions(grid, nodes) - {-1}
            if sizes and sizes != {n}:
                raise ConfigError("num-clients", n, f"the federation's size: {len(nodes)} SuperNode(s) connected "
                                  f"and they report num-partitions={sorted(sizes)[0]}; for `flwr run` set "
                                  f"--federation-config \"num-supernodes={n}\"")
        if now - last_log >= 30:
            last_log = now
            log.warning("waiting for SuperNodes: %d of num-clients=%d connected, %d missing (%.0fs left)",
                        len(nodes), n, n - len(nodes), timeout - (now - start))
        if now - start > timeout:
            raise RuntimeError(f"only {len(nodes)} of num-clients={n} nodes connected after {timeout:.0f}s "
                               f"(run key wait-for-nodes)")
        time.sleep(1.0)


def identify_nodes(grid: Grid, cfg: Config, nodes: list[int], identities: list | None = None) -> dict[int, int]:
    """Ask each node for its partition id; check the federation matches ``num-clients``.

    ``identities`` (if given) receives each node's identity record as a dict (deployment checks).
    """
    msgs = [Message(RecordDict({"config": ConfigRecord({})}), node, f"{MessageType.QUERY}.identify")
            for node in nodes]
    replies = list(grid.send_and_receive(msgs, timeout=300))
    mapping: dict[int, int] = {}
    for r in replies:
        if r.has_error():
            raise RuntimeError(f"node {r.metadata.src_node_id} failed to identify: {r.error.reason}")
        ident = r.content["identity"]
        if identities is not None:
            identities.append(dict(ident))
        mapping[r.metadata.src_node_id] = int(ident["partition-id"])
        n_parts = int(ident["num-partitions"])
        if n_parts not in (-1, cfg["num-clients"]):
            raise ConfigError("num-clients", cfg["num-clients"],
                              f"must equal the federation's num-partitions ({n_parts}); for `flwr run` set "
                              f"--federation-config \"num-supernodes={cfg['num-clients']}\"")
    ids = sorted(mapping.values())
    if ids != list(range(cfg["num-clients"])):
        raise ConfigError("num-clients", cfg["num-clients"],
                          f"the connected nodes hold partitions {ids[:12]}{'...' if len(ids) > 12 else ''}; "
                          f"expected exactly 0..{cfg['num-clients'] - 1}")
    return mapping


def make_sampler(cfg: Config, fed: Federation, node_of: dict[int, int]):
    """Seeded server-side sampling on partition ids (uniform, or Tolpegin's availability rule)."""
    rng = np.random.default_rng([cfg["seed"], 0x5A3])
    alpha = cfg["malicious-availability"]

    def sampler(server_round: int, nodes, k: int) -> list[int]:
        if alpha >= 0:
            chosen = sample_with_availability(rng, fed.honest, fed.malicious, k, alpha)
        else:
            chosen = sample_clients(rng, cfg["num-clients"], k)
        return [node_of[c] for c in chosen]

    return sampler


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(xs)) if xs else None


def _extra_metrics(clients: list[int], metrics: list[dict[str, float]], mal: set[int]) -> dict[str, Any]:
    """Plug-in metrics of the replies, as ``honest_<name>`` / ``malicious_<name>`` means (``-`` -> ``_``).

    A class-valued metric (a plug-in's ``outputs.class_metrics``) is the group's most common class
    (ties: the lowest), -1 when none.
    """
    out: dict[str, Any] = {}
    by_class = class_metrics()
    names = sorted({k for m in metrics for k in m})
    for name in names:
        col = name.replace("-", "_")
        for group, members in (("honest", [m for c, m in zip(clients, metrics) if c not in mal]),
                               ("malicious", [m for c, m in zip(clients, metrics) if c in mal])):
            values = [m[name] for m in members if name in m]
            if name in by_class:
                out[f"{group}_{col}"] = most_common_target(values) if values else None
            else:
                out[f"{group}_{col}"] = _mean(values)
    return out


class Experiment:
    """Evaluates each round and turns the defense's report into a results row."""

    def __init__(self, cfg: Config, fed: Federation, strategy, recorder: RunRecorder,
                 progress: Progress | None, malicious: tuple[int, ...] | None | str = "plan",
                 grid: CountingGrid | None = None) -> None:
        self.cfg, self.fed, self.strategy, self.recorder, self.progress = cfg, fed, strategy, recorder, progress
        # who is malicious (None = unknown, as in a deployment: no detection metrics) and the sent/received counter
        self.malicious = fed.malicious if malicious == "plan" else malicious
        self.grid = grid
        self.model = new_model(cfg).to(resolve_device(cfg["device"]))  # central evaluation's device
        self.confusion: np.ndarray | None = None
        self.captured: list[dict[str, Any]] = []
        self.rounds_updated = 0  # rounds whose global model differs from the round before
        self.reasons: set[str] = set()
        self.arrays: ArrayRecord | None = None  # the latest global model evaluated
        self._previous: list[np.ndarray] | None = None
        self.non_finite: str | None = None  # why the run stopped early, when the model became non-finite
        self.rate_sum: np.ndarray | None = None  # row-normalised confusion summed over rounds >= 1
        self.rate_rounds = 0
        self.measured = measurements_for(cfg, fed)  # the configured attack's and defense's own measurements

    def evaluate_fn(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        """Score the round's global model and record its row; raise NonFiniteModel once it is not finite."""
        cfg, fed = self.cfg, self.fed
        values = arrays.to_numpy_ndarrays()
        self.arrays = arrays
        set_state(self.model, dict(zip(arrays.keys(), values)))
        loss, cm = evaluate(self.model, fed.dataset.x_test, fed.dataset.y_test, fed.num_classes,
                            cfg["eval-batch-size"])
        self.confusion = cm
        row: dict[str, Any] = {"round": server_round, "accuracy": accuracy(cm), "loss": loss}
        rec = per_class_recall(cm)
        row.update({f"recall_{i}": r for i, r in enumerate(rec)})
        row["per_class_recall"] = rec
        src, tgt = cfg.source, cfg.target
        row["source_accuracy"] = source_accuracy(cm, src) if src is not None else None
        row["attack_success_rate"] = (attack_success_rate(cm, src, tgt)
                                     if src is not None and tgt is not None else None)
        row.update(attack_round_metrics(cm, src))  # mta, max_ata, source row for ata
        row.update(self.measured.test_metrics(server_round, self.model))
        if server_round >= 1:
            self._add_rates(cm)
            row.update(self._round_report(server_round))
            row["updated"] = self._count_update(values)
            ex = self.grid.last_train if self.grid is not None else None
            row.update(self.measured.round_metrics(server_round, self.model, ex.replies if ex is not None else []))
            if ex is not None:
                row.update({"num_sent": ex.sent, "replies_missing": ex.missing, "replies_error": ex.errors})
                self.grid.last_train = None
        row["elapsed"] = self.recorder.elapsed
        self.recorder.add(row)
        if self.progress:
            self.progress(row, cfg, self.recorder.elapsed)
        self._previous = values
        if not (_finite(values) and math.isfinite(loss)):
            what = "weights are" if not _finite(values) else "test loss is"
            self.non_finite = (f"round {server_round}: the global model's {what} not finite (NaN / Inf); "
                               f"training diverged (lower lr, or bound the attack's updates)")
            raise NonFiniteModel(self.non_finite)
        return MetricRecord({k: float(v) for k, v in row.items()
                             if isinstance(v, (int, float)) and v is not None})

    def _count_update(self, values: list[np.ndarray]) -> int:
        """1 when this round changed the global model (an all-zero aggregate does not), else 0 with a reason."""
        changed = _changed(self._previous, values)
        self.rounds_updated += changed
        rep = self.strategy.last_report
        if not changed and rep is not None and rep.updated:
            self.reasons.add("every aggregated update was exactly zero (e.g. an lr too small to change "
                             "float32 weights)")
        return int(changed)

    def _add_rates(self, cm: np.ndarray) -> None:
        """Accumulate the row-normalised confusion (the no-attack G -> T rate of every pair, over training)."""
        support = np.maximum(cm.sum(axis=1, keepdims=True), 1)
        rates = cm / support
        self.rate_sum = rates if self.rate_sum is None else self.rate_sum + rates
        self.rate_rounds += 1

    def mean_confusion_rates(self) -> list[list[float]] | None:
        """``[C, outputs]``: share of class i's test samples predicted j, averaged over the trained rounds."""
        return None if self.rate_sum is None else (self.rate_sum / self.rate_rounds).round(6).tolist()

    def outcome(self) -> dict[str, Any]:
        """``status`` "complete"; "non_finite" (with ``reason``) when the model stopped being finite;
        "no_update" (with ``reason``) when no round changed the global model.

        A run whose every update was dropped, refused or exactly zero still
        evaluates the initial model each round; a diverged model's numbers are
        noise. Neither must pass for a result.
        """
        if self.non_finite is not None:
            log.error("THE GLOBAL MODEL IS NOT FINITE: the run stopped (%s)", self.non_finite)
            return {"status": "non_finite", "reason": self.non_finite, "rounds_updated": self.rounds_updated}
        if self.rounds_updated or self.cfg["num-rounds"] == 0:
            return {"status": "complete", "rounds_updated": self.rounds_updated}
        reason = "; ".join(sorted(self.reasons)[:3]) or "the defense produced no update"
        log.error("NO ROUND UPDATED THE GLOBAL MODEL: the results describe the untrained initial model "
                  "(%s)", reason)
        return {"status": "no_update", "reason": reason, "rounds_updated": 0}

    def _round_report(self, server_round: int) -> dict[str, Any]:
        rep = self.strategy.last_report
        if rep is not None and rep.server_round == server_round:
            if not rep.updated:
                self.reasons.update(rep.invalid.values())
                if rep.info.get("error"):
                    self.reasons.add(str(rep.info["error"]))
        mal = set(self.malicious or ())
        if rep is None or rep.server_round != server_round:
            return {}
        participants = list(rep.clients) + sorted(rep.invalid)
        honest_acc = [a for c, a in zip(rep.clients, rep.train_accuracy) if c not in mal]
        mal_acc = [a for c, a in zip(rep.clients, rep.train_accuracy) if c in mal]
        honest_loss = [a for c, a in zip(rep.clients, rep.train_loss) if c not in mal]
        mal_loss = [a for c, a in zip(rep.clients, rep.train_loss) if c in mal]
        honest_recv = [a for c, a in zip(rep.clients, rep.received_accuracy) if c not in mal]
        mal_recv = [a for c, a in zip(rep.clients, rep.received_accuracy) if c in mal]
        out: dict[str, Any] = {
            "num_selected": len(participants),
            "num_malicious_selected": sum(c in mal for c in participants),
            "num_invalid": len(rep.invalid),
            "num_flagged": len(rep.flagged),
            "honest_train_accuracy": _mean(honest_acc),
            "malicious_train_accuracy": _mean(mal_acc),
            "honest_received_model_accuracy": _mean(honest_recv),
            "malicious_received_model_accuracy": _mean(mal_recv),
            "honest_train_loss": _mean(honest_loss),
            "malicious_train_loss": _mean(mal_loss),
        }
        out.update(_extra_metrics(rep.clients, rep.client_metrics, mal))
        out.update(norm_columns(rep.clients, rep.update_norms, mal))  # update norms, honest vs malicious
        columns, logged = self.measured.report_entries(rep, mal)
        out.update(columns)
        # invalid replies never reached the defense: counted apart, never as its detections
        invalid_mal = sum(c in mal for c in rep.invalid) if self.malicious is not None else None
        out["invalid_malicious"] = invalid_mal
        self.recorder.count_invalid(len(rep.invalid), invalid_mal)
        if self.cfg.has_attack and self.malicious is not None:
            d = detect(rep.flagged, mal, rep.clients)
            self.recorder.detection = self.recorder.detection + d
            out.update({"tp": d.tp, "fp": d.fp, "fn": d.fn, "tn": d.tn,
                        "precision": d.precision, "recall": d.recall, "f1": d.f1})
            w_h = [w for c, w in zip(rep.clients, rep.weights) if c not in mal and math.isfinite(w)]
            w_m = [w for c, w in zip(rep.clients, rep.weights) if c in mal and math.isfinite(w)]
            for group, ws in (("honest", w_h), ("malicious", w_m)):
                self.recorder.weight_sums[group][0] += sum(ws)
                self.recorder.weight_sums[group][1] += len(ws)
            out["weight_honest"] = _mean(w_h)
            out["weight_malicious"] = _mean(w_m)
        self.recorder.log_defense({"round": server_round, "clients": list(rep.clients), "kept": list(rep.kept),
                                   "flagged": rep.flagged, "weights": list(rep.weights), "invalid": {str(k): v for k, v in rep.invalid.items()},
                                   "malicious_selected": sorted(c for c in participants if c in mal),
                                   **logged,
                                   "info": rep.info})
        if rep.output_rows is not None:
            self.captured.append({"round": server_round, "clients": list(rep.clients),
                                  "kept": list(rep.kept), "rows": rep.output_rows})
        return out


def run_experiment(grid: Grid, cfg: Config, out_dir: str | Path | None = None,
                   progress: Progress | None = None, overwrite: bool = False) -> dict[str, Any]:
    """The whole run on any Grid; returns summary.json's content.

    The run directory is claimed (refused if it holds files, unless
    ``overwrite``; locked against a second writer). ``status.json`` says
    "running", then "complete", "interrupted" (KeyboardInterrupt, which the
    CLI also raises for SIGTERM, or SystemExit) or "failed" with the error; the exception
    is re-raised so the caller decides what to print.
    """
    check_installed(cfg)  # tracking's package (the ServerApp's side only: ClientApps need none)
    nodes = wait_for_nodes(grid, cfg["num-clients"], cfg["wait-for-nodes"])
    identities: list[dict[str, Any]] = []
    node_to_pid = identify_nodes(grid, cfg, nodes, identities)
    pid_to_node = {p: n for n, p in node_to_pid.items()}
    fed = federation_for(cfg)
    malicious = server_malicious(cfg, fed.malicious, identities)  # red-team file / plan / unknown
    model0 = new_model(cfg)
    root = {"server_update": server_trainer(cfg, fed)} if fed.server is not None and getattr(
        plugins.get("defense", cfg["defense"]), "needs_server_data", False) else {}
    strategy = build_strategy(cfg, sampler=make_sampler(cfg, fed, pid_to_node), client_ids=node_to_pid,
                              buffer_names=[n for n, _ in model0.named_buffers()], **root)
    recorder = RunRecorder(cfg, run_dir_for(cfg, out_dir), malicious or (), overwrite=overwrite)
    seated = seat_for(grid, cfg, {pid_to_node[p] for p in fed.malicious if p in pid_to_node})
    try:
        return _rounds(CountingGrid(seated), cfg, fed, strategy, recorder, model0, progress, malicious, identities)
    except (KeyboardInterrupt, SystemExit):  # stopped from outside (a Ray worker turns SIGTERM into SystemExit)
        recorder.close("interrupted")
        raise
    except BaseException as exc:
        recorder.close("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        recorder.close()


def _rounds(grid: "CountingGrid", cfg: Config, fed: Federation, strategy, recorder: RunRecorder, model0,
            progress: Progress | None, malicious: tuple[int, ...] | None,
            identities: list[dict[str, Any]]) -> dict[str, Any]:
    exp = Experiment(cfg, fed, strategy, recorder, progress, malicious=malicious, grid=grid)
    initial = ArrayRecord({k: Array(v) for k, v in initial_state(cfg).items()})  # initial-model or seeded weights
    try:
        result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=cfg["num-rounds"],
                                timeout=cfg["round-timeout"], train_config=ConfigRecord(),
                                evaluate_fn=exp.evaluate_fn)
        final = result.arrays if result.arrays is not None else initial
    except NonFiniteModel:  # stop now: the remaining rounds would train on NaN; outcome() reports why
        final = exp.arrays if exp.arrays is not None else initial
    state = dict(zip(final.keys(), final.to_numpy_ndarrays()))
    if exp.captured and cfg["figures"]:
        from fl_poison.update_figure import capture_figure
        capture_figure(recorder.dir, exp.captured, fed.malicious, cfg)
    if cfg["figures"]:
        exp.measured.figures(recorder.dir)
    extra = {**exp.outcome(), "engine": type(innermost(grid)).__name__, "malicious_known": malicious is not None,
             **({} if malicious is not None else {"malicious_clients": None, "detection": None}),
             "model": type(exp.model).__name__,
             "num_parameters": int(sum(v.size for v in state.values())),
             "mean_confusion_rates": exp.mean_confusion_rates(), **exp.measured.summary_entries()}
    if cfg.source is not None and malicious and not any(i.get("self-described") for i in identities):
        labels = fed.dataset.y_train.numpy()
        extra["malicious_source_samples"] = {str(c): int((labels[fed.parts[c]] == cfg.source).sum())
                                             for c in malicious}
    return recorder.finish(state, exp.confusion, extra)
