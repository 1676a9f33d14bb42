"""``attack=ada``: the Attacking-Distance-aware Attack (Sun et al., §IV, Algorithms 1-2).

Semi-targeted: the source class is fixed (``source-class``), the target is not
(``target-class`` must stay -1). Each time an attacker trains it looks at the
received global model *before* training and picks the target nearest to the
source (:mod:`clients.target_choice`): ``ada-knowledge=full`` by the attacking
distance of penultimate-layer class means over its local samples,
``ada-knowledge=partial`` by FLAME's last-layer gradient norms over its source
samples. Then it runs train-and-scale (injection-rate flipping to that target,
update shrunk to ``scale-bound``). The chosen target is the reply metric
``ada-target`` (rounds.csv column ``ada_target``).
"""

from __future__ import annotations

from typing import Any

from clients.attacks.label_flip import INJECTION_RATE
from clients.attacks.train_and_scale import SCALE_BOUND, TrainAndScale
from clients.behaviour import RoundInput
from clients.target_choice import choose_target
from fl_poison.config import ConfigError, Key

ADA_KNOWLEDGE = Key("ada-knowledge", str, "full",
                    "ADA's target choice: full = attacking distance of penultimate features; partial = FLAME",
                    ("full", "partial"))
ADA_FLAME_RULE = Key("ada-flame-rule", str, "paper",
                     "FLAME score: paper = norm of the summed CE loss's last-layer gradient (eq. 12-13); "
                     "code = the authors' mean of per-sample BCE gradient norms", ("paper", "code"))


class ADA(TrainAndScale):
    """Choose the target from the received model, then train-and-scale."""

    name = "ada"
    keys = (INJECTION_RATE, SCALE_BOUND, ADA_KNOWLEDGE, ADA_FLAME_RULE)
    help = "Attacking-Distance-aware Attack: target nearest to source-class in the global model, then train-and-scale"
    #: ADA sets only source-class; the core "both or neither" rule does not apply.
    needs_class_pair = False

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        if config["source-class"] < 0:
            raise ConfigError("source-class", config["source-class"],
                              f"attack=ada needs a source class 0..{spec.num_classes - 1}")
        if config["target-class"] >= 0:
            raise ConfigError("target-class", config["target-class"],
                              "-1 for attack=ada (ADA chooses the target itself)")

    def target_for(self, r: RoundInput) -> tuple[int, dict[str, float]]:
        c = self.config
        target, _ = choose_target(r.model, r.x, r.y, c["source-class"], r.num_classes, c["ada-knowledge"],
                                  c["ada-flame-rule"])
        return target, {"ada-target": float(target)}
