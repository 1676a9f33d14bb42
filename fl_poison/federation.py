"""The run plan both sides derive from the config alone: data, partitions, attackers.

Server and clients compute the same plan from the same config and seed, so
nothing about who is malicious ever travels in a message: clients learn their
own role from the plan, the experiment side uses it for metrics, and the
defense (a Strategy) never sees it.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fl_poison.config import Config, ConfigError
from fl_poison.data.datasets import Dataset, get_spec, load_dataset, resolve_data_dir
from fl_poison.data.partition import partition
from fl_poison.models import build_model
from fl_poison.threat import choose_malicious, num_malicious, source_holders


@dataclass(frozen=True)
class Federation:
    config: Config
    dataset: Dataset
    parts: tuple[np.ndarray, ...]
    malicious: tuple[int, ...]
    #: training-set indices no honest client holds: the attackers' pool under ``honest-holds-source=false``
    spare: np.ndarray | None = None
    #: training-set indices held out of every client: the server's root set (``server-data-samples``)
    server: np.ndarray | None = None

    def server_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(self.server if self.server is not None else np.zeros(0, dtype=np.int64))
        return self.dataset.x_train[idx], self.dataset.y_train[idx]

    @property
    def num_classes(self) -> int:
        return self.dataset.spec.num_classes

    @property
    def honest(self) -> tuple[int, ...]:
        bad = set(self.malicious)
        return tuple(i for i in range(len(self.parts)) if i not in bad)

    def client_data(self, cid: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(self.parts[cid])
        return self.dataset.x_train[idx], self.dataset.y_train[idx]

    @functools.cached_property
    def spare_data(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The samples no honest client holds (``honest-holds-source=false``), or None; built once."""
        if self.spare is None:
            return None
        idx = torch.from_numpy(self.spare)
        return self.dataset.x_train[idx], self.dataset.y_train[idx]


_cache: dict[str, Federation] = {}
_lock = threading.Lock()


def model_name(cfg: Config) -> str:
    return get_spec(cfg["dataset"]).default_model if cfg["model"] == "auto" else cfg["model"]


def new_model(cfg: Config) -> nn.Module:
    """The initial global model: the same weights for a given seed, everywhere."""
    spec = get_spec(cfg["dataset"])
    torch.manual_seed(cfg["seed"])
    dropout = None if cfg["dropout"] < 0 else cfg["dropout"]
    return build_model(model_name(cfg), model_outputs(cfg), spec.input_shape, dropout=dropout)


def model_outputs(cfg: Config) -> int:
    """Output units of the federation's model: the data set's classes, unless the attack plug-in says otherwise.

    Both sides derive it from the config (e.g. the GAN attack's extra "fake" class
    agreed by label voting), so server and clients build the same model.
    """
    from fl_poison import plugins

    return int(plugins.get("attack", cfg["attack"]).model_outputs(cfg, get_spec(cfg["dataset"]).num_classes))


def plan_attackers(cfg: Config, parts: list[np.ndarray], labels: np.ndarray) -> tuple[int, ...]:
    """Choose the persistent attackers once per run (raises ConfigError when impossible)."""
    if not cfg.has_attack:
        return ()
    n = num_malicious(cfg["num-clients"], cfg["malicious-fraction"], cfg["num-malicious"])
    eligible = None
    if cfg["malicious-from-source-holders"]:
        eligible = source_holders([labels[p] for p in parts], cfg.source)
    try:
        return choose_malicious(cfg["num-clients"], n, seed=cfg["seed"], eligible=eligible)
    except ValueError as exc:
        key = "malicious-from-source-holders" if eligible is not None else (
            "num-malicious" if cfg["num-malicious"] >= 0 else "malicious-fraction")
        raise ConfigError(key, cfg[key], str(exc)) from None


def training_pool(n: int, train_samples: int, seed: int) -> np.ndarray:
    """Indices of the training samples the federation shares: all, or a seeded random subset."""
    if train_samples < 0 or train_samples >= n:
        return np.arange(n)
    rng = np.random.default_rng([seed, 0x7EA1])
    return np.sort(rng.choice(n, size=train_samples, replace=False))


def server_data_size(cfg: Config) -> int:
    """Samples of the server's root set: ``server-data-samples``, or with -1 FLTrust's 100 for a defense that
    needs one (``needs_server_data``) and 0 for any other."""
    if cfg["server-data-samples"] >= 0:
        return cfg["server-data-samples"]
    from fl_poison import plugins

    return 100 if getattr(plugins.get("defense", cfg["defense"]), "needs_server_data", False) else 0


def hold_out(pool: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``(pool without the root set, root set)``: ``n`` seeded uniform draws from ``pool`` (none when ``n = 0``)."""
    if n <= 0:
        return pool, None
    if n >= len(pool):
        raise ConfigError("server-data-samples", n, f"fewer than the {len(pool)} training samples")
    rng = np.random.default_rng([seed, 0x5E7])
    root = np.sort(rng.choice(pool, size=n, replace=False))
    return np.setdiff1d(pool, root, assume_unique=True), root


def server_trainer(cfg: Config, fed: Federation) -> Callable[[Sequence[str], Sequence[np.ndarray], int],
                                                            list[np.ndarray]]:
    """The server's local training on its root set, as a client trains (``local-epochs``, ``lr``, ...):
    ``(names, global arrays, round) -> trained arrays``; seeded by the run seed and the round.

    ``server-steps=client`` (default, FLTrust's paper: server and clients run the same local iterations)
    cycles the root set up to a mean client's size, so an epoch is as many SGD steps as a client's;
    ``epochs`` trains ``local-epochs`` passes over the root set alone.
    """
    from fl_poison.training import TrainSettings, set_state, get_state, train_local

    x, y = fed.server_data()
    if cfg["server-steps"] == "client" and len(x) and fed.parts:
        # FLTrust: the server takes a client's local iterations; 100 root samples at batch 64 would be 2 steps
        # against a 500-sample client's 8, and every update is rescaled to the server's norm
        per_epoch = max(len(x), int(round(float(np.mean([len(p) for p in fed.parts])))))
        idx = torch.from_numpy(np.resize(np.arange(len(x)), per_epoch))
        x, y = x[idx], y[idx]
    settings = TrainSettings.from_config(cfg)

    def train(names: Sequence[str], arrays: Sequence[np.ndarray], server_round: int) -> list[np.ndarray]:
        model = new_model(cfg)
        set_state(model, dict(zip(names, arrays)))
        seed = int(np.random.SeedSequence([cfg["seed"], 0x5E7, server_round]).generate_state(1)[0])
        train_local(model, x, y, settings, seed=seed)
        state = get_state(model)
        return [state[n] for n in names]

    return train


def federation_for(cfg: Config) -> Federation:
    """Build (once per process and config) the federation's data split and attackers."""
    key = cfg.digest()
    with _lock:
        if key not in _cache:
            ds = load_dataset(cfg["dataset"], resolve_data_dir(cfg["data-dir"]))
            labels = ds.y_train.numpy()
            if cfg["train-samples"] > len(labels):
                logging.getLogger("fl_poison").warning(
                    "train-samples=%d is more than the %d training samples of %s: using all %d",
                    cfg["train-samples"], len(labels), cfg["dataset"], len(labels))
            pool = training_pool(len(labels), cfg["train-samples"], cfg["seed"])
            pool, server = hold_out(pool, server_data_size(cfg), cfg["seed"])
            try:
                local = partition(labels[pool], cfg["num-clients"], cfg["partition"], seed=cfg["seed"],
                                  alpha=cfg["dirichlet-alpha"], num_classes=ds.spec.num_classes)
            except ValueError as exc:  # a split that cannot be made is a config error, not a crash
                key = {"dirichlet": "dirichlet-alpha", "extreme": "train-samples"}.get(cfg["partition"], "num-clients")
                if "exceeds" in str(exc):
                    key = "num-clients"
                article = "an" if cfg["partition"][0] in "aeiou" else "a"
                raise ConfigError(key, cfg[key], f"{article} {cfg['partition']} split of {len(pool)} samples over "
                                  f"{cfg['num-clients']} clients that can be made: {exc}") from None
            parts = [pool[p] for p in local]
            mal = plan_attackers(cfg, parts, labels)
            if mal:  # e.g. the GAN attack: the adversary's partition holds no sample of class G
                from fl_poison import plugins

                parts = list(plugins.get("attack", cfg["attack"]).adjust_partitions(cfg, parts, labels, mal))
            spare = None
            if not cfg["honest-holds-source"]:
                parts, spare = split_without_source(parts, labels, cfg.source, mal)
            _cache[key] = Federation(cfg, ds, tuple(parts), mal, spare, server)
        return _cache[key]


def split_without_source(parts: list[np.ndarray], labels: np.ndarray, source: int,
                         malicious: tuple[int, ...]) -> tuple[list[np.ndarray], np.ndarray]:
    """``honest-holds-source=false``: every part loses its source samples; the spare pool is what no honest part holds.

    The ADA authors' split: honest clients hold disjoint slices of the
    training set with the source class removed; each attacker draws its set
    afresh every round from the source samples (all of them, since no honest
    client holds one) and from the clean samples no honest client holds (its
    own part, the other attackers', and what the partition left unused). An
    attacker's local set size stays that of its own part without the source.
    Raises ConfigError when a client would hold nothing or the pool lacks a class.
    """
    labels = np.asarray(labels)
    out = [np.asarray(p)[labels[p] != source] for p in parts]
    empty = [i for i, p in enumerate(out) if p.size == 0]
    if empty:
        raise ConfigError("honest-holds-source", False, f"true for this split: client {empty[0]} holds only "
                          f"source-class samples and would be left with none")
    honest = [p for i, p in enumerate(out) if i not in set(malicious)]
    spare = np.setdiff1d(np.arange(labels.size), np.concatenate(honest) if honest else np.zeros(0, np.int64))
    if malicious and not ((labels[spare] == source).any() and (labels[spare] != source).any()):
        raise ConfigError("honest-holds-source", False, "true for this split: the attackers' pool (samples no "
                          "honest client holds) has no source-class or no clean sample")
    return out, spare.astype(np.int64)


def initial_state(cfg: Config) -> dict[str, np.ndarray]:
    """The round-0 global model: ``initial-model`` (checked against the model's shapes by the config) or fresh."""
    fresh = {k: v.detach().cpu().numpy() for k, v in new_model(cfg).state_dict().items()}
    if not cfg["initial-model"]:
        return fresh
    with np.load(Path(cfg["initial-model"]).expanduser()) as z:
        return {k: np.asarray(z[k], dtype=fresh[k].dtype) for k in fresh}
