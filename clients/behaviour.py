"""What a client does in a round: honest training by default, an attack where a plug-in overrides it.

One call, :meth:`Behaviour.local_work`, receives everything a round offers
(:class:`RoundInput`: the received global model loaded into an ``nn.Module``
and its arrays, the node's local data, the training settings, the run config,
a seeded generator and a per-node store that persists across rounds) and
returns the reply's content (:class:`LocalResult`). Honest training is the
default implementation; an attack is a subclass that overrides only what it
changes:

* :meth:`Behaviour.training_set` -- data poisoning (what the client trains on);
* :meth:`Behaviour.craft` -- model poisoning (what it sends after training);
* :meth:`Behaviour.local_work` -- anything else (e.g. look at the global model
  before training).

Outside the attack window (``attack-start-round`` .. ``attack-end-round``) a
malicious client behaves exactly like an honest one.

A subclass that sets ``name`` (and optionally ``keys``, its run keys)
registers itself as an attack plug-in (see :mod:`fl_poison.plugins`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from clients.poisoning import attack_active
from clients.store import NodeStore
from fl_poison import plugins
from fl_poison.config import Config, Key
from fl_poison.measurement import NO_OUTPUTS, Measurement, Outputs
from fl_poison.training import TrainSettings, get_state, local_accuracy, train_local


@dataclass
class RoundInput:
    """Everything one client's round offers.

    ``model`` holds the received global weights (a private copy: the behaviour
    may train it in place); ``global_state`` the same weights as arrays
    (``state_dict`` order). ``seed`` is distinct per (run seed, round, client);
    ``rng`` is a numpy generator seeded from it. ``store`` persists across
    rounds on this node, in every engine (Flower's ``Context.state``).
    ``pool``: under ``honest-holds-source=false``, an attacker's pool (the
    samples no honest client holds) it draws its training set from each round.
    """

    cid: int
    server_round: int
    config: Config
    model: nn.Module
    global_state: dict[str, np.ndarray]
    x: torch.Tensor
    y: torch.Tensor
    settings: TrainSettings
    num_classes: int
    seed: int
    rng: np.random.Generator
    store: NodeStore
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    pool: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass
class LocalResult:
    """The reply: the model state to send, its example count and the client-side metrics.

    ``records``: measurement-only ConfigRecords of the reply (e.g. the GAN
    attack's generated preview images); the defense reads only the arrays and
    the metrics, the experiment side may read these.
    """

    state: dict[str, np.ndarray]
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)


def received_sample(x: torch.Tensor, y: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The up to ``n`` seeded local samples the received model is scored on (``None``: scoring off)."""
    if n == 0:
        return None
    if 0 < n < int(y.shape[0]):
        idx = torch.randperm(int(y.shape[0]), generator=torch.Generator().manual_seed(seed))[:n]
        x, y = x[idx], y[idx]
    return x, y


def received_model_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, seed: int) -> float:
    """The received model's accuracy on up to ``n`` seeded local samples (a cheap, unbiased estimate)."""
    sample = received_sample(x, y, n, seed)
    return float("nan") if sample is None else local_accuracy(model, *sample)


class Behaviour:
    """Honest training (``attack=none``, and every client that is not malicious)."""

    name: ClassVar[str] = "none"
    keys: ClassVar[tuple[Key, ...]] = ()
    help: ClassVar[str] = "no attack: every client trains honestly"
    #: False for honest training; True for every attack plug-in.
    malicious: ClassVar[bool] = False
    #: the names this attack's :meth:`measurement` writes (see :class:`fl_poison.measurement.Outputs`)
    outputs: ClassVar[Outputs] = NO_OUTPUTS
    #: False where the behaviour's training must not be batched even with the default local work.
    batch: ClassVar[bool] = True

    def __init__(self, cid: int, config: Config) -> None:
        self.cid, self.config = cid, config

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            plugins.register("attack", cls)

    # --- what a plug-in may declare --------------------------------------------
    @classmethod
    def check_config(cls, config: dict[str, Any], spec: Any) -> None:
        """Relations between run keys this attack needs (raise ConfigError); run before any data loads."""

    @classmethod
    def model_outputs(cls, config: Config, num_classes: int) -> int:
        """Output units of the federation's model under this attack (the GAN attack adds one)."""
        return num_classes

    @classmethod
    def adjust_partitions(cls, config: Config, parts: list[np.ndarray], labels: np.ndarray,
                          malicious: tuple[int, ...]) -> list[np.ndarray]:
        """The run plan's partitions once the attackers are known (the GAN attack takes class G from them).

        Pure: same inputs, same output, on every side of the federation. Raise
        ConfigError when the split cannot serve this attack.
        """
        return parts

    @classmethod
    def colluder(cls, config: Config) -> Any:
        """The server-side half of a colluding attack (a :class:`fl_poison.adversary.Colluder`), or None.

        Returned by attacks that need the round's benign replies; the ServerApp then seats it on its Grid.
        """
        return None

    # --- what the server side measures (the core calls these; it names no attack) ------
    @classmethod
    def measurement(cls, config: Config, fed: Any) -> Measurement | None:
        """The server-side measurements this attack adds to a run (None: the core's alone)."""
        return None

    @classmethod
    def ata_target(cls, config: Config, rows: Sequence[dict[str, Any]]) -> int:
        """The class ATA is measured for, from the trained rounds' rows: the configured target, or -1."""
        return config.target if config.target is not None and config.source is not None else -1

    @classmethod
    def figure_lines(cls, config: Config) -> list[tuple[str, str, str, str | None]]:
        """Extra lines of ``attack.png``: (rounds.csv column, label, style, colour)."""
        return []

    @classmethod
    def report_files(cls, runs: Sequence[dict[str, Any]], out: Path, figures: bool) -> list[Path]:
        """Files a report over ``runs`` (some of them of this attack) gains from it."""
        return []

    # --- the round --------------------------------------------------------------
    def active(self, server_round: int) -> bool:
        """Inside the attack window (always False for honest training)."""
        if not self.malicious:
            return False
        c = self.config
        return attack_active(server_round, c["attack-start-round"], c["attack-end-round"])

    @classmethod
    def batchable(cls) -> bool:
        """True when an engine may run this behaviour's training batched with other clients'.

        Such a behaviour's round is :meth:`round_data`, honest training on it and :meth:`finish`
        (its :meth:`local_work` is the default one), so an engine that trains many clients at once
        and calls those two hooks sends the replies the ClientApp would. A plug-in that overrides
        :meth:`local_work` is never batched; one may also opt out by setting ``batch = False``.
        """
        return cls.batch and cls.local_work is Behaviour.local_work

    @property
    def data_only(self) -> bool:
        """True when only :meth:`training_set` differs from honest training (a narrower case of :meth:`batchable`)."""
        cls = type(self)
        return cls.local_work is Behaviour.local_work and cls.craft is Behaviour.craft

    def training_set(self, r: RoundInput) -> tuple[torch.Tensor, torch.Tensor]:
        """What to train on this round (called inside the attack window only)."""
        return r.x, r.y

    def craft(self, r: RoundInput, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What to send after training (called inside the attack window only)."""
        return state

    def round_data(self, r: RoundInput) -> tuple[torch.Tensor, torch.Tensor]:
        """What this round trains on: :meth:`training_set` inside the attack window, the local data outside."""
        return self.training_set(r) if self.active(r.server_round) else (r.x, r.y)

    def finish(self, r: RoundInput, result: LocalResult) -> LocalResult:
        """The reply after training: :meth:`craft` applied inside the attack window."""
        if self.active(r.server_round):
            result.state = self.craft(r, result.state)
        return result

    def local_work(self, r: RoundInput) -> LocalResult:
        """Train on (possibly poisoned) local data, then send the (possibly crafted) weights."""
        x, y = self.round_data(r)
        return self.finish(r, self.train_and_reply(r, x, y))

    @staticmethod
    def train_and_reply(r: RoundInput, x: torch.Tensor, y: torch.Tensor,
                        scored: tuple[torch.Tensor, torch.Tensor] | None = None) -> LocalResult:
        """Score the received model, train it on ``(x, y)``, and reply with its weights and the client signals.

        ``scored`` is the data the received model is scored on (default ``(x, y)``: what the client
        trains on, possibly relabelled -- FEDn's "training accuracy"). Every attack that trains goes
        through here, so the client-side signals mean the same for all of them.
        """
        received = Behaviour.score_received(r, *(scored if scored is not None else (x, y)))
        loss, acc = train_local(r.model, x, y, r.settings, seed=r.seed, augment=r.augment)
        return Behaviour.trained_reply(r, int(y.shape[0]), loss, acc, received)

    @staticmethod
    def score_received(r: RoundInput, x: torch.Tensor, y: torch.Tensor) -> float:
        """The received model's accuracy on ``(x, y)`` (before training): the client signal every trainer sends."""
        return received_model_accuracy(r.model, x, y, r.config["received-eval-samples"], r.seed)

    @staticmethod
    def trained_reply(r: RoundInput, num_examples: int, loss: float, acc: float, received: float) -> LocalResult:
        """The reply of a client whose ``r.model`` now holds its trained weights (shared by every engine)."""
        return LocalResult(get_state(r.model), num_examples, {
            "train-loss": float(loss), "train-accuracy": float(acc), "received-model-accuracy": received,
        })


plugins.register("attack", Behaviour)  # attack=none: the base class itself


def behaviour_class(config: Config, malicious: bool) -> type[Behaviour]:
    """The class a client runs: the configured attack for malicious clients, honest training otherwise."""
    if not malicious or config["attack"] == "none":
        return Behaviour
    return plugins.get("attack", config["attack"])


def behaviour_for(config: Config, cid: int, malicious: bool) -> Behaviour:
    """The behaviour of client ``cid`` under this config."""
    return behaviour_class(config, malicious)(cid, config)
