"""Defenses that draw random numbers each round from the run seed (reproducible runs, fresh draws per round)."""

from __future__ import annotations

from typing import Any

import numpy as np

from strategies.base import DefenseStrategy


class SeededDefense(DefenseStrategy):
    """Takes the run key ``seed``; :meth:`round_rng` is the same generator for the same seed and round."""

    def __init__(self, *, seed: int = 0, **kw: Any) -> None:
        super().__init__(**kw)
        self.seed = seed

    @classmethod
    def params_from_config(cls, config: Any) -> dict[str, Any]:
        return {**super().params_from_config(config), "seed": config["seed"]}

    def round_rng(self, server_round: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, server_round])
