"""What one SuperNode is: its data and its role, read from its own node config.

In simulation (and the in-process engine) every node derives its data split
and its role from the run plan that all nodes compute from the run config;
that stays the default. In a real deployment a node is set up by its operator
with ``--node-config`` and learns nothing about the others:

* ``data-dir=... dataset=...`` without ``num-partitions``: the node trains on
  all of its own files (the canonical formats the loaders read; never
  downloaded).
* ``partition-id=I num-partitions=N`` (optionally with ``data-dir``): lab
  set-up, partition I of a shared copy, split exactly as the run plan splits it.
* ``malicious=true|false`` decides the node's role; with ``malicious=true``
  any of :func:`attack_keys` in the node config override the run's attack keys
  for this node only. Without ``malicious`` the role follows the run plan.

``partition-id`` is also the node's index in the federation (the id results
and red-team files use); ``node-name`` is an optional label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from fl_poison.config import Config, ConfigError, coerce, schema

#: Core run keys a malicious node may set for itself; every key an attack plug-in declares may be set too.
CORE_ATTACK_KEYS = ("attack", "source-class", "target-class", "attack-start-round", "attack-end-round")
BASE_NODE_KEYS = ("partition-id", "num-partitions", "node-name", "dataset", "data-dir", "malicious")


def attack_keys() -> tuple[str, ...]:
    """Run keys a malicious node's config may override: the core attack keys plus every attack plug-in's keys."""
    s = schema()
    return CORE_ATTACK_KEYS + tuple(k.name for k in s.keys
                                    if any(o.startswith("attack ") for o in s.owners[k.name]))


@dataclass(frozen=True)
class NodeSetup:
    """A node's own settings, parsed from its node config."""

    index: int
    num_partitions: int | None
    name: str
    dataset: str | None
    data_dir: str | None
    malicious: bool | None  # None: follow the run plan
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def own_files(self) -> bool:
        """The node trains on all of its own files rather than on a partition of a shared copy."""
        return self.data_dir is not None and self.num_partitions is None

    @property
    def self_described(self) -> bool:
        """The node's data or role comes from its node config, not from the run plan."""
        return self.malicious is not None or self.own_files


def _bool(key: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("true", "1", "yes"):
        return True
    if s in ("false", "0", "no"):
        return False
    raise ConfigError(key, v, "true or false (node config)")


def node_setup(node_config: Mapping[str, Any]) -> NodeSetup:
    """Parse and check a node config (ConfigError names the offending key)."""
    node_keys = BASE_NODE_KEYS + attack_keys()
    unknown = sorted(set(node_config) - set(node_keys))
    if unknown:
        raise ConfigError(unknown[0], node_config[unknown[0]], f"a node-config key: {', '.join(node_keys)}")
    if "partition-id" not in node_config:
        raise ConfigError("partition-id", None, "an integer >= 0 in the node config: the node's index "
                          "(start it with --node-config \"partition-id=I ...\")")
    try:
        index = int(node_config["partition-id"])
    except (TypeError, ValueError):
        raise ConfigError("partition-id", node_config["partition-id"], "an integer >= 0") from None
    n_parts = node_config.get("num-partitions")
    n_parts = None if n_parts is None else int(n_parts)
    if index < 0 or (n_parts is not None and not 0 <= index < n_parts):
        raise ConfigError("partition-id", index, f"an integer in 0..{'num-partitions - 1' if n_parts else 'inf'}")
    malicious = _bool("malicious", node_config["malicious"]) if "malicious" in node_config else None
    by_name = schema().by_name
    overrides = {k: coerce(by_name[k], node_config[k]) for k in attack_keys() if k in node_config}
    if overrides and not malicious:
        raise ConfigError(next(iter(overrides)), next(iter(overrides.values())),
                          "attack keys in a node config only together with malicious=true")
    data_dir = node_config.get("data-dir")
    return NodeSetup(index=index, num_partitions=n_parts, name=str(node_config.get("node-name", f"node{index}")),
                     dataset=node_config.get("dataset"), data_dir=None if data_dir is None else str(data_dir),
                     malicious=malicious, overrides=overrides)


def data_config(cfg: Config, setup: NodeSetup) -> Config:
    """The run config as this node's data loader needs it (its own dataset name / folder)."""
    changes: dict[str, Any] = {}
    if setup.dataset is not None and setup.dataset != cfg["dataset"]:
        raise ConfigError("dataset", setup.dataset, f"the run's dataset ({cfg['dataset']}); the node config "
                          "names the data this node holds, and the ServerApp's model is built for the run's")
    if setup.data_dir is not None:
        changes["data-dir"] = setup.data_dir
    return cfg.replace(**changes) if changes else cfg


def role_config(cfg: Config, setup: NodeSetup) -> Config:
    """The config the node's behaviour runs under: the run's, with its own attack keys when malicious."""
    return cfg.replace(**setup.overrides) if setup.overrides else cfg


@dataclass(frozen=True)
class LocalNode:
    """Everything a ClientApp needs about its own node for one message."""

    cid: int
    config: Config  # run config with this node's attack keys
    x: torch.Tensor
    y: torch.Tensor
    malicious: bool
    num_classes: int
    augment: Any
    #: an attacker's pool under honest-holds-source=false (the samples no honest client holds), else None
    pool: tuple[torch.Tensor, torch.Tensor] | None = None


def local_node(cfg: Config, node_config: Mapping[str, Any]) -> LocalNode:
    """This node's data and role (see the module docstring for the rules)."""
    from fl_poison.data.datasets import load_dataset
    from fl_poison.federation import federation_for

    setup = node_setup(node_config)
    dcfg = data_config(cfg, setup)
    pool = None
    if setup.own_files:
        ds = load_dataset(dcfg["dataset"], Path(setup.data_dir).expanduser(), download=False)
        x, y, n_classes, augment = ds.x_train, ds.y_train, ds.spec.num_classes, ds.augment
        planned = False
    else:
        if setup.num_partitions is not None and setup.num_partitions != cfg["num-clients"]:
            raise ConfigError("num-partitions", setup.num_partitions,
                              f"the run's num-clients ({cfg['num-clients']})")
        fed = federation_for(dcfg)
        x, y = fed.client_data(setup.index)
        n_classes, augment = fed.num_classes, fed.dataset.augment
        planned = setup.index in fed.malicious
    malicious = planned if setup.malicious is None else setup.malicious
    if malicious and not setup.own_files:
        pool = fed.spare_data
    return LocalNode(setup.index, role_config(cfg, setup), x, y, malicious, n_classes, augment, pool)


def identity(node_config: Mapping[str, Any]) -> dict[str, Any]:
    """What a node tells the server about itself: index, partition count, name, whether it is self-described.

    Never its role: the server learns who is malicious only from the operator's red-team file.
    """
    setup = node_setup(node_config)
    return {"partition-id": setup.index, "num-partitions": -1 if setup.num_partitions is None else setup.num_partitions,
            "node-name": setup.name, "self-described": int(setup.self_described)}


def read_red_team(path: str | Path, names: Mapping[str, int]) -> tuple[int, ...]:
    """Node indices listed in an operator's red-team file: one partition id or node name per line, '#' comments."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError("red-team-file", str(path), "an existing file listing malicious node ids or names")
    out: set[int] = set()
    for line in p.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if entry.lstrip("-").isdigit():
            out.add(int(entry))
        elif entry in names:
            out.add(names[entry])
        else:
            raise ConfigError("red-team-file", str(path), f"ids or names of connected nodes; {entry!r} is neither "
                              f"(names: {', '.join(sorted(names)) or 'none'})")
    return tuple(sorted(out))


def server_malicious(cfg: Config, planned: tuple[int, ...], identities: list[Mapping[str, Any]]
                     ) -> tuple[int, ...] | None:
    """Who the ServerApp counts as malicious, for measurement only.

    The red-team file when the run names one; else the run plan when every node
    follows it (simulation); else unknown (None): detection metrics are absent.
    """
    if cfg["red-team-file"]:
        names = {str(i["node-name"]): int(i["partition-id"]) for i in identities}
        return read_red_team(cfg["red-team-file"], names)
    if any(int(i.get("self-described", 0)) for i in identities):
        return None
    return planned
