"""Build the defense a run config names, from the plug-in registry."""

from __future__ import annotations

from typing import Any

from fl_poison import plugins
from strategies.base import DefenseStrategy


def __getattr__(name: str) -> Any:
    """``STRATEGIES``: every registered defense by name (a live view of the registry)."""
    if name == "STRATEGIES":
        return plugins.plugins("defense")
    raise AttributeError(name)


def defense_params(cfg) -> dict[str, Any]:
    """The defense-specific keyword arguments from a run config (the plug-in's ``params_from_config``)."""
    return plugins.get("defense", cfg["defense"]).params_from_config(cfg)


def build_strategy(cfg, **kwargs: Any) -> DefenseStrategy:
    """The configured defense, sampling ``clients-per-round`` of ``num-clients`` nodes."""
    cls = plugins.get("defense", cfg["defense"])
    n = cfg["num-clients"]
    return cls(
        clients_per_round=cfg["clients-per-round"],
        fraction_train=cfg["clients-per-round"] / n,
        min_train_nodes=cfg["clients-per-round"],
        min_available_nodes=n,
        capture_updates=cfg["capture-updates"],
        aggregation_weights=cfg["aggregation-weights"],
        pre_aggregation=cfg["pre-aggregation"],
        bucket_size=cfg["bucket-size"],
        pre_aggregation_f=cfg["num-byzantine"],
        pre_aggregation_seed=cfg["seed"],
        **defense_params(cfg),
        **kwargs,
    )
