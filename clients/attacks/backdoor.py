"""``attack=backdoor``: a pixel-pattern trigger that makes the model predict ``target-class``.

Bagdasaryan et al. ("How to backdoor federated learning"): the attacker stamps
the trigger on a ``poison-fraction`` of its samples and labels them
``target-class``, keeping the rest clean so the main task is not hurt; with
``backdoor-boost`` > 1 it scales its update by that factor (model
replacement: boost ~ clients-per-round lets the backdoored model survive
averaging). Backdoor accuracy (share of triggered test samples whose true
class is not the target that the global model predicts as the target) is
measured centrally each round next to clean accuracy (:class:`BackdoorMeasurement`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clients.behaviour import Behaviour, RoundInput
from clients.model_poisoning import scale_update
from clients.trigger import backdoor_set, poison_indices, stamp, trigger_position
from fl_poison.config import ConfigError, Interval, Key, above, at_least, at_least_or_off
from fl_poison.measurement import Measurement, Outputs
from fl_poison.metrics.model_poisoning import backdoor_accuracy, backdoor_test_mask, predict

TRIGGER_SIZE = Key("trigger-size", int, 3, "side of the square backdoor trigger in pixels",
                   constraint=at_least(1, also="that fits the image"))
TRIGGER_ROW = Key("trigger-row", int, -1, "top row of the trigger (-1 = against the bottom edge)",
                  constraint=at_least_or_off(0, " for the bottom edge", noun="a row index, an integer"))
TRIGGER_COL = Key("trigger-col", int, -1, "left column of the trigger (-1 = against the right edge)",
                  constraint=at_least_or_off(0, " for the right edge", noun="a column index, an integer"))
TRIGGER_VALUE = Key("trigger-value", float, 1.0, "raw pixel value of the trigger (0 = black, 1 = white)",
                    constraint=Interval(float, 0, 1, closed="both"))
POISON_FRACTION = Key("poison-fraction", float, 0.5, "share of the attacker's samples that carry the trigger",
                      constraint=Interval(float, 0, 1, closed="right"))
BACKDOOR_BOOST = Key("backdoor-boost", float, 1.0, "factor the backdoor attacker scales its update by "
                     "(model replacement; 1 = off)", constraint=above(0))

_POISON_SALT = 11


def trigger_args(config: Any) -> tuple[int, int, int, torch.Tensor]:
    """(size, row, col, normalised value [C]) of the configured trigger."""
    from fl_poison.data.datasets import get_spec

    spec = get_spec(config["dataset"])
    return (config["trigger-size"], config["trigger-row"], config["trigger-col"],
            spec.pixel_value(config["trigger-value"]))


class BackdoorMeasurement(Measurement):
    """``backdoor_accuracy`` of every round's global model on the triggered non-target test samples."""

    def __init__(self, cfg: Any, fed: Any) -> None:
        ds = fed.dataset
        self.target, self.batch = cfg["target-class"], cfg["eval-batch-size"]
        self.x = stamp(ds.x_test[backdoor_test_mask(ds.y_test, self.target)], *trigger_args(cfg))

    def test_metrics(self, server_round: int, model: Any) -> dict[str, Any]:
        """Share of triggered test samples (true class != target) the model predicts as the target."""
        return {"backdoor_accuracy": backdoor_accuracy(predict(model, self.x, self.batch), self.target)}


class Backdoor(Behaviour):
    """Trigger + target label on a share of the local data; optional boosting."""

    name = "backdoor"
    keys = (TRIGGER_SIZE, TRIGGER_ROW, TRIGGER_COL, TRIGGER_VALUE, POISON_FRACTION, BACKDOOR_BOOST)
    help = "pixel-pattern backdoor to target-class on poison-fraction of the attacker's data (Bagdasaryan et al.)"
    malicious = True
    needs_class_pair = False
    outputs = Outputs(series=("backdoor_accuracy",), final=("backdoor_accuracy",))

    @classmethod
    def measurement(cls, config: Any, fed: Any) -> BackdoorMeasurement:
        return BackdoorMeasurement(config, fed)

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        if config["target-class"] < 0:
            raise ConfigError("target-class", config["target-class"],
                              f"attack={cls.name} needs a class 0..{spec.num_classes - 1}")
        if config["source-class"] >= 0:
            raise ConfigError("source-class", config["source-class"],
                              f"-1 for attack={cls.name} (the trigger applies to every class)")
        try:
            trigger_position(spec.input_shape, config["trigger-size"], config["trigger-row"], config["trigger-col"])
        except ValueError as exc:
            key = str(exc).split()[0]
            raise ConfigError(key, config[key], str(exc)) from None

    def training_set(self, r: RoundInput) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        rng = np.random.default_rng([c["seed"], r.server_round, r.cid, _POISON_SALT])
        idx = poison_indices(int(r.y.shape[0]), c["poison-fraction"], rng)
        size, row, col, value = trigger_args(c)
        return backdoor_set(r.x, r.y, idx, c["target-class"], size, row, col, value)

    def craft(self, r: RoundInput, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        boost = self.config["backdoor-boost"]
        return state if boost == 1.0 else scale_update(state, r.global_state, boost)
