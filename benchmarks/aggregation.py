"""Time and peak memory of every defense's server-side aggregation, for K clients x P parameters.

    python benchmarks/aggregation.py                              # K in {10, 100}, P in {22k, 11M}
    python benchmarks/aggregation.py --k 10 --p 22k --defenses median,krum
    python benchmarks/aggregation.py --big-only median,trimmed-mean,repeated-median   # K=100 x P=11M subset
    python benchmarks/aggregation.py --k 10 --p 22k --defenses median,krum --pre-aggregation nnm,bucketing

P = 22k is the LFighter CNN (MNIST), P = 11M ResNet-18 (CIFAR-10): their real
array names and shapes. Each measurement is one ``aggregate_train`` call of a
fresh strategy on K synthetic replies (global model + N(0, 0.01) noise, every
reply's arrays kept as the float32 ``ArrayRecord`` a ClientApp sends), so it
includes the validation and stacking in ``strategies/base.py``. Peak memory is
``tracemalloc``'s peak above the replies (numpy reports its buffers to it),
also shown as a multiple of ``K x P x 4`` bytes. FLDetector scores a client
only once it has a window of distances to its own earlier updates (from round
3 on), so a first-round call would time a plain median: its strategy is first
fed ``window + 1`` warm-up rounds of fresh replies on a global model that moves
towards the measured one (see :func:`warm_up`), and only the next round, with
full L-BFGS history, scores and gap statistic, is measured. The same script measures
another checkout when run with ``PYTHONPATH`` pointing at it.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path and "PYTHONPATH" not in os.environ:
    sys.path.insert(0, str(ROOT))

from flwr.app import Array, ArrayRecord, Message, MessageType, Metadata, MetricRecord, RecordDict  # noqa: E402

SIZES = {"22k": ("mnist", "lfighter-cnn", (1, 28, 28)), "11m": ("cifar10", "resnet18", (3, 32, 32))}


def global_arrays(p_key: str) -> dict[str, np.ndarray]:
    from fl_poison.models import build_model

    _, model, shape = SIZES[p_key]
    # 0-d buffers (BatchNorm's num_batches_tracked) are left out, so that older checkouts (run with
    # PYTHONPATH, see the registry fallback below), whose unflatten made numpy scalars of them, run too
    return {k: v.numpy().copy() for k, v in build_model(model, 10, shape).state_dict().items() if v.dim() > 0}


def replies(g: dict[str, np.ndarray], k: int, seed: int = 0) -> list[Message]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(k):
        arrays = {n: np.asarray(a + rng.standard_normal(a.shape, dtype=np.float32) * np.float32(0.01), dtype=a.dtype)
                  if np.issubdtype(a.dtype, np.floating) else np.array(a, copy=True) for n, a in g.items()}
        content = RecordDict({"arrays": ArrayRecord({n: Array(a) for n, a in arrays.items()}),
                              "metrics": MetricRecord({"num-examples": 100 + i, "train-loss": 1.0,
                                                       "train-accuracy": 0.5})})
        md = Metadata(run_id=1, message_id=f"r{i}", src_node_id=1001 + i, dst_node_id=1,
                      reply_to_message_id=f"m{i}", group_id="1", created_at=time.time(), ttl=3600.0,
                      message_type=MessageType.TRAIN)
        out.append(Message(content=content, metadata=md))
    return out


def warm_up(strategy, g: dict[str, np.ndarray], k: int, window: int) -> int:
    """Feed a history-keeping strategy (FLDetector) the rounds before its steady state; returns the next round.

    The global model of round ``r`` is ``g - (R + 1 - r) * step`` for a fixed random ``step``, so it moves
    every round (an unchanged model gives no L-BFGS pair) and round ``R + 1`` is the measured ``g``.
    """
    rounds = window + 1
    rng = np.random.default_rng(2)
    step = {n: rng.standard_normal(a.shape).astype(a.dtype) * np.float32(0.001)
            if np.issubdtype(a.dtype, np.floating) else None for n, a in g.items()}
    for r in range(1, rounds + 1):
        g_r = {n: a - np.float32(rounds + 1 - r) * step[n] if step[n] is not None else a for n, a in g.items()}
        strategy._global = ArrayRecord({n: Array(a) for n, a in g_r.items()})
        record, _ = strategy.aggregate_train(r, replies(g_r, k, seed=100 + r))
        if record is None:
            raise RuntimeError(f"warm-up round {r} produced no model")
    return rounds + 1


def measure(defense: str, k: int, p_key: str, g: dict[str, np.ndarray], msgs: list[Message],
            pre: str = "none") -> tuple[float, int]:
    from fl_poison.config import resolve
    from strategies.registry import build_strategy

    dataset, model, _ = SIZES[p_key]
    cfg = resolve({"dataset": dataset, "model": model, "num-clients": k, "clients-per-round": k,
                   "defense": defense, **({} if pre == "none" else {"pre-aggregation": pre})})
    strategy = build_strategy(cfg)
    if getattr(strategy, "needs_server_data", False):  # FLTrust: a synthetic root-data update like a reply's
        rng = np.random.default_rng(1)
        strategy.server_update = lambda names, arrays, rnd: [
            a + rng.standard_normal(a.shape).astype(a.dtype) * 0.01 if np.issubdtype(a.dtype, np.floating) else a
            for a in arrays]
    server_round = warm_up(strategy, g, k, cfg["fldetector-window"]) if defense == "fldetector" else 1
    strategy._global = ArrayRecord({n: Array(a) for n, a in g.items()})
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    record, _ = strategy.aggregate_train(server_round, msgs)
    sec = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if record is None:
        raise RuntimeError(f"{defense} produced no model")
    return sec, peak


def main() -> int:
    import logging

    try:  # the plug-in registry (this checkout); older checkouts listed the defenses in config.py
        from fl_poison import plugins

        DEFENSE_CHOICES = sorted(plugins.plugins("defense"))
    except ImportError:
        from fl_poison.config import DEFENSE_CHOICES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", default="10,100")
    ap.add_argument("--p", default="22k,11m")
    ap.add_argument("--defenses", default=",".join(DEFENSE_CHOICES))
    ap.add_argument("--pre-aggregation", default="none",
                    help="comma-separated pre-aggregations each defense is measured with (none, nnm, bucketing)")
    ap.add_argument("--big-only", default=None,
                    help="defenses measured at K=100 x P=11M (default: all of --defenses)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    defenses = args.defenses.split(",")
    print(f"load before: {os.getloadavg()}", flush=True)
    pres = args.pre_aggregation.split(",")
    print("| K | P | defense | pre-aggregation | seconds | peak MB | peak / (K*P*4) |")
    print("|---|---|---|---|---|---|---|")
    for p_key in args.p.split(","):
        g = global_arrays(p_key)
        p = sum(a.size for a in g.values())
        for k in map(int, args.k.split(",")):
            chosen = defenses
            if k >= 100 and p_key == "11m" and args.big_only is not None:
                chosen = [d for d in args.big_only.split(",") if d]
            if not chosen:
                continue
            msgs = replies(g, k)
            for d in chosen:
                for pre in pres:
                    try:
                        sec, peak = measure(d, k, p_key, g, msgs, pre)
                        print(f"| {k} | {p:,} | {d} | {pre} | {sec:.2f} | {peak / 2**20:,.0f} | "
                              f"{peak / (k * p * 4):.2f} |", flush=True)
                    except Exception as exc:  # noqa: BLE001 - report and go on
                        print(f"| {k} | {p:,} | {d} | {pre} | failed: {type(exc).__name__}: {str(exc)[:80]} | | |",
                              flush=True)
            del msgs
            gc.collect()
    print(f"load after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
