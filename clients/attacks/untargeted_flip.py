"""``attack=untargeted-flip``: every label through a fixed class permutation (the label-flipping blog).

``flip-map=reverse`` is ``y -> C-1-y`` (what other frameworks do);
``random`` a seeded derangement (every example mislabelled).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clients.behaviour import Behaviour, RoundInput
from clients.poisoning import flip_map, flip_untargeted
from fl_poison.config import ConfigError, Key

FLIP_MAP = Key("flip-map", str, "reverse", "untargeted flipping: y -> C-1-y, or a seeded derangement",
               ("reverse", "random"))


class UntargetedFlip(Behaviour):
    name = "untargeted-flip"
    keys = (FLIP_MAP,)
    help = "untargeted label flipping of all local labels (flip-map reverse | random)"
    malicious = True

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        if config.get("injection-rate", -1.0) != -1.0:
            raise ConfigError("injection-rate", config["injection-rate"],
                              "-1 with attack=untargeted-flip (dilution needs a source class)")

    def training_set(self, r: RoundInput) -> tuple[torch.Tensor, torch.Tensor]:
        mapping = flip_map(self.config["flip-map"], r.num_classes, self.config["seed"])
        return r.x, torch.from_numpy(np.asarray(flip_untargeted(r.y.numpy(), mapping), dtype=np.int64))
