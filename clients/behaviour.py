"""What a client does with the global model: honest training, or an attack.

An attack is a behaviour with the same inputs and the same reply shape as an
honest client. Data-poisoning attacks only change the local training set;
model-poisoning attacks (later) change the trained weights via
:meth:`Behaviour.craft`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clients.poisoning import attack_active, flip_map, poison_labels
from fl_poison.config import Config


@dataclass
class Behaviour:
    """Honest training: the local data as it is."""

    cid: int
    config: Config

    @property
    def malicious(self) -> bool:
        return False

    def training_set(self, x: torch.Tensor, y: torch.Tensor, server_round: int) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def craft(self, state: dict[str, np.ndarray], global_state: dict[str, np.ndarray],
              server_round: int) -> dict[str, np.ndarray]:
        """Post-training change of the weights; honest clients send what they trained."""
        return state


@dataclass
class LabelFlipper(Behaviour):
    """Targeted (source -> target) or untargeted flipping, inside the attack window only."""

    num_classes: int = 10

    @property
    def malicious(self) -> bool:
        return True

    def active(self, server_round: int) -> bool:
        c = self.config
        return attack_active(server_round, c["attack-start-round"], c["attack-end-round"])

    def training_set(self, x, y, server_round):
        if not self.active(server_round):
            return x, y
        c = self.config
        mapping = None
        if c["attack"] == "untargeted-flip":
            mapping = flip_map(c["flip-map"], self.num_classes, c["seed"])
        rng = np.random.default_rng([c["seed"], server_round, self.cid, 7])
        idx, labels = poison_labels(
            y.numpy(), attack=c["attack"], source=c.source, target=c.target, mapping=mapping,
            injection_rate=c["injection-rate"], rng=rng,
        )
        if len(idx) == 0:  # nothing to poison with (no source examples): train honestly
            return x, y
        idx_t = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        return x[idx_t], torch.from_numpy(np.asarray(labels, dtype=np.int64))


def behaviour_for(config: Config, cid: int, malicious: bool, num_classes: int) -> Behaviour:
    """The behaviour of client ``cid`` under this config."""
    if not malicious or config["attack"] == "none":
        return Behaviour(cid, config)
    if config["attack"] in ("label-flip", "untargeted-flip"):
        return LabelFlipper(cid, config, num_classes=num_classes)
    raise ValueError(f"no client behaviour for attack={config['attack']!r}")
