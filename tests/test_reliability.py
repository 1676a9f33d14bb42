"""Issue 13: one test (or more) per reliability defect; each fails on the code before the fix."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.clientapp import ClientApp

from flower_replies import make_reply
from strategies import defenses as D


@pytest.fixture(autouse=True)
def _server_identity():
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 0


class _Grid:
    def __init__(self, nodes):
        self.nodes = list(nodes)

    def get_node_ids(self):
        return self.nodes


# ---------------------------------------------------------------- defect 1: BatchNorm buffers

def _bn_global():
    """conv-ish weight, running_mean, running_var, num_batches_tracked (0-d int64), fc weight, fc bias."""
    return [np.zeros((3, 2), np.float32), np.zeros(3, np.float32), np.ones(3, np.float32),
            np.array(4, dtype=np.int64), np.zeros((4, 3), np.float32), np.zeros(4, np.float32)]


BUFFERS = ("1", "2", "3")  # ArrayRecord(list) names arrays "0", "1", ...


def _client(g, shift, counter):
    out = [a + shift if a.dtype.kind == "f" else np.array(counter, dtype=np.int64) for a in g]
    out[1] = g[1] + 10 * shift  # running mean moves with the client
    return out


class _Spy(D.Krum):
    seen: list = []

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        _Spy.seen.append((updates.shape, layout.names))
        return super().aggregate_updates(updates, weights, layout, clients, server_round)


def test_defense_sees_only_trainable_parameters_and_buffers_follow_the_kept_client():
    g = _bn_global()
    s = _Spy(num_byzantine=1, buffer_names=BUFFERS)
    list(s.configure_train(1, ArrayRecord([np.asarray(a) for a in g]), ConfigRecord(), _Grid(range(4))))
    shifts = [0.10, 0.11, 0.12, 5.0]  # client 3 is far away: Krum never picks it
    replies = [make_reply(_client(g, sh, 10 + i), 10 * (i + 1), i) for i, sh in enumerate(shifts)]
    arrays, m = s.aggregate_train(1, replies)
    shape, names = _Spy.seen[-1]
    assert shape == (4, 6 + 12 + 4) and names == ("0", "4", "5")  # no buffer column reached Krum
    chosen = [c for c, k in zip(s.last_report.clients, s.last_report.kept) if k]
    assert len(chosen) == 1 and chosen[0] != 3
    new = [arrays[k].numpy() for k in arrays.keys()]
    np.testing.assert_allclose(new[1], g[1] + 10 * shifts[chosen[0]], rtol=1e-6)
    assert new[3].shape == () and new[3].dtype == np.int64 and int(new[3]) == 10 + chosen[0]


def test_fedavg_buffers_are_the_example_weighted_mean_with_counters_rounded():
    g = _bn_global()
    s = D.FedAvgDefense(buffer_names=BUFFERS)
    list(s.configure_train(1, ArrayRecord([np.asarray(a) for a in g]), ConfigRecord(), _Grid(range(2))))
    arrays, _ = s.aggregate_train(1, [make_reply(_client(g, 0.0, 10), 30, 0),
                                      make_reply(_client(g, 1.0, 13), 10, 1)])
    new = [arrays[k].numpy() for k in arrays.keys()]
    np.testing.assert_allclose(new[1], 0.75 * 0 + 0.25 * 10, rtol=1e-6)
    assert new[3].shape == () and int(new[3]) == 11  # 0.75*10 + 0.25*13 = 10.75 -> 11


def test_buffers_recognised_by_name_when_the_model_does_not_say():
    from fl_poison.updates import buffer_mask

    names = ["c.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert buffer_mask(names).tolist() == [False, False, False, True, True, True]
    assert buffer_mask(names, ["bn.running_var"]).tolist() == [False] * 4 + [True, False]


def test_a_run_where_every_client_is_dropped_says_no_update(tmp_path, caplog):
    from fl_poison.app.experiment import run_experiment
    from fl_poison.config import resolve
    from fl_poison.engine.inprocess import inprocess_grid
    from fl_poison.app import client_app as real

    broken = ClientApp()

    @broken.query("identify")
    def identify(msg, context):
        return real.identify(msg, context)

    @broken.train()
    def train(msg, context):
        raise RuntimeError("boom")

    cfg = resolve({"dataset": "digits", "num-clients": 3, "clients-per-round": 3, "num-rounds": 2,
                   "figures": False, "run-name": "dead"})
    summary = run_experiment(inprocess_grid(cfg.to_dict(), 3, broken), cfg, out_dir=tmp_path)
    assert summary["status"] == "no_update" and "boom" in summary["reason"]
    assert "NO ROUND UPDATED" in caplog.text
