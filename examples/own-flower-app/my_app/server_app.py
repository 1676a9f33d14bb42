"""The ServerApp: where FedAvg would be, fl-poison's multi-Krum; after each round, read who it kept and flagged.

``strategies.defenses.MultiKrum`` is a Flower ``Strategy`` (a ``FedAvg`` subclass), so it takes FedAvg's
arguments and ``start(...)`` works the same; its own arguments are the defense's (``num_byzantine`` = f; it
averages the K - f updates closest to their neighbours). Any other defense of ``strategies.defenses``
(``Krum``, ``LFighter``, ``Median``, ...) drops in the same way.
After every round ``strategy.last_report`` says which clients took part, which it kept and which it
flagged; the round's MetricRecord in the ``Result`` carries the same as lists (``clients``, ``kept``).
"""

from __future__ import annotations

import json
import time
from logging import ERROR, INFO
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp
from strategies.defenses import MultiKrum

from my_app.task import accuracy, load_test, make_model

app = ServerApp()


def wait_for_nodes(grid: Grid, n: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while (found := len(list(grid.get_node_ids()))) < n and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    n = int(cfg["min-nodes"])
    found = wait_for_nodes(grid, n)
    if found < n:
        log(ERROR, "my-app needs %d nodes, %d connected: flwr run . --federation-config num-supernodes=%d",
            n, found, n)
        return
    # was: strategy = FedAvg(fraction_train=1.0, min_train_nodes=n, min_available_nodes=n)
    strategy = MultiKrum(num_byzantine=int(cfg["num-byzantine"]),
                    fraction_train=1.0, min_train_nodes=n, min_available_nodes=n)
    x_test, y_test = load_test()
    model = make_model()
    rounds: list[dict] = []

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict())
        acc = accuracy(model, x_test, y_test)
        report = strategy.last_report  # what the defense did this round (None before round 1)
        if report is not None and report.server_round == server_round:
            # node ids -> the partition ids the clients sent as an extra metric
            pid = {c: int(m.get("partition-id", -1)) for c, m in zip(report.clients, report.client_metrics)}
            row = {"round": server_round, "accuracy": acc, "clients": sorted(pid.values()),
                   "kept": sorted(pid[c] for c, k in zip(report.clients, report.kept) if k),
                   "flagged": sorted(pid[c] for c in report.flagged),
                   "invalid": len(report.invalid)}
            rounds.append(row)
            log(INFO, "my-app round %d: accuracy %.3f, %s kept %s, flagged %s", server_round, acc, strategy.name,
                row["kept"], row["flagged"])
        return MetricRecord({"accuracy": acc})

    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                            num_rounds=int(cfg["num-rounds"]), train_config=ConfigRecord(), evaluate_fn=evaluate)
    # the same, from Flower's Result: the MetricRecord the strategy returned each round (node ids)
    for r, metrics in sorted(result.train_metrics_clientapp.items()):
        log(INFO, "my-app round %d: clients %s kept %s", r, list(metrics["clients"]), list(metrics["kept"]))
    if cfg["report-file"]:
        out = Path(str(cfg["report-file"])).expanduser()
        out.write_text(json.dumps({"defense": strategy.name, "rounds": rounds}, indent=2))
        log(INFO, "my-app: defense report written to %s", out)
