"""Build Flower reply ``Message``s offline, for differential tests against Flower strategies.

A reply carries ``RecordDict({"arrays": ArrayRecord, "metrics": MetricRecord})``
with ``"num-examples"`` in the metrics, as a ClientApp's train reply does.
Messages are built from explicit ``Metadata`` (run id, source node = the
client, destination = the SuperLink), so no ``TaskIdentity`` / running
ServerApp is needed and no global state is touched.

Flower's robust strategies pop or consume the arrays of the replies they
aggregate: build a fresh list of replies for every ``aggregate_train`` call.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Mapping, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MessageType, Metadata, MetricRecord, RecordDict

RUN_ID = 1
SUPERLINK_NODE_ID = 1


def array_record(arrays: Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> ArrayRecord:
    """``arrays`` as an ``ArrayRecord``: a sequence gets Flower's keys ``"0", "1", ...``; a mapping keeps its
    names (a model's ``state_dict`` keys, which a named ``output_layer`` refers to)."""
    if isinstance(arrays, Mapping):
        return ArrayRecord(OrderedDict((name, Array(np.asarray(a))) for name, a in arrays.items()))
    return ArrayRecord([np.asarray(a) for a in arrays])


def make_reply(
    arrays: Sequence[np.ndarray] | Mapping[str, np.ndarray],
    num_examples: int,
    node_id: int,
    metrics: dict[str, float] | None = None,
) -> Message:
    """A train reply from ``node_id`` carrying ``arrays`` and ``num-examples``.

    ``arrays`` become ``ArrayRecord`` entries ``"0", "1", ...`` (their order is
    kept, dtypes too; a mapping keeps its names); ``metrics`` adds more MetricRecord entries (use the same
    keys for every reply -- Flower checks that they agree).
    """
    record = RecordDict(
        {
            "arrays": array_record(arrays),
            "metrics": MetricRecord({"num-examples": int(num_examples), **(metrics or {})}),
        }
    )
    metadata = Metadata(
        run_id=RUN_ID,
        message_id=f"reply-{node_id}",
        src_node_id=int(node_id),
        dst_node_id=SUPERLINK_NODE_ID,
        reply_to_message_id=f"ins-{node_id}",
        group_id="1",
        created_at=time.time(),
        ttl=3600.0,
        message_type=MessageType.TRAIN,
    )
    return Message(content=record, metadata=metadata)


def make_replies(
    client_arrays: Sequence[Sequence[np.ndarray]],
    num_examples: Sequence[int],
    first_node_id: int = 100,
) -> list[Message]:
    """One reply per client: ``client_arrays[k]`` with ``num_examples[k]`` from node ``first_node_id + k``."""
    return [
        make_reply(arrs, n, first_node_id + k)
        for k, (arrs, n) in enumerate(zip(client_arrays, num_examples, strict=True))
    ]


def arrays_of(record: ArrayRecord) -> list[np.ndarray]:
    """The numpy arrays of an aggregated ``ArrayRecord``, in key order."""
    return [record[key].numpy() for key in record.keys()]


class StubGrid:
    """The one Grid call a strategy's ``configure_train`` makes: the ids of the connected nodes."""

    def __init__(self, nodes):
        self.nodes = list(nodes)

    def get_node_ids(self):
        return self.nodes
