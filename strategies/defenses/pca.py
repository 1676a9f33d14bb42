"""``defense=pca``: Tolpegin et al.'s PCA view of source-neuron updates, turned into a filter."""

from __future__ import annotations

from typing import Any

import numpy as np

from fl_poison.config import CLASS_OR_NONE, ConfigError, Key, at_least_or_off
from strategies.rules import pca_filter
from strategies.base import DefenseStrategy

PCA_CLASS = Key("pca-class", int, -1, "output neuron the PCA filter inspects (-1 = choose each round)",
                constraint=CLASS_OR_NONE)
VISUALISE_ONLY = Key("pca-visualise-only", bool, False, "PCA detects but keeps everyone (the paper's original use)",
                     param="visualise_only")

HISTORY_ROUNDS = Key("pca-history-rounds", int, 1, "rounds of source-class rows the PCA filter pools (1 = this "
                     "round; -1 = all rounds, Tolpegin's Algorithm 1)", constraint=at_least_or_off(1, " for all rounds"), param="history_rounds")


class PCAFilter(DefenseStrategy):
    """2-component PCA of the standardised source-neuron rows, the minority cluster dropped."""

    name = "pca"
    keys = (PCA_CLASS, VISUALISE_ONLY, HISTORY_ROUNDS)
    min_clients = 3  # a 2-cluster split of fewer points has no minority
    help = "PCA filter on source-class output-neuron updates (Tolpegin et al. 2020)"

    def __init__(self, *, source_class: int | None = None, visualise_only: bool = VISUALISE_ONLY.default,
                 seed: int = 0, history_rounds: int = HISTORY_ROUNDS.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.source_class, self.visualise_only, self.seed = source_class, visualise_only, seed
        self.history_rounds = history_rounds  # 1: this round alone; -1: every round (Tolpegin's Alg. 1 pools)
        self.past: list[np.ndarray] = []  # earlier rounds' output rows, oldest first

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        if config["pca-class"] >= spec.num_classes:
            raise ConfigError("pca-class", config["pca-class"],
                              f"a class of {config['dataset']}: 0..{spec.num_classes - 1}, or -1")

    @classmethod
    def params_from_config(cls, config: Any) -> dict[str, Any]:
        # The defender's own setting, never the attack's source class: unset = every class in turn.
        return {**super().params_from_config(config),
                "source_class": config["pca-class"] if config["pca-class"] >= 0 else None, "seed": config["seed"]}

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        keep = len(self.past) if self.history_rounds < 0 else self.history_rounds - 1
        past = self.past[len(self.past) - keep:] if keep > 0 else []
        agg = pca_filter.pca_filter(updates, weights, layout, source_class=self.source_class,
                                    visualise_only=self.visualise_only, seed=self.seed + server_round,
                                    history_rows=np.concatenate(past) if past else None)
        if self.history_rounds != 1:
            self.past = past + [layout.output_rows(np.atleast_2d(np.asarray(updates, dtype=np.float64)))]
        return agg
