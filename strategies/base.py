"""The shared Flower Strategy every defense subclasses.

A defense's math is a pure function over stacked updates (see
``strategies/rules/aggregation.py``). This base turns Flower replies into that input
and the result back into a global model, and makes every defense robust and
observable the same way:

* replies that are errors, lack arrays, have other array names / shapes, a
  non-positive example count or non-finite numbers are *invalid*: logged,
  counted as dropped, and left out; if nothing valid is left the global model
  stays as it was and the round's metrics say so;
* the defense sees only the *trainable* parameters (its ``updates`` matrix
  and ``layout`` leave buffers out), so distances, clustering, medians and
  clipping never mix in BatchNorm statistics; buffers (``running_mean``,
  ``running_var``, ``num_batches_tracked``: the model's own buffer names when
  given, else those name endings) become the example-weighted mean of the
  clients the defense *kept* (integer counters rounded); if it kept none, the
  buffers stay as they were. This one rule holds for every defense;
* every round reports which clients took part, which were kept / flagged and
  with what weight, in the round's MetricRecord (lists of ints / floats, which
  Flower stores per round in its ``Result``) and in :attr:`last_report`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fl_poison import plugins
from fl_poison.config import Key
from fl_poison.measurement import NO_OUTPUTS, Measurement, Outputs
from fl_poison.updates import (
    Layout, buffer_mask, column_mask, flatten, infer_layout, unflatten, weighted_buffer_mean,
)
from strategies.rules import pre_aggregation
from strategies.rules.aggregation import Aggregation
from strategies.rules.pre_aggregation import PRE_AGGREGATIONS

log = logging.getLogger("fl_poison.strategy")

#: A server-side sampling rule: (server_round, connected node ids, k) -> chosen node ids.
Sampler = Callable[[int, Sequence[int], int], Sequence[int]]


@dataclass
class RoundReport:
    """What a defense did in one round (per-client lists are aligned with ``clients``)."""

    server_round: int
    clients: list[int] = field(default_factory=list)
    kept: list[bool] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    received_accuracy: list[float] = field(default_factory=list)
    #: every other numeric metric each valid reply carried (attack plug-ins report e.g. their chosen target)
    client_metrics: list[dict[str, float]] = field(default_factory=list)
    invalid: dict[int, str] = field(default_factory=dict)
    updated: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    output_rows: np.ndarray | None = None  # [K, C, H+1] when capture is on
    #: L2 norm of each valid client's update (local - global), as the defense received it
    update_norms: list[float] = field(default_factory=list)

    @property
    def flagged(self) -> list[int]:
        """Valid clients the defense itself left out; replies dropped as invalid are in ``invalid``, not here."""
        return [c for c, k in zip(self.clients, self.kept) if not k]


#: Reply metrics every client sends; any other numeric metric is passed through in ``client_metrics``.
STANDARD_METRICS = ("num-examples", "train-loss", "train-accuracy", "received-model-accuracy")


def _to_signed(node_id: int) -> int:
    """Flower node ids are uint64; MetricRecord ints must fit int64."""
    return node_id - (1 << 64) if node_id >= (1 << 63) else node_id


def _stack_updates(rows: list[list[np.ndarray]], g: np.ndarray,
                   buffer_cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[K, P]`` float32 parameter updates ``local - global`` and ``[K, B]`` float64 buffer updates, row by row.

    Each difference is taken in float64 and rounded once to float32, so the
    matrix costs ``K x P x 4`` bytes plus one float64 row (not ``3 x K x P x 8``).
    Rules that need float64 convert per chunk or per row. Buffers (few) stay float64.
    """
    params = np.empty((len(rows), int((~buffer_cols).sum())), dtype=np.float32)
    buffers = np.empty((len(rows), int(buffer_cols.sum())), dtype=np.float64)
    for i, arrays in enumerate(rows):
        d = flatten(arrays) - g
        params[i] = d[~buffer_cols]
        buffers[i] = d[buffer_cols]
    return params, buffers


def byzantine_budget(largest: Callable[[int], int], k: int, f: int) -> int:
    """The f a rule uses with k updates: the configured ``f``, or for -1 ``largest(k)`` (at least 0)."""
    return f if f >= 0 else max(0, largest(k))


class DefenseStrategy(FedAvg):
    """FedAvg's sampling and messaging, with a pluggable robust aggregation.

    Subclasses implement :meth:`aggregate_updates`. Parameters beyond FedAvg's:

    output_layer: module name of the classifier's last Linear layer
        (inferred as the last 2-D array when ``None``; see ``infer_layout``).
    sampler: server-side sampling rule; ``None`` uses FedAvg's.
    client_ids: maps Flower node ids to the ids reports use (e.g. partition
        ids); unmapped nodes are reported by node id.
    capture_updates: keep each round's output-layer rows in the report.
    buffer_names: the model's buffer names (``named_buffers()``); ``None``
        recognises them by name ending (see ``fl_poison.updates.buffer_mask``).
    aggregation_weights: ``examples`` (each update weighs its example count,
        FedAvg) or ``uniform`` (each weighs 1: the ADA authors' plain mean),
        for the update and the buffers alike.
    pre_aggregation: ``none``, ``nnm`` or ``bucketing`` (``strategies.rules.pre_aggregation``):
        mixes the updates before :meth:`aggregate_updates` sees them, for every rule;
        ``kept`` / ``weights`` are mapped back to clients (a client is kept iff the
        row standing for it is) and the mixing is reported in the round's info.
    bucket_size: rows per bucket (``bucketing``).
    pre_aggregation_f: NNM's f (the run key ``num-byzantine``; -1: the rule's own default budget).
    pre_aggregation_seed: seed of the buckets' random permutation (with the round).
    """

    name: ClassVar[str] = "base"
    #: run keys this defense declares (each with ``param`` = the constructor argument it fills)
    keys: ClassVar[tuple[Key, ...]] = ()
    help: ClassVar[str] = ""
    #: False for rules that do not average the updates (median, Krum): ``aggregation-weights=uniform`` is refused
    averages: ClassVar[bool] = True
    #: fewest valid updates the rule can filter (the config refuses a smaller clients-per-round; a round left
    #: with fewer valid replies is logged, and the rule keeps everyone)
    min_clients: ClassVar[int] = 1
    #: the names this defense's :meth:`measurement` writes (see :class:`fl_poison.measurement.Outputs`)
    outputs: ClassVar[Outputs] = NO_OUTPUTS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            plugins.register("defense", cls)

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        """Relations between run keys this defense needs (raise ConfigError); run before any data loads."""

    @classmethod
    def measurement(cls, config: Any, fed: Any) -> Measurement | None:
        """Server-side measurements this defense adds to a run (None: the core's alone)."""
        return None

    @staticmethod
    def largest_f(k: int) -> int:
        """The Byzantine budget f that ``num-byzantine=-1`` stands for with k updates (may be < 0 for tiny k).

        The default is Krum's bound K >= 2f + 3 (Blanchard et al.), also NNM's f under a rule without
        one of its own; a rule with another bound (Bulyan) overrides it, so no caller names a rule.
        """
        return (k - 3) // 2

    @classmethod
    def params_from_config(cls, config: Any) -> dict[str, Any]:
        """Constructor arguments from a run config: each declared key's value under its ``param`` name."""
        return {k.param: config[k.name] for k in cls.keys if k.param}

    def __init__(
        self,
        *,
        output_layer: str | None = None,
        sampler: Sampler | None = None,
        clients_per_round: int | None = None,
        client_ids: dict[int, int] | None = None,
        capture_updates: bool = False,
        buffer_names: Sequence[str] | None = None,
        aggregation_weights: str = "examples",
        pre_aggregation: str = "none",
        bucket_size: int = 2,
        pre_aggregation_f: int = -1,
        pre_aggregation_seed: int = 0,
        **fedavg_kwargs: Any,
    ) -> None:
        super().__init__(**fedavg_kwargs)
        if pre_aggregation not in PRE_AGGREGATIONS:
            raise ValueError(f"pre-aggregation must be one of {PRE_AGGREGATIONS}, got {pre_aggregation!r}")
        self.pre_aggregation, self.bucket_size = pre_aggregation, bucket_size
        self.pre_aggregation_f, self.pre_aggregation_seed = pre_aggregation_f, pre_aggregation_seed
        self.uniform = aggregation_weights == "uniform"  # every valid reply weighs 1 (the ADA authors' mean)
        self.output_layer = output_layer
        self.sampler = sampler
        self.clients_per_round = clients_per_round
        self.client_ids = client_ids if client_ids is not None else {}
        self.capture_updates = capture_updates
        self.buffer_names = None if buffer_names is None else tuple(buffer_names)
        self.last_report: RoundReport | None = None
        self._global: ArrayRecord | None = None

    # --- what subclasses provide --------------------------------------------------
    def aggregate_updates(
        self, updates: np.ndarray, weights: np.ndarray, layout: Layout, clients: list[int], server_round: int
    ) -> Aggregation:
        raise NotImplementedError

    def _mix_and_aggregate(
        self, updates: np.ndarray, weights: np.ndarray, layout: Layout, clients: list[int], server_round: int
    ) -> Aggregation:
        """:meth:`aggregate_updates`, on the pre-aggregated rows when ``pre_aggregation`` is set."""
        if self.pre_aggregation == "none":
            return self.aggregate_updates(updates, weights, layout, clients, server_round)
        if self.pre_aggregation == "nnm":
            from strategies.rules.robust import pairwise_sq_distances

            f = byzantine_budget(self.largest_f, len(updates), self.pre_aggregation_f)
            mixed = pre_aggregation.nnm(updates, weights, f, pairwise_sq_distances(updates))
            about: dict[str, Any] = {"rule": "nnm", "num_byzantine": f, "neighbours": len(updates) - f}
        else:
            rng = np.random.default_rng([self.pre_aggregation_seed, server_round])
            mixed = pre_aggregation.bucketing(updates, weights, self.bucket_size, rng)
            about = {"rule": "bucketing", "bucket_size": self.bucket_size,
                     "buckets": [[clients[j] for j in g] for g in mixed.groups]}
        # a row is labelled with the first client it stands for (rules with per-client history see buckets)
        labels = [clients[g[0]] for g in mixed.groups] if mixed.split else list(clients)
        agg = pre_aggregation.map_back(self.aggregate_updates(mixed.rows, mixed.weights, layout, labels,
                                                              server_round), mixed)
        agg.info = {**agg.info, "pre_aggregation": about}
        return agg

    # --- sampling -------------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._global = arrays
        if self.sampler is None:
            return super().configure_train(server_round, arrays, config, grid)
        nodes = sorted(grid.get_node_ids())
        k = self.clients_per_round or max(int(len(nodes) * self.fraction_train), self.min_train_nodes)
        chosen = list(self.sampler(server_round, nodes, min(k, len(nodes))))
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._construct_messages(record, chosen, MessageType.TRAIN)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """No federated evaluation: defenses are judged on a central test set (evaluate_fn)."""
        return []

    # --- aggregation ------------------------------------------------------------
    def label(self, node_id: int) -> int:
        return self.client_ids.get(node_id, _to_signed(node_id))

    def _validate(self, msg: Message, names: list[str], shapes: list[tuple]) -> tuple[list[np.ndarray], float] | str:
        """The reply's arrays and example count, or the reason it is invalid."""
        if msg.has_error():
            return f"error reply (code {msg.error.code}): {msg.error.reason}"
        content = msg.content
        if len(content.array_records) != 1:
            return f"expected one ArrayRecord, got {len(content.array_records)}"
        if len(content.metric_records) != 1:
            return f"expected one MetricRecord, got {len(content.metric_records)}"
        record = next(iter(content.array_records.values()))
        if list(record.keys()) != names:
            return "array names differ from the global model's"
        arrays = [record[n].numpy() for n in names]
        bad = [n for n, a, s in zip(names, arrays, shapes) if tuple(a.shape) != s]
        if bad:
            return f"array shapes differ from the global model's ({', '.join(bad[:3])})"
        metrics = next(iter(content.metric_records.values()))
        n_ex = metrics.get(self.weighted_by_key)
        if not isinstance(n_ex, (int, float)) or not np.isfinite(n_ex) or n_ex <= 0:
            return f"'{self.weighted_by_key}' is {n_ex!r}, must be a positive number"
        listed = [k for k in STANDARD_METRICS if not isinstance(metrics.get(k, 0.0), (int, float))]
        if listed:  # MetricRecord also carries lists; the report reads these as one number each
            return f"'{listed[0]}' is {metrics[listed[0]]!r}, must be a number"
        if not all(np.all(np.isfinite(a)) for a in arrays if np.issubdtype(a.dtype, np.floating)):
            return "non-finite values (NaN / Inf) in the arrays"
        return arrays, float(n_ex)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        report = RoundReport(server_round=server_round)
        self.last_report = report
        if self._global is None:
            raise RuntimeError("aggregate_train called before configure_train")
        names = list(self._global.keys())
        global_arrays = [self._global[n].numpy() for n in names]
        shapes = [tuple(a.shape) for a in global_arrays]

        rows, weights, losses, accs, received = [], [], [], [], []
        for msg in replies:
            node = self.label(msg.metadata.src_node_id)
            checked = self._validate(msg, names, shapes)
            if isinstance(checked, str):
                report.invalid[node] = checked
                log.warning("round %d: dropping client %d: %s", server_round, node, checked)
                continue
            arrays, n_ex = checked
            report.clients.append(node)
            rows.append(arrays)  # the reply's own buffers: stacked below without a float64 copy
            weights.append(1.0 if self.uniform else n_ex)
            metrics = next(iter(msg.content.metric_records.values()))
            losses.append(float(metrics.get("train-loss", float("nan"))))
            accs.append(float(metrics.get("train-accuracy", float("nan"))))
            received.append(float(metrics.get("received-model-accuracy", float("nan"))))
            report.client_metrics.append({k: float(v) for k, v in metrics.items()
                                          if k not in STANDARD_METRICS and isinstance(v, (int, float))})
        report.train_loss, report.train_accuracy, report.received_accuracy = losses, accs, received

        if not rows:
            log.warning("round %d: no valid client update; the global model is unchanged", server_round)
            return None, self._round_metrics(report)

        full = infer_layout(names, global_arrays, self.output_layer)
        is_buffer = buffer_mask(names, self.buffer_names)
        layout = full.select([i for i, b in enumerate(is_buffer) if not b])
        buf_cols = column_mask(full, is_buffer)
        g = flatten(global_arrays)
        updates, buffer_updates = _stack_updates(rows, g, buf_cols)
        # L2 norm of each parameter update as the defense received it (row by row: no float64 copy of the stack)
        report.update_norms = [float(np.linalg.norm(row.astype(np.float64))) for row in updates]
        if len(rows) < self.min_clients:
            log.warning("round %d: only %d valid update(s); %s needs %d to filter, so it keeps everyone this round",
                        server_round, len(rows), self.name, self.min_clients)
        try:
            agg = self._mix_and_aggregate(updates, np.asarray(weights), layout, list(report.clients), server_round)
        except ValueError as exc:  # e.g. Krum with fewer valid clients than f requires
            log.warning("round %d: %s cannot aggregate %d update(s): %s; the global model is unchanged",
                        server_round, self.name, len(rows), exc)
            report.kept = [True] * len(rows)
            report.info["error"] = str(exc)
            return None, self._round_metrics(report)
        report.kept = [bool(k) for k in agg.kept]
        report.weights = [float(w) for w in agg.weights]
        report.info = agg.info
        if self.capture_updates:
            report.output_rows = layout.output_rows(updates)
        if not np.all(np.isfinite(agg.update)):
            log.warning("round %d: the aggregate is not finite; the global model is unchanged", server_round)
            report.info["non_finite_aggregate"] = True
            return None, self._round_metrics(report)
        step = np.zeros_like(g)
        step[~buf_cols] = agg.update
        if buf_cols.any():
            buf_step = weighted_buffer_mean(buffer_updates, np.asarray(weights), agg.kept)
            if buf_step is not None:
                step[buf_cols] = buf_step
        new = unflatten(g + step, full)
        report.updated = True
        record = ArrayRecord({n: Array(a) for n, a in zip(names, new)})
        return record, self._round_metrics(report)

    def _round_metrics(self, report: RoundReport) -> MetricRecord:
        """Per-round defense output as a MetricRecord (ints, floats and lists only)."""
        def mean(xs: list[float]) -> float:
            ok = [x for x in xs if np.isfinite(x)]
            return float(np.mean(ok)) if ok else float("nan")

        m = MetricRecord({
            "num-clients": len(report.clients) + len(report.invalid),
            "num-valid": len(report.clients),
            "num-invalid": len(report.invalid),
            "num-flagged": len(report.flagged),
            "updated": int(report.updated),
            "train-loss": mean(report.train_loss),
            "train-accuracy": mean(report.train_accuracy),
            "received-model-accuracy": mean(report.received_accuracy),
        })
        if report.clients:
            m["clients"] = [int(c) for c in report.clients]
            m["kept"] = [int(k) for k in report.kept] if report.kept else [0] * len(report.clients)
            if report.weights:
                m["weights"] = [float(w) for w in report.weights]
        if report.invalid:
            m["invalid-clients"] = [int(c) for c in sorted(report.invalid)]
        return m
