"""Seconds per round of one config on every engine, and samples/s against the machine's ceiling.

    python benchmarks/engines.py                      # 20 MNIST clients, 5 rounds, 1 epoch
    python benchmarks/engines.py --set num-rounds=3   # any run key
    python benchmarks/engines.py --clients 10,100 --samples-per-client 60 --skip-simulation --skip plain,ceiling
    python benchmarks/engines.py --device cuda --clients 10,100,1000 --samples-per-client 600   # on a GPU

Engines: a plain PyTorch loop; fl-poison's in-process grid serial
(``engine=serial``), parallel (``engine=parallel``, one forked worker per
core) and batched (``engine=batched``: the round's clients as one vmap'd
computation, replies built by the ClientApp's own code); the vectorised
trainer ``train_many`` alone (training plus FedAvg and central evaluation, no
Flower messaging: the ceiling of batching); and Flower's simulation
(``flwr run .``, local SuperLink, Ray backend, 1 CPU per client, offline,
which also pays Flower's start-up; its per-round figure comes from the run's
own rounds.csv, like the in-process ones). On a CUDA device each row also
reports the allocator's peak memory.

The ceiling is measured by the same script, on the same model: the best of one
process at batch 1,280 (all torch threads) and one single-threaded process per
core at the config's batch size, each training on the config's data. Prints
medians, ratios and samples/s (local training samples per second of a round,
central evaluation included, as in rounds.csv).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.plain_loop import plain_fedavg  # noqa: E402
from fl_poison.cli import config_from_args  # noqa: E402
from fl_poison.federation import federation_for  # noqa: E402
from fl_poison.results import read_rounds  # noqa: E402

DEFAULT = ["dataset=mnist", f"data-dir={ROOT.parent / 'shared' / 'data'}", "num-clients=20",
           "clients-per-round=20", "num-rounds=5", "local-epochs=1", "batch-size=64", "lr=0.01",
           "figures=false"]


def per_round(run_dir: Path) -> list[float]:
    el = [r["elapsed"] for r in read_rounds(run_dir)]
    return list(np.diff(el))


def inprocess(cfg, out: Path, name: str = "inprocess") -> tuple[list[float], float]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from defense_table import run_one

    t0 = time.perf_counter()
    cfg = cfg.replace(run_name=name)
    run_one(cfg, out)
    return per_round(out / name), time.perf_counter() - t0


def flower_simulation(cfg, out: Path) -> tuple[list[float], float]:
    def lit(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(v) if isinstance(v, (int, float)) else f'"{v}"'

    values = {**cfg.to_dict(), "out-dir": str(out), "run-name": "simulation"}
    run_config = " ".join(f"{k}={lit(v)}" for k, v in values.items())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "FLWR_HOME": tempfile.mkdtemp(prefix="flwr-home-"),
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "FLWR_TELEMETRY_ENABLED": "0"}
    flwr = shutil.which("flwr") or str(Path(sys.executable).parent / "flwr")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [flwr, "run", str(ROOT), "--run-config", run_config, "--federation-config",
         f"num-supernodes={cfg['num-clients']} client-resources-num-cpus=1", "--stream"],
        env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    subprocess.run(["pkill", "-f", "flower-superlink"], check=False)
    if proc.returncode != 0 or not (out / "simulation" / "rounds.csv").exists():
        raise RuntimeError(f"flwr run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return per_round(out / "simulation"), wall


def _train_samples(cfg, batch: int, threads: int, cid: int, passes: int = 1) -> tuple[int, float]:
    """(samples, seconds) of ``passes`` epochs on client ``cid``'s data at ``batch``, ``threads`` threads."""
    import torch

    from fl_poison.devices import resolve_device
    from fl_poison.federation import federation_for, new_model
    from fl_poison.training import TrainSettings, train_local

    torch.set_num_threads(threads)
    fed = federation_for(cfg)
    model = new_model(cfg).to(resolve_device(cfg["device"]))
    x, y = fed.client_data(cid)
    s = TrainSettings(passes, batch, cfg["lr"], cfg["momentum"], cfg["weight-decay"], cfg["optimizer"])
    train_local(model, x[: 4 * batch], y[: 4 * batch], s.__class__(1, batch, s.lr, s.momentum,
                                                                    s.weight_decay, s.optimizer), seed=0)  # warm-up
    t0 = time.perf_counter()
    train_local(model, x, y, s, seed=1)
    _sync(cfg)
    return int(y.shape[0]) * passes, time.perf_counter() - t0


def _sync(cfg) -> None:
    import torch

    from fl_poison.devices import resolve_device

    if resolve_device(cfg["device"]).type == "cuda":
        torch.cuda.synchronize()


def _worker(args):
    return _train_samples(*args)


def ceiling(cfg) -> dict[str, float]:
    """Samples/s of one process at batch 1,280 and of one 1-thread process per core at the config's batch."""
    import multiprocessing as mp

    import torch

    from fl_poison.engine.parallel import available_cores
    from fl_poison.federation import federation_for

    federation_for(cfg)  # loaded before forking: shared
    threads = torch.get_num_threads()
    n, sec = _train_samples(cfg, 1280, threads, 0, passes=5)
    out = {f"one process, batch 1280, {threads} threads": n / sec}
    torch.set_num_threads(threads)
    cores = available_cores()
    with mp.get_context("fork").Pool(cores) as pool:
        # each worker times its own training (after its warm-up): the pool's start and the model build are not
        # training, and with one client's data per worker they used to dominate the wall time
        done = pool.map(_worker, [(cfg, cfg["batch-size"], 1, c, 5) for c in range(cores)])
    out[f"{cores} processes x 1 thread, batch {cfg['batch-size']}"] = sum(d[0] for d in done) / max(d[1] for d in done)
    torch.set_num_threads(threads)
    return out


def batched(cfg) -> tuple[list[float], float]:
    """Seconds per round of ``train_many`` over all clients + FedAvg + central evaluation (no Flower)."""
    import torch

    from fl_poison.batched_training import supports, train_many
    from fl_poison.devices import resolve_device
    from fl_poison.federation import federation_for, new_model
    from fl_poison.training import TrainSettings, evaluate

    fed = federation_for(cfg)
    device = resolve_device(cfg["device"])
    model = new_model(cfg).to(device)
    why = supports(model, fed.dataset.augment)
    if why:
        raise RuntimeError(f"train_many does not apply: {why}")
    data = [fed.client_data(c) for c in range(cfg["num-clients"])]
    sizes = torch.tensor([float(y.shape[0]) for _, y in data], device=device)
    s = TrainSettings.from_config(cfg)
    times, t_all = [], time.perf_counter()
    for rnd in range(1, cfg["num-rounds"] + 1):
        t0 = time.perf_counter()
        params, _ = train_many(model, data, s, [1000 * rnd + c for c in range(len(data))])
        with torch.no_grad():
            for name, p in model.named_parameters():
                stacked = torch.stack([q[name] for q in params])
                p.copy_((stacked * (sizes / sizes.sum()).view(-1, *[1] * p.dim())).sum(0))
        evaluate(model, fed.dataset.x_test, fed.dataset.y_test, fed.num_classes, cfg["eval-batch-size"])
        _sync(cfg)
        times.append(time.perf_counter() - t0)
    return times, time.perf_counter() - t_all


def _peak_mib(cfg) -> float:
    """The CUDA allocator's peak since the last call (NaN on the CPU), then reset."""
    import torch

    from fl_poison.devices import resolve_device

    if resolve_device(cfg["device"]).type != "cuda":
        return float("nan")
    peak = torch.cuda.max_memory_allocated() / 2 ** 20
    torch.cuda.reset_peak_memory_stats()
    return peak


def bench(cfg, out: Path, skip: set[str], simulation: bool) -> None:
    """Every engine on ``cfg``; one table."""
    rows = {
        "plain": ("plain PyTorch loop", lambda: plain_fedavg(cfg)),
        "serial": ("in-process, engine=serial", lambda: inprocess(cfg.replace(engine="serial"), out, "serial")),
        "parallel": ("in-process, engine=parallel", lambda: inprocess(cfg.replace(engine="parallel"), out,
                                                                      "parallel")),
        "batched": ("in-process, engine=batched", lambda: inprocess(cfg.replace(engine="batched"), out, "batched")),
        "train_many": ("train_many (vmap), no Flower", lambda: batched(cfg)),
    }
    results = {}
    _peak_mib(cfg)
    for key, (name, fn) in rows.items():
        if key in skip:
            continue
        t0 = time.perf_counter()
        times, _ = fn()
        results[name] = (times, time.perf_counter() - t0, _peak_mib(cfg))
    if simulation:
        results["Flower simulation (flwr run)"] = (*flower_simulation(cfg, out), float("nan"))
    ceil = {} if "ceiling" in skip else ceiling(cfg)
    best = max(ceil.values()) if ceil else float("nan")
    samples = sum(len(p) for p in federation_for(cfg).parts[: cfg["clients-per-round"]]) * cfg["local-epochs"]
    print(f"{cfg['dataset']}, {cfg['num-clients']} clients x {cfg['clients-per-round']} per round, "
          f"{cfg['num-rounds']} rounds, {cfg['local-epochs']} epoch(s), batch {cfg['batch-size']}, "
          f"device {cfg['device']}; {samples} training samples per round")
    for name, v in ceil.items():
        print(f"ceiling: {name}: {v:,.0f} samples/s")
    base_name = next(iter(results), None)
    base = float(np.median(results[base_name][0])) if base_name else float("nan")
    print(f"{'engine':36s} {'median s/round':>15s} {'vs first':>9s} {'samples/s':>10s} {'vs ceiling':>11s} "
          f"{'total wall s':>13s} {'peak MiB':>9s}")
    for name, (t, wall, peak) in results.items():
        med = float(np.median(t))
        print(f"{name:36s} {med:15.2f} {med / base:9.2f} {samples / med:10,.0f} {samples / med / best:11.2f} "
              f"{wall:13.1f} {peak:9.0f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N (the device run key)")
    ap.add_argument("--skip-simulation", action="store_true")
    ap.add_argument("--skip", default="", help="comma list of: plain,serial,parallel,batched,train_many,ceiling")
    ap.add_argument("--clients", default="", help="comma list of client counts, each a table (all train per round)")
    ap.add_argument("--samples-per-client", type=int, default=0,
                    help="train-samples = clients x this (small local sets; 0 = the config's train-samples)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("flwr").setLevel(logging.ERROR)
    base = config_from_args(None, DEFAULT + [f"device={args.device}"] + args.set)
    print(f"load before: {os.getloadavg()}", flush=True)
    for n in [int(c) for c in args.clients.split(",") if c] or [base["num-clients"]]:
        over = {"num_clients": n, "clients_per_round": n}
        if args.samples_per_client:
            over["train_samples"] = n * args.samples_per_client
        bench(base.replace(**over), Path(tempfile.mkdtemp(prefix="fl-poison-bench-")), skip,
              not args.skip_simulation)
    print(f"load after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
