"""``defense=lfighter`` (Jebreel et al.): cluster the two most-changed output neurons' gradients."""

from __future__ import annotations

from typing import Any

from fl_poison.config import Key, at_least_or_off
from strategies import defaults
from strategies.rules import lfighter as lf
from strategies.base import DefenseStrategy

MODE = Key("lfighter-mode", str, "auto",
           "LFighter clustering: k-means (mild) or HDBSCAN (extreme); auto follows partition",
           ("auto", "mild", "extreme"))
MIN_SAMPLES = Key("lfighter-min-samples", int, -1,
                  "HDBSCAN min_samples in LFighter's extreme mode (-1 = the paper's: min_cluster_size=2 only; "
                  "1 lets two clients form a cluster)", constraint=at_least_or_off(1))

BIAS = Key("lfighter-bias", bool, False,
           "LFighter clusters the two neurons' weight rows (paper, code); true adds their biases", param="include_bias")
N_INIT = Key("lfighter-n-init", int, defaults.KMEANS_N_INIT,
             "k-means initialisations in LFighter's mild mode (one seed per run)",
             constraint=lf.N_INIT_RANGE, param="n_init")
SCORE = Key("lfighter-score", str, "paper", "LFighter cluster score: mean max angle (paper) or the authors' code's "
            "1 - mean min (cos - I)", ("paper", "code"), param="score")


class LFighter(DefenseStrategy):
    """LFighter's filter, then FedAvg of the kept clients (the math: ``strategies.rules.lfighter``)."""

    name = "lfighter"
    keys = (MODE, MIN_SAMPLES, BIAS, N_INIT, SCORE)
    min_clients = 3  # two clusters of fewer clients cannot single out a bad one
    help = "LFighter (Jebreel et al.): k-means / HDBSCAN on output-neuron gradients"

    def __init__(self, *, mode: str = "mild", seed: int = 0, min_samples: int | None = None,
                 include_bias: bool = BIAS.default, n_init: int = N_INIT.default, score: str = SCORE.default,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.mode, self.seed, self.min_samples = mode, seed, min_samples
        self.include_bias, self.n_init, self.score = include_bias, n_init, score

    @classmethod
    def params_from_config(cls, config: Any) -> dict[str, Any]:
        mode = config["lfighter-mode"]
        if mode == "auto":
            mode = "extreme" if config["partition"] == "extreme" else "mild"
        m = config["lfighter-min-samples"]
        return {**super().params_from_config(config), "mode": mode, "seed": config["seed"],
                "min_samples": None if m < 0 else m}

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        # one k-means seed for the whole run, as the authors' fixed random_state=0
        return lf.lfighter(updates, weights, layout, mode=self.mode, seed=self.seed, min_samples=self.min_samples,
                           include_bias=self.include_bias, n_init=self.n_init, score=self.score)
