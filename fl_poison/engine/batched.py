"""A Flower ``Grid`` that trains a round's batchable clients as one vectorised computation.

Why: on a GPU, 100 clients of a few hundred samples each leave the device idle
between tiny kernels when they train one after another;
:func:`fl_poison.batched_training.train_many` trains them together and
reproduces :func:`fl_poison.training.train_local` client by client.

A train message goes batched when its node's behaviour says it may
(:meth:`clients.behaviour.Behaviour.batchable`: the default local work,
i.e. :meth:`~clients.behaviour.Behaviour.round_data`, honest training,
:meth:`~clients.behaviour.Behaviour.finish`). Everything around the training
is the ClientApp's own code (:func:`fl_poison.app.client_app.round_input`,
:func:`~fl_poison.app.client_app.reply_message`, the behaviour's hooks), so the
replies are those the ClientApp sends, up to float rounding of the training.
Every other message (a forged or colluding attack, a query) goes through the
ClientApp as in :class:`~fl_poison.engine.inprocess.InProcessGrid`. This
engine never names an attack.

Clients are trained in chunks that fit ``engine-memory-mb``
(:mod:`fl_poison.engine.memory`); clients sent different global models are
trained in different groups.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Iterable
from uuid import uuid4

import torch
from flwr.app import Message

from fl_poison.app.client_app import Behaviour, RoundInput, received_sample, reply_message, round_input
from fl_poison.batched_training import train_many
from fl_poison.engine import memory
from fl_poison.engine.inprocess import InProcessGrid, error_reply
from fl_poison.training import correct_predictions

TRAIN = "train"


@dataclass
class _Job:
    """One batched client: its message, behaviour, round input and training set."""

    msg: Message
    behaviour: Behaviour
    r: RoundInput
    x: torch.Tensor
    y: torch.Tensor


def _received_scores(model: torch.nn.Module, group: list[_Job]) -> list[float]:
    """Each client's received-model accuracy (:meth:`Behaviour.score_received`'s numbers) from one pass of the
    shared global model over all the clients' scored samples, instead of one small pass per client."""
    samples = [received_sample(j.x, j.y, j.r.config["received-eval-samples"], j.r.seed) for j in group]
    kept = [s for s in samples if s is not None]
    correct = correct_predictions(model, torch.cat([s[0] for s in kept]), torch.cat([s[1] for s in kept])) \
        if kept else None
    scores, start = [], 0
    for s in samples:
        n = 0 if s is None else int(s[1].shape[0])
        scores.append(int(correct[start:start + n].sum()) / n if n else float("nan"))
        start += n
    return scores


def _model_key(r: RoundInput) -> str:
    """Digest of the global model a client received: clients trained together must start from the same one."""
    h = hashlib.sha1()
    for name, a in r.global_state.items():
        h.update(name.encode())
        h.update(a.tobytes())
    return h.hexdigest()


class BatchedGrid(InProcessGrid):
    """:class:`InProcessGrid` whose ``push_messages`` trains the batchable clients of a batch together.

    ``client_app`` receives the messages that are not batched; the batched ones reproduce fl-poison's
    own ClientApp (:mod:`fl_poison.app.client_app`), whose code builds their inputs and replies.
    ``memory_mb`` is the ``engine-memory-mb`` budget (-1 = automatic).
    After each batch, ``last_dispatch`` maps node id -> ``"batched"`` or
    ``"clientapp"`` and ``last_chunks`` lists the chunk sizes trained.
    """

    def __init__(self, client_app, run_config: dict, num_nodes: int, memory_mb: int = -1, run_id: int = 1) -> None:
        super().__init__(client_app, run_config, num_nodes, run_id)
        self.memory_mb = memory_mb
        self.last_dispatch: dict[int, str] = {}
        self.last_chunks: list[int] = []
        self._fixed: dict[tuple[int, ...], int] = {}

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids, jobs = [], []
        self.last_dispatch, self.last_chunks = {}, []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = str(uuid4())
            ids.append(msg.metadata.message_id)
            try:
                job = self._prepare(msg)
            except Exception as exc:  # a crashing client must never crash the server
                self.last_dispatch[msg.metadata.dst_node_id] = "batched"
                self._reply(msg, error_reply(msg, exc))
                continue
            self.last_dispatch[msg.metadata.dst_node_id] = "clientapp" if job is None else "batched"
            if job is None:
                self._replies[msg.metadata.message_id] = self._deliver(msg)
            else:
                jobs.append(job)
        groups: dict[str, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(_model_key(job.r), []).append(job)
        for group in groups.values():
            self._train(group)
        return ids

    def _reply(self, msg: Message, reply: Message) -> None:
        reply.metadata.__dict__["_message_id"] = str(uuid4())
        self._replies[msg.metadata.message_id] = reply

    def _prepare(self, msg: Message) -> _Job | None:
        """The ClientApp's round up to training (round input and training set), or
        ``None`` for a message the ClientApp must handle itself (not a train message, an unknown node, a
        behaviour that is not batchable, augmentation)."""
        context = self._contexts.get(msg.metadata.dst_node_id)
        if context is None or msg.metadata.message_type != TRAIN:
            return None
        behaviour, r = round_input(msg, context)
        if r.augment is not None or not type(behaviour).batchable():
            return None
        x, y = behaviour.round_data(r)
        return _Job(msg, behaviour, r, x, y)

    def _train(self, group: list[_Job]) -> None:
        """Train one group (same global model) chunk by chunk, then finish each client as the ClientApp does."""
        model = copy.deepcopy(group[0].r.model)  # the start of every chunk; each client's own copy gets its result
        settings, sample_shape = group[0].r.settings, tuple(group[0].r.x.shape[1:])
        if sample_shape not in self._fixed:  # measured once per run: the model and settings do not change
            self._fixed[sample_shape] = memory.client_fixed_bytes(model, settings, sample_shape)
        fixed = self._fixed[sample_shape]
        received = _received_scores(model, group)
        budget = memory.budget_bytes(self.memory_mb, next(model.parameters()).device)
        sizes = [int(j.y.shape[0]) for j in group]
        for chunk in memory.chunks(sizes, fixed, memory.sample_bytes(sample_shape), budget):
            part = [group[i] for i in chunk]
            scores = [received[i] for i in chunk]
            self.last_chunks.append(len(part))
            try:
                params, metrics = train_many(model, [(j.x, j.y) for j in part], settings, [j.r.seed for j in part])
            except Exception as exc:  # the chunk's clients get the error reply a crashing ClientApp sends
                for j in part:
                    self._reply(j.msg, error_reply(j.msg, exc))
                continue
            for j, p, (loss, acc), score in zip(part, params, metrics, scores):
                try:
                    self._finish(j, p, loss, acc, score)
                except Exception as exc:
                    self._reply(j.msg, error_reply(j.msg, exc))

    def _finish(self, job: _Job, params: dict[str, torch.Tensor], loss: float, acc: float, received: float) -> None:
        """The client's model takes its trained weights (and buffers); the behaviour and the ClientApp's code build
        the reply."""
        with torch.no_grad():
            for name, p in job.r.model.named_parameters():
                p.copy_(params[name])
            for name, b in job.r.model.named_buffers():  # BatchNorm's running statistics, per client
                if name in params:
                    b.copy_(params[name])
        result = Behaviour.trained_reply(job.r, int(job.y.shape[0]), loss, acc, received)
        self._reply(job.msg, reply_message(job.msg, job.behaviour.finish(job.r, result)))
