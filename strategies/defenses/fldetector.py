"""``defense=fldetector``: FLDetector (Zhang et al., KDD 2022), per-client consistency across rounds."""

from __future__ import annotations

from typing import Any

import numpy as np

from fl_poison.config import ConfigError, Key
from fl_poison.updates import buffer_mask, flatten
from strategies.rules import fldetector as fd
from strategies.defenses._seeded import SeededDefense

FLD_WINDOW = Key("fldetector-window", int, fd.DEFAULT_WINDOW,
                 "FLDetector's window N: L-BFGS pairs kept and rounds a suspicious score averages (paper: 10)",
                 constraint=fd.WINDOW, param="window")
FLD_RULE = Key("fldetector-rule", str, "median", "rule FLDetector aggregates the clients it has not removed with",
               choices=fd.RULES, param="rule")
FLD_GAP = Key("fldetector-gap", str, "tibshirani",
              "gap statistic: tibshirani (paper, mean of log W*) or authors (their code, log of mean W*)",
              choices=fd.GAPS, param="gap")


class FLDetector(SeededDefense):
    """L-BFGS-predicted updates, windowed suspicious scores, gap statistic; the history lives in the strategy."""

    name = "fldetector"
    keys = (FLD_WINDOW, FLD_RULE, FLD_GAP)
    help = "FLDetector (Zhang et al. 2022): update consistency across rounds, gap statistic, k-means"
    averages = False  # the paper's base rules (median, mean) take plain updates
    min_clients = fd.MIN_SCORED
    #: each client's update is compared with its own previous round's: partial participation is refused
    needs_every_client = True

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        if config["clients-per-round"] < config["num-clients"]:
            raise ConfigError("clients-per-round", config["clients-per-round"],
                              f"fldetector compares each client's update with its previous round's, so every "
                              f"client must take part each round: set it to num-clients ({config['num-clients']})")
        if config["pre-aggregation"] != "none":
            raise ConfigError("pre-aggregation", config["pre-aggregation"],
                              "fldetector tracks each client across rounds; mixed rows have no history: use none")

    def __init__(self, *, window: int = FLD_WINDOW.default, rule: str = FLD_RULE.default,
                 gap: str = FLD_GAP.default, **kw: Any) -> None:
        super().__init__(**kw)
        self.window, self.rule, self.gap = window, rule, gap
        self.history = fd.History()

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        if self._global is None:
            raise ValueError("fldetector needs the global model the updates were computed on")
        names = list(self._global.keys())
        trainable = ~buffer_mask(names, self.buffer_names)
        model = flatten([self._global[n].numpy() for n, t in zip(names, trainable) if t])
        agg, self.history = fd.fldetector(updates, weights, list(clients), model, self.history, server_round,
                                          layout, window=self.window, rule=self.rule, gap=self.gap,
                                          rng=self.round_rng(server_round))
        return agg
