"""Which engine runs ``fl-poison run``: the ``engine`` key resolved, and checked before any training.

Why: ``engine=batched`` is only worth having if its replies are the
ClientApp's, so a configuration it cannot reproduce (a model with dropout,
or a BatchNorm with ``momentum=None``, augmentation, an optimiser ``train_many`` does not implement, a
memory budget smaller than one client) is refused with one line naming the
key, before the first round; ``engine=auto`` takes the batched engine only
where it applies and is fastest (on CUDA; on these CPUs the forked pool wins,
see ``benchmarks/engines.py``).
"""

from __future__ import annotations

import logging

import torch

from fl_poison.config import Config, ConfigError
from fl_poison.devices import resolve_device
from fl_poison.engine.inprocess import InProcessGrid, inprocess_grid

log = logging.getLogger("fl_poison.engine")

#: the optimisers train_many writes out exactly as torch.optim computes them
BATCHED_OPTIMIZERS = ("sgd", "adam")


def batch_refusal(cfg: Config) -> tuple[str, str] | None:
    """``(key, why)`` when the batched engine cannot reproduce this run's ClientApp, else ``None``.

    Loads the federation (cached) and builds the model without touching the
    global torch seed, so a later run is unaffected by the check.
    """
    from fl_poison.batched_training import supports
    from fl_poison.engine import memory
    from fl_poison.federation import federation_for, new_model
    from fl_poison.training import TrainSettings

    if cfg["optimizer"] not in BATCHED_OPTIMIZERS:
        return "optimizer", f"the batched engine implements {', '.join(BATCHED_OPTIMIZERS)}"
    fed = federation_for(cfg)
    if fed.dataset.augment is not None:
        return "dataset", f"{cfg['dataset']} trains with augmentation, which the batched engine cannot reproduce"
    with torch.random.fork_rng(devices=[]):
        model = new_model(cfg)
    why = supports(model)
    if why:
        return ("dropout" if "Dropout" in why else "model"), f"the batched engine cannot train this model: {why}"
    device = resolve_device(cfg["device"])
    model = model.to(device)
    shape = tuple(fed.dataset.x_train.shape[1:])
    largest = max((len(p) for p in fed.parts), default=0)
    need = (memory.client_fixed_bytes(model, TrainSettings.from_config(cfg), shape)
            + largest * memory.sample_bytes(shape))
    budget = memory.budget_bytes(cfg["engine-memory-mb"], device)
    if need > budget:
        return "engine-memory-mb", (f"at least {-(-need // memory.MIB)} MiB: one client of {largest} samples needs "
                                    f"that much (budget {budget // memory.MIB} MiB)")
    return None


def choose_engine(cfg: Config) -> tuple[str, str]:
    """``(engine, why)``: ``engine`` resolved; raises ConfigError for an ``engine=batched`` it cannot honour."""
    name = cfg["engine"]
    if name == "batched":
        refusal = batch_refusal(cfg)
        if refusal:
            key, why = refusal
            raise ConfigError(key, cfg[key], f"engine=batched: {why} (or set engine=serial / parallel)")
        return "batched", "engine=batched"
    if name != "auto":
        return name, f"engine={name}"
    if resolve_device(cfg["device"]).type == "cuda":
        refusal = batch_refusal(cfg)
        if refusal is None:
            return "batched", "engine=auto on CUDA"
        return "serial", f"engine=auto on CUDA, not batched because {refusal[0]}: {refusal[1]}"
    if cfg["engine-workers"] == 1:
        return "serial", "engine=auto on the CPU with engine-workers=1"
    return "parallel", "engine=auto on the CPU: forked workers are fastest here"


def batched_grid(cfg: Config, client_app=None) -> InProcessGrid:
    """The batched engine over ``cfg``'s clients (the serial grid built first sets the task identity)."""
    from fl_poison.engine.batched import BatchedGrid

    base = inprocess_grid(cfg.to_dict(), cfg["num-clients"], client_app)
    return BatchedGrid(base._client_app, cfg.to_dict(), cfg["num-clients"], cfg["engine-memory-mb"])


def grid_for(cfg: Config, client_app=None) -> tuple[InProcessGrid, str]:
    """The grid ``fl-poison run`` uses for ``cfg`` and a line naming the choice (build it after the data load)."""
    from fl_poison.engine.parallel import make_grid

    name, why = choose_engine(cfg)
    log.info("engine: %s (%s)", name, why)
    if name == "batched":
        grid = batched_grid(cfg, client_app)
    else:
        workers = 1 if name == "serial" else cfg["engine-workers"]
        grid = make_grid(cfg.to_dict(), cfg["num-clients"], workers, client_app, device=cfg["device"])
    return grid, f"engine {name} ({why})"


def task_grid(cfg: Config, client_app=None) -> tuple[InProcessGrid, str]:
    """The grid of one sweep task: batched where :func:`choose_engine` picks it (``engine=batched``, or ``auto``
    on CUDA), else serial. A task is already one process of a pool (Ray or the local loop), so it never forks
    a worker pool of its own: ``parallel`` (and ``auto`` on the CPU) run serially."""
    name, why = choose_engine(cfg)
    if name == "batched":
        return batched_grid(cfg, client_app), why
    return inprocess_grid(cfg.to_dict(), cfg["num-clients"], client_app), f"serial in a sweep task ({why})"
