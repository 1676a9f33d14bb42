"""The shared half of every forged-update attack (ALIE, IPM, Min-Max, Min-Sum, Fang, mimic, sign-flip, Gaussian).

A malicious client trains honestly on its own data. Inside the attack window
a *colluding* attack's client then asks for the adversary's seat (reply metric
:data:`fl_poison.adversary.MARKER`): once the round's replies are in,
:class:`ForgeColluder` stacks the known updates, calls the attack's pure
``forge`` (:mod:`clients.forge`) and sends each attacker's forged update in
place of its honest one. A non-colluding one (sign-flip, Gaussian) forges
from its own update on the client. Outside the window every attacker is
honest and unmarked.

What the attackers know (``adversary-knowledge``):

* ``omniscient`` -- every honestly trained update of the round: the benign
  clients' and the attackers' own (the full-knowledge setting of Fang et al.
  and of Shejwalkar & Houmansadr, whose code feeds all clients' benign
  updates to the attack; ALIE's mean and std likewise);
* ``own`` -- only the attackers' own honest updates (the partial-knowledge
  setting: Fang et al.'s "partial knowledge", ALIE's estimate from the
  corrupted workers' data).

Only trainable floating-point arrays are forged; buffers (BatchNorm's running
statistics and counters, :func:`fl_poison.updates.buffer_mask`) stay the
malicious client's own. An attack that needs a spread (a standard deviation,
distances) and knows fewer than 2 updates logs a warning and leaves the
round's replies honest.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, ClassVar

import numpy as np

from clients.behaviour import Behaviour, LocalResult, RoundInput
from fl_poison.adversary import MARKER
from fl_poison.config import Config, Key
from fl_poison.updates import buffer_mask

log = logging.getLogger("fl_poison.colluding")

State = dict[str, np.ndarray]

KNOWLEDGE = Key("adversary-knowledge", str, "omniscient",
                "what colluding model-poisoning attackers know each round: omniscient = every honest update of the "
                "round (benign clients' and their own), own = only their own honest updates (partial knowledge)",
                ("omniscient", "own"))


def forged_names(state: State) -> list[str]:
    """The arrays a forge rewrites: floating-point and not a buffer, in ``state`` order."""
    names = list(state)
    buffers = buffer_mask(names)
    return [n for n, b in zip(names, buffers) if not b and np.asarray(state[n]).dtype.kind == "f"]


def updates_of(states: list[State], global_state: State, names: list[str]) -> np.ndarray:
    """``[len(states), P]``: each state's ``local - global`` over ``names``, flattened (float64)."""
    p = sum(int(np.size(global_state[n])) for n in names)
    out = np.empty((len(states), p), dtype=np.float64)
    for i, s in enumerate(states):
        out[i] = np.concatenate([(np.asarray(s[n], np.float64) - np.asarray(global_state[n], np.float64)).ravel()
                                 for n in names]) if names else np.empty(0)
    return out


def with_update(row: np.ndarray, own: State, global_state: State, names: list[str]) -> State:
    """``own`` with the arrays ``names`` replaced by ``global + row`` (each in its shape and dtype)."""
    out, at = dict(own), 0
    for n in names:
        g = np.asarray(global_state[n])
        size = int(g.size)
        out[n] = (g.astype(np.float64) + row[at:at + size].reshape(g.shape)).astype(np.asarray(own[n]).dtype)
        at += size
    return out


class ForgedUpdate(Behaviour):
    """Base of the forged-update attacks: honest training, then the attack's ``forge`` over the known updates.

    A subclass sets ``name``, ``keys``, ``help``, the pure function ``forge``
    and, where the forge needs run keys, :meth:`forge_params`. ``knows``:
    ``"config"`` (``adversary-knowledge`` decides), ``"benign"`` (only the
    benign clients' updates: mimic copies one of them) or ``"own"`` (each
    attacker its own update, forged on the client: ``colluding = False``).
    """

    malicious = True
    forge: ClassVar[Callable[..., np.ndarray]]
    knows: ClassVar[str] = "config"
    colluding: ClassVar[bool] = True
    #: fewest known updates the forge can work with (2 where it needs a spread)
    min_known: ClassVar[int] = 2

    @classmethod
    def forge_params(cls, config: Config, num_clients: int, global_flat: np.ndarray, knowledge: str) -> dict[str, Any]:
        """Keyword arguments of ``forge`` from the run keys and the round (none by default)."""
        return {}

    @classmethod
    def colluder(cls, config: Config) -> "ForgeColluder | None":
        return ForgeColluder(cls, config) if cls.colluding else None

    @classmethod
    def knowledge(cls, config: Config) -> str:
        """``omniscient`` / ``own`` / ``benign``: which updates this run's forge sees."""
        return config["adversary-knowledge"] if cls.knows == "config" else cls.knows

    @classmethod
    def forge_round(cls, config: Config, global_state: State, own: list[State], benign: list[State],
                    rng: np.random.Generator, server_round: int) -> list[tuple[State, dict[str, float]]] | None:
        """The forged ``(state, extra metrics)`` of each attacker, or None when too few updates are known."""
        names = forged_names(global_state)
        knowledge = cls.knowledge(config)
        mine = updates_of(own, global_state, names)
        others = updates_of(benign, global_state, names)
        known = {"own": mine, "benign": others}.get(knowledge, np.vstack([others, mine]))
        if known.shape[0] < cls.min_known:
            log.warning("attack=%s, round %d: %d known update(s) (knowledge: %s), %s needs %d: "
                        "the attackers send their honest updates this round", cls.name, server_round,
                        known.shape[0], knowledge, cls.name, cls.min_known)
            return None
        report: dict[str, float] = {}
        global_flat = np.concatenate([np.asarray(global_state[n], np.float64).ravel() for n in names]) \
            if names else np.empty(0)
        params = cls.forge_params(config, len(own) + len(benign), global_flat, knowledge)
        forged = cls.forge(known, len(own), rng, report=report, **params)
        return [(with_update(row, state, global_state, names),
                 {"forged": 1.0, "forged-norm": float(np.linalg.norm(row)), "known-updates": float(known.shape[0]),
                  **report}) for row, state in zip(forged, own)]

    def local_work(self, r: RoundInput) -> LocalResult:
        result = self.train_and_reply(r, r.x, r.y)
        if not self.active(r.server_round):
            return result
        if self.colluding:
            result.metrics[MARKER] = 1.0
            return result
        out = self.forge_round(self.config, r.global_state, [result.state], [], r.rng, r.server_round)
        if out is not None:
            result.state = out[0][0]
            result.metrics.update(out[0][1])
        return result


class ForgeColluder:
    """The seat's half: forge every asking attacker's update from the round's known updates.

    The generator is seeded from (run seed, round), so a run forges the same
    updates in every engine.
    """

    def __init__(self, attack: type[ForgedUpdate], config: Config) -> None:
        self.attack, self.config = attack, config

    def replace(self, server_round: int, global_state: State, malicious: list[tuple[State, dict]],
                benign: list[State]) -> list[tuple[State, dict]]:
        rng = np.random.default_rng([int(self.config["seed"]), int(server_round), 0xF0F6])
        out = self.attack.forge_round(self.config, global_state, [s for s, _ in malicious], benign, rng,
                                      server_round)
        if out is None:
            return [(s, {**m, "forged": 0.0}) for s, m in malicious]
        return [(state, {**m, **extra}) for (state, extra), (_, m) in zip(out, malicious)]
