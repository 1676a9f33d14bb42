"""Build the defense a run config names."""

from __future__ import annotations

from typing import Any

from strategies import defenses as d
from strategies.base import DefenseStrategy

STRATEGIES: dict[str, type[DefenseStrategy]] = {
    cls.name: cls for cls in (
        d.FedAvgDefense, d.Median, d.TrimmedMean, d.RepeatedMedian, d.Krum, d.MultiKrum, d.Bulyan,
        d.NormDifferenceClipping, d.FoolsGold, d.PCAFilter, d.LFighter,
    )
}


def defense_params(cfg) -> dict[str, Any]:
    """The defense-specific keyword arguments from a run config."""
    name = cfg["defense"]
    if name == "trimmed-mean":
        return {"beta": cfg["trim-beta"]}
    if name == "repeated-median":
        return {"reweight": cfg["repeated-median-reweight"]}
    if name == "krum":
        return {"num_byzantine": cfg["num-byzantine"], "krum_distance": cfg["krum-distance"]}
    if name == "bulyan":
        return {"num_byzantine": cfg["num-byzantine"], "selection": cfg["bulyan-selection"]}
    if name == "multi-krum":
        return {"num_byzantine": cfg["num-byzantine"], "keep": cfg["multi-krum-keep"],
                "krum_distance": cfg["krum-distance"]}
    if name == "ndc":
        return {"bound": cfg["ndc-bound"], "mode": cfg["ndc-mode"]}
    if name == "foolsgold":
        return {"features": cfg["foolsgold-features"], "scope": cfg["foolsgold-scope"]}
    if name == "pca":
        # The defender's own setting, never the attack's source class: unset = every class in turn.
        return {"source_class": cfg["pca-class"] if cfg["pca-class"] >= 0 else None,
                "visualise_only": cfg["pca-visualise-only"], "seed": cfg["seed"],
                "history_rounds": cfg["pca-history-rounds"]}
    if name == "lfighter":
        mode = cfg["lfighter-mode"]
        if mode == "auto":
            mode = "extreme" if cfg["partition"] == "extreme" else "mild"
        min_samples = cfg["lfighter-min-samples"]
        return {"mode": mode, "seed": cfg["seed"], "min_samples": None if min_samples < 0 else min_samples,
                "include_bias": cfg["lfighter-bias"], "n_init": cfg["lfighter-n-init"],
                "score": cfg["lfighter-score"]}
    return {}


def build_strategy(cfg, **kwargs: Any) -> DefenseStrategy:
    """The configured defense, sampling ``clients-per-round`` of ``num-clients`` nodes."""
    cls = STRATEGIES[cfg["defense"]]
    n = cfg["num-clients"]
    return cls(
        clients_per_round=cfg["clients-per-round"],
        fraction_train=cfg["clients-per-round"] / n,
        min_train_nodes=cfg["clients-per-round"],
        min_available_nodes=n,
        capture_updates=cfg["capture-updates"],
        **defense_params(cfg),
        **kwargs,
    )
