"""The parallel in-process engine: same ClientApp, same results, state kept, errors as replies."""

import os

import numpy as np
import pytest
from flwr.app import ConfigRecord, MetricRecord, Message, RecordDict
from flwr.clientapp import ClientApp

from fl_poison.app.experiment import run_experiment
from fl_poison.config import ConfigError, resolve
from fl_poison.engine.inprocess import CLIENT_APP_RAISED_EXCEPTION, FIRST_NODE_ID, InProcessGrid
from fl_poison.engine.parallel import ParallelGrid, close_grid, make_grid, resolve_workers
from fl_poison.federation import federation_for
from fl_poison.results import read_rounds

counting = ClientApp()


@counting.train()
def _count(msg: Message, context) -> Message:
    """Counts its calls in context.state; partition 1 always crashes."""
    if int(context.node_config["partition-id"]) == 1:
        raise RuntimeError("boom")
    n = int(context.state["calls"]["n"]) + 1 if "calls" in context.state else 1
    context.state["calls"] = ConfigRecord({"n": n})
    return Message(RecordDict({"m": MetricRecord({"n": n, "pid": os.getpid()})}), reply_to=msg)


def _round(grid, nodes):
    msgs = [grid.create_message(RecordDict({"c": ConfigRecord({})}), "train", n, "g") for n in nodes]
    return list(grid.send_and_receive(msgs))


def test_state_persists_errors_become_code_2_and_pool_closes():
    grid = make_grid({}, 4, engine_workers=2, client_app=counting)
    assert isinstance(grid, ParallelGrid) and grid.workers == 2
    nodes = [FIRST_NODE_ID + i for i in range(4)]
    try:
        for expected in (1, 2, 3):  # a node's state survives rounds, whichever worker ran it
            replies = _round(grid, nodes)
            assert [r.metadata.reply_to_message_id != "" for r in replies] == [True] * 4
            assert replies[1].has_error() and replies[1].error.code == CLIENT_APP_RAISED_EXCEPTION
            assert "boom" in replies[1].error.reason
            assert [int(r.content["m"]["n"]) for i, r in enumerate(replies) if i != 1] == [expected] * 3
        pids = {int(r.content["m"]["pid"]) for r in replies if not r.has_error()}
        assert os.getpid() not in pids  # the work ran in the workers
        # only the sampled nodes' states advance
        r = _round(grid, [nodes[0]])
        assert int(r[0].content["m"]["n"]) == 4
        assert int(_round(grid, [nodes[2]])[0].content["m"]["n"]) == 4
        processes = list(grid._pool._pool)
    finally:
        close_grid(grid)
        close_grid(grid)  # idempotent
    assert all(not p.is_alive() for p in processes)


def test_make_grid_serial_for_one_worker_and_auto_counts_cores():
    assert type(make_grid({}, 3, engine_workers=1, client_app=counting)) is InProcessGrid
    assert resolve_workers(-1) >= 1 and resolve_workers(3) == 3
    g = make_grid({}, 1, engine_workers=4, client_app=counting)  # never more workers than nodes
    assert type(g) is InProcessGrid


def _experiment(tmp_path, name, workers, **over):
    cfg = resolve({"dataset": "digits", "num-clients": 6, "clients-per-round": 5, "num-rounds": 3, "seed": 5,
                   "figures": False, "attack": "label-flip", "source-class": 7, "target-class": 1,
                   "num-malicious": 2, "defense": "median", "engine-workers": workers, "run-name": name,
                   "device": "cpu", **over})
    federation_for(cfg)
    grid = make_grid(cfg.to_dict(), cfg["num-clients"], cfg["engine-workers"], device=cfg["device"])
    try:
        run_experiment(grid, cfg, out_dir=tmp_path)
    finally:
        close_grid(grid)
    return read_rounds(tmp_path / name), dict(np.load(tmp_path / name / "model.npz"))


@pytest.mark.slow
def test_parallel_equals_serial_and_is_deterministic(tmp_path):
    serial, m_serial = _experiment(tmp_path, "serial", 1)
    two, m_two = _experiment(tmp_path, "two", 2)
    three, m_three = _experiment(tmp_path, "three", 3)
    # per-worker torch threads differ from the serial process's: float tolerance
    for a, b in zip(serial, two):
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=2e-3)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
    for k in m_serial:
        np.testing.assert_allclose(m_two[k], m_serial[k], rtol=1e-4, atol=1e-5)
    # one thread per worker: the number of workers changes nothing, bit for bit
    assert [r["accuracy"] for r in two] == [r["accuracy"] for r in three]
    for k in m_two:
        np.testing.assert_array_equal(m_two[k], m_three[k])


def test_engine_keys_are_validated():
    with pytest.raises(ConfigError, match="engine-workers"):
        resolve({"engine-workers": 0})
    with pytest.raises(ConfigError, match="device"):
        resolve({"device": "gpu"})
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="'device'.*0 CUDA"):
            resolve({"device": "cuda"})
        with pytest.raises(ConfigError, match="device"):
            resolve({"device": "cuda:1"})
    assert resolve({"device": "cpu"})["device"] == "cpu"
