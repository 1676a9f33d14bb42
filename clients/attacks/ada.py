"""``attack=ada``: the Attacking-Distance-aware Attack (Sun et al., §IV, Algorithms 1-2).

Semi-targeted: the source class is fixed (``source-class``), the target is not
(``target-class`` must stay -1). Each time an attacker trains it looks at the
received global model *before* training and picks the target nearest to the
source (:mod:`clients.target_choice`): ``ada-knowledge=full`` by the attacking
distance of penultimate-layer class means over its local samples,
``ada-knowledge=partial`` by FLAME's last-layer gradient norms over its source
samples. Then it runs train-and-scale (injection-rate flipping to that target,
update shrunk to ``scale-bound``). The chosen target is the reply metric
``ada-target``; the server side (:class:`AdaMeasurement`) writes the round's most
common choice of the attackers as rounds.csv column ``ada_target`` and their
choices to defense.jsonl, and the run's ATA is measured for the class the
attackers chose most often (:meth:`ADA.ata_target`).

The target is chosen on the samples the attacker trains on this round (its
local data, or its drawn set under ``honest-holds-source=false``, true labels).
``ada-target=per-round`` (default) re-chooses it every time the attacker
trains, from the model it received, as Algorithm 1 runs the choice inside each
attacking round; ``ada-target=first`` is the authors' code, which chooses once,
before training: the choice of the attacker's first active round is kept in
its node store and reused.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from clients.attacks.label_flip import INJECTION_RATE
from clients.attacks.train_and_scale import SCALE_BOUND, TrainAndScale
from clients.behaviour import RoundInput
from clients.target_choice import choose_target
from fl_poison.config import Config, ConfigError, Key
from fl_poison.measurement import Measurement, Outputs
from fl_poison.metrics.model_poisoning import most_common_target

ADA_KNOWLEDGE = Key("ada-knowledge", str, "full",
                    "ADA's target choice: full = attacking distance of penultimate features; partial = FLAME",
                    ("full", "partial"))
ADA_FLAME_RULE = Key("ada-flame-rule", str, "paper",
                     "FLAME score: paper = norm of the summed CE loss's last-layer gradient (eq. 12-13); "
                     "code = the authors' mean of per-sample BCE gradient norms", ("paper", "code"))

ADA_TARGET = Key("ada-target", str, "per-round",
                 "when ADA chooses its target: per-round = every attacking round (the paper's Algorithm 1); "
                 "first = at the attacker's first active round, then kept (the authors' code)", ("per-round", "first"))


class AdaMeasurement(Measurement):
    """Each round: the attackers' chosen targets (defense.jsonl) and the most common one (``ada_target``)."""

    def report_entries(self, report: Any, malicious: set[int]) -> tuple[dict[str, Any], dict[str, Any]]:
        choices = {str(c): int(m["ada-target"]) for c, m in zip(report.clients, report.client_metrics)
                   if c in malicious and "ada-target" in m}
        return {"ada_target": most_common_target(choices.values())}, ({"ada_targets": choices} if choices else {})


class ADA(TrainAndScale):
    """Choose the target from the received model, then train-and-scale."""

    name = "ada"
    keys = (INJECTION_RATE, SCALE_BOUND, ADA_KNOWLEDGE, ADA_FLAME_RULE, ADA_TARGET)
    help = "Attacking-Distance-aware Attack: target nearest to source-class in the global model, then train-and-scale"
    #: ADA sets only source-class; the core "both or neither" rule does not apply.
    needs_class_pair = False
    #: ``ada-target`` names a class: summarised per round by the most common value, never a mean
    outputs = Outputs(class_metrics=("ada-target",))

    @classmethod
    def measurement(cls, config: Config, fed: Any) -> AdaMeasurement:
        return AdaMeasurement()

    @classmethod
    def ata_target(cls, config: Config, rows: Sequence[dict[str, Any]]) -> int:
        """The target the attackers chose most often over the trained rounds (-1: none chose)."""
        return most_common_target(r.get("ada_target") for r in rows)

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        if config["source-class"] < 0:
            raise ConfigError("source-class", config["source-class"],
                              f"attack=ada needs a source class 0..{spec.num_classes - 1}")
        if config["target-class"] >= 0:
            raise ConfigError("target-class", config["target-class"],
                              "-1 for attack=ada (ADA chooses the target itself)")

    def target_for(self, r: RoundInput, x: torch.Tensor, y: torch.Tensor) -> tuple[int, dict[str, float]]:
        c = self.config
        kept = r.store.get_values("target") if c["ada-target"] == "first" else None
        if kept is not None:
            target = int(kept["target"])
        else:
            target, _ = choose_target(r.model, x, y, c["source-class"], r.num_classes, c["ada-knowledge"],
                                      c["ada-flame-rule"])
            if c["ada-target"] == "first" and target >= 0:
                r.store.put_values("target", {"target": target, "round": r.server_round})
        return target, {"ada-target": float(target)}
