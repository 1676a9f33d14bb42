"""Forged-update attacks: ``alie``, ``ipm``, ``min-max``, ``min-sum``, ``fang``, ``mimic``, ``sign-flip``, ``gaussian``.

Each is a thin plug-in over :class:`clients.colluding.ForgedUpdate` (honest
training, then the forge) and one pure function of :mod:`clients.forge`,
whose docstring holds the paper and its equations. The colluding ones play
from the adversary's seat on the server (:mod:`fl_poison.adversary`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clients.colluding import KNOWLEDGE, ForgedUpdate
from clients.forge import alie, fang, gaussian, ipm, mimic, min_max, min_sum, sign_flip
from fl_poison.config import Config, ConfigError, Key, above, at_least


ALIE_Z = Key("alie-z", float, -1.0, "ALIE's z (-1 = the paper's z_max from the round's clients and attackers)",
             constraint=at_least(0, float, off=-1, off_means=" for the paper's z_max"))
IPM_EPSILON = Key("ipm-epsilon", float, 0.1, "IPM's epsilon: attackers send -epsilon * mean of the known updates "
                  "(0.1 hides from distance-based rules, 10 flips an average)", constraint=above(0))
PERTURBATION = Key("minmax-perturbation", str, "std", "Min-Max / Min-Sum perturbation direction (inverse unit "
                   "vector, inverse std, inverse sign; Shejwalkar & Houmansadr)", min_max.PERTURBATIONS)
GAMMA_INIT = Key("minmax-gamma-init", float, min_max.GAMMA_INIT, "Min-Max / Min-Sum: first gamma of the halving "
                 "search (it reaches at most twice this)", constraint=above(0))
FANG_VARIANT = Key("fang-variant", str, "auto", "Fang et al.'s attack to run (auto = the one for the defense: "
                   "trimmed-mean for trimmed-mean / median, krum for krum / multi-krum)", ("auto", *fang.VARIANTS))
FANG_DIRECTION = Key("fang-direction", str, "aggregate", "Fang: direction estimate s (aggregate = sign of the "
                     "defense's before-attack aggregate, the paper; mean = sign of the mean, re-implementations)",
                     fang.DIRECTIONS)
FANG_SPACE = Key("fang-space", str, "model", "Fang trimmed-mean attack: apply the sampling rule to local models "
                 "(the paper) or to updates (re-implementations)", fang.SPACES)
FANG_B = Key("fang-b", float, 2.0, "Fang trimmed-mean attack's b (values up to b times the extreme)",
             constraint=above(1))
NOISE_STD = Key("noise-std", float, 200.0, "std of the Gaussian attack's N(0, std^2) update (FLTrust's 200)",
                constraint=gaussian.STD)


class Alie(ForgedUpdate):
    """ALIE: the known mean minus z standard deviations (Baruch et al. 2019)."""

    name = "alie"
    keys = (KNOWLEDGE, ALIE_Z)
    help = "model poisoning: mean - z * std of the known updates (A Little Is Enough, Baruch et al. 2019)"
    forge = staticmethod(alie.forge)

    @classmethod
    def forge_params(cls, config: Config, num_clients: int, global_flat: np.ndarray, knowledge: str) -> dict:
        z = config["alie-z"]
        return {"num_clients": num_clients, "z": None if z == -1 else z}


class Ipm(ForgedUpdate):
    """IPM: minus epsilon times the known mean (Xie et al. 2020)."""

    name = "ipm"
    keys = (KNOWLEDGE, IPM_EPSILON)
    help = "model poisoning: -epsilon * mean of the known updates (inner-product manipulation, Xie et al. 2020)"
    forge = staticmethod(ipm.forge)
    min_known = 1

    @classmethod
    def forge_params(cls, config: Config, num_clients: int, global_flat: np.ndarray, knowledge: str) -> dict:
        return {"epsilon": config["ipm-epsilon"]}


class MinMax(ForgedUpdate):
    """Min-Max: mean + gamma * p, gamma as large as the benign diameter allows (Shejwalkar & Houmansadr 2021)."""

    name = "min-max"
    keys = (KNOWLEDGE, PERTURBATION, GAMMA_INIT)
    help = "model poisoning: mean + gamma * perturbation within the benign diameter (Shejwalkar & Houmansadr 2021)"
    forge = staticmethod(min_max.forge)

    @classmethod
    def forge_params(cls, config: Config, num_clients: int, global_flat: np.ndarray, knowledge: str) -> dict:
        return {"perturbation_kind": config["minmax-perturbation"], "gamma_init": config["minmax-gamma-init"]}


class MinSum(MinMax):
    """Min-Sum: as Min-Max, bounding the sum of squared distances instead."""

    name = "min-sum"
    help = "model poisoning: mean + gamma * perturbation within the benign sums of squared distances (NDSS 2021)"
    forge = staticmethod(min_sum.forge)


class Fang(ForgedUpdate):
    """Fang et al. 2020: the full- / partial-knowledge attack tailored to the defense."""

    name = "fang"
    keys = (KNOWLEDGE, FANG_VARIANT, FANG_DIRECTION, FANG_SPACE, FANG_B)
    help = "model poisoning tailored to trimmed mean / median / Krum (Fang et al., USENIX Security 2020)"
    forge = staticmethod(fang.forge)

    @staticmethod
    def variant(config: Any) -> str | None:
        v = config["fang-variant"]
        return fang.DEFENSE_VARIANTS.get(config["defense"]) if v == "auto" else v

    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        if cls.variant(config) is None:
            raise ConfigError("fang-variant", "auto", f"trimmed-mean or krum: defense={config['defense']} has no "
                              f"Fang et al. variant (auto covers {', '.join(sorted(fang.DEFENSE_VARIANTS))})")

    @classmethod
    def forge_params(cls, config: Config, num_clients: int, global_flat: np.ndarray, knowledge: str) -> dict:
        return {"variant": cls.variant(config), "num_clients": num_clients, "how": config["fang-direction"],
                "partial": knowledge == "own", "b": config["fang-b"], "space": config["fang-space"],
                "offset": global_flat, "trim_beta": config["trim-beta"], "median": config["defense"] == "median"}


class Mimic(ForgedUpdate):
    """Mimic: every attacker copies one benign client's update (Karimireddy et al. 2022)."""

    name = "mimic"
    help = "model poisoning: all attackers copy the benign update furthest along the top variance direction " \
           "(Karimireddy et al. 2022)"
    forge = staticmethod(mimic.forge)
    knows = "benign"
    min_known = 1


class SignFlip(ForgedUpdate):
    """Sign flipping: each attacker sends minus its own honest update (on the client)."""

    name = "sign-flip"
    help = "model poisoning: each attacker sends the negative of its honest update"
    forge = staticmethod(sign_flip.forge)
    knows, colluding, min_known = "own", False, 1


class Gaussian(ForgedUpdate):
    """Gaussian: each attacker sends an N(0, noise-std^2) update (on the client)."""

    name = "gaussian"
    keys = (NOISE_STD,)
    help = "model poisoning: each attacker sends a random N(0, noise-std^2) update"
    forge = staticmethod(gaussian.forge)
    knows, colluding, min_known = "own", False, 1

    @classmethod
    def forge_params(cls, config: Config, num_clients: int, global_flat: np.ndarray, knowledge: str) -> dict:
        return {"std": config["noise-std"]}
