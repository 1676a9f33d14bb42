"""engine=batched: the ClientApp's replies, from one vectorised computation, for every batchable behaviour.

Tolerance (stated once, used everywhere): arrays within ``atol=ATOL, rtol=RTOL``
of the ClientApp's (SGD, momentum, weight decay: measured differences ~1e-7),
train-loss within ``rel=RTOL``, accuracies, scores and example counts equal;
whole runs' rounds.csv metrics within ``METRIC_ABS``. Adam divides each
coordinate's step by the root of its squared-gradient average, so a coordinate
whose gradient is ~0 (a dead ReLU unit) turns a float-rounding difference into a
step of up to ``lr``: its arrays are held to ``ADAM_ATOL`` per coordinate and
``ATOL`` on average.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, RecordDict

from clients.behaviour import behaviour_class
from fl_poison.app.client_app import app as client_app
from fl_poison.app.experiment import run_experiment
from fl_poison.config import DEFAULTS, ConfigError, resolve
from fl_poison.engine import choose, memory
from fl_poison.engine.batched import BatchedGrid
from fl_poison.engine.choose import batch_refusal, choose_engine, grid_for
from fl_poison.engine.inprocess import FIRST_NODE_ID, inprocess_grid
from fl_poison.engine.parallel import close_grid
from fl_poison.federation import federation_for, new_model
from fl_poison.results import read_rounds
from fl_poison.training import TrainSettings, get_state

ATOL, RTOL = 2e-5, 1e-4
ADAM_ATOL = 2e-3
METRIC_ABS = 2e-3
NUM_CLIENTS = 4
BASE = {"dataset": "digits", "num-clients": NUM_CLIENTS, "clients-per-round": NUM_CLIENTS, "train-samples": 320,
        "seed": 3, "figures": False, "device": "cpu", "local-epochs": 2, "batch-size": 16, "num-malicious": 2,
        "received-eval-samples": 40, "attack-start-round": 1}
ATTACKS = {
    "none": {"num-malicious": 0},
    "label-flip": {"source-class": 3, "target-class": 8},
    "untargeted-flip": {"flip-map": "random"},
    "backdoor": {"target-class": 0, "backdoor-boost": 2.0, "trigger-size": 2},
    "scale": {"scale-factor": 3.0, "scale-noise": 0.01},
}
OPTIMIZERS = {
    "sgd": {"optimizer": "sgd", "lr": 0.05},
    "momentum+wd": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight-decay": 1e-3},
    "adam": {"optimizer": "adam", "lr": 0.01, "weight-decay": 1e-4},
}
PARTITIONS = {"iid": {"partition": "iid"}, "dirichlet": {"partition": "dirichlet", "dirichlet-alpha": 0.5}}


def _cfg(attack: str = "none", **over):
    return resolve({**BASE, "attack": attack, **ATTACKS.get(attack, {}), **over})


def _round(grid, cfg, server_round: int = 1, nodes=None):
    """One train round from the initial global model to ``nodes`` (default every node)."""
    arrays = _arrays(cfg)
    nodes = nodes or [FIRST_NODE_ID + i for i in range(cfg["num-clients"])]
    msgs = [grid.create_message(RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": server_round})}),
                                "train", n, "g") for n in nodes]
    return list(grid.send_and_receive(msgs))


def _arrays(cfg) -> ArrayRecord:
    from fl_poison.app.client_app import to_array_record

    with torch.random.fork_rng(devices=[]):
        return to_array_record(get_state(new_model(cfg)))


def _assert_same_replies(batched, serial, adam: bool = False) -> None:
    assert len(batched) == len(serial)
    for b, s in zip(batched, serial):
        assert not b.has_error() and not s.has_error(), (b.error if b.has_error() else s.error)
        assert b.content.keys() == s.content.keys()
        ba, sa = b.content["arrays"], s.content["arrays"]
        assert list(ba.keys()) == list(sa.keys())
        for x, y in zip(ba.to_numpy_ndarrays(), sa.to_numpy_ndarrays()):
            np.testing.assert_allclose(x, y, atol=ADAM_ATOL if adam else ATOL, rtol=RTOL)
            assert float(np.mean(np.abs(x - y))) <= ATOL
        bm, sm = dict(b.content["metrics"]), dict(s.content["metrics"])
        assert bm.keys() == sm.keys()
        for k in sm:
            if k == "train-loss":
                assert bm[k] == pytest.approx(sm[k], rel=RTOL)
            else:
                assert bm[k] == sm[k] or (np.isnan(bm[k]) and np.isnan(sm[k])), k


def _grids(cfg):
    federation_for(cfg)
    serial = inprocess_grid(cfg.to_dict(), cfg["num-clients"])
    return BatchedGrid(client_app, cfg.to_dict(), cfg["num-clients"]), serial


@pytest.mark.parametrize("partition", PARTITIONS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("attack", ATTACKS)
def test_batched_replies_equal_the_client_apps(attack, optimizer, partition):
    cfg = _cfg(attack, **OPTIMIZERS[optimizer], **PARTITIONS[partition])
    batched, serial = _grids(cfg)
    assert behaviour_class(cfg, True).batchable()
    _assert_same_replies(_round(batched, cfg), _round(serial, cfg), adam=cfg["optimizer"] == "adam")
    assert set(batched.last_dispatch.values()) == {"batched"}
    if partition == "dirichlet":  # different sizes really were trained together
        sizes = {len(p) for p in federation_for(cfg).parts}
        assert len(sizes) > 1


def test_a_cnn_equals_the_client_app(tmp_path, capsys):
    from test_bn_models import _patterns  # the tiny synthetic 28x28 data set of the zoo test

    from fl_poison.data.datasets import clear_cache
    from fl_poison.data.formats import write_idx

    fm = tmp_path / "fashion-mnist"
    fm.mkdir()
    for prefix, seed in (("train", 0), ("t10k", 1)):
        x, y = _patterns(60, 28, 28, 1, seed)
        write_idx(fm / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(fm / f"{prefix}-labels-idx1-ubyte.gz", y)
    clear_cache()
    cfg = _cfg("label-flip", **{"dataset": "fashion-mnist", "data-dir": str(tmp_path), "model": "lfighter-cnn",
                                "num-clients": 3, "clients-per-round": 3, "num-malicious": 1, "local-epochs": 1,
                                "train-samples": 60,
                                **OPTIMIZERS["momentum+wd"]})
    batched, serial = _grids(cfg)
    _assert_same_replies(_round(batched, cfg), _round(serial, cfg))
    # a BatchNorm model: each client's own batch statistics and running statistics, in the replies too
    bn = cfg.replace(model="tolpegin-fmnist-cnn")
    assert batch_refusal(bn.replace(engine="batched")) is None
    batched, serial = _grids(bn)
    _assert_same_replies(_round(batched, bn), _round(serial, bn))
    assert set(batched.last_dispatch.values()) == {"batched"}
    # dropout is refused by name, before training
    drop = cfg.replace(dropout=0.5, engine="batched")
    assert batch_refusal(drop)[0] == "dropout"
    with pytest.raises(ConfigError, match="'dropout'.*Dropout"):
        choose_engine(drop)
    # a budget below one client's measured cost: one line naming the key, exit 2, nothing trained
    with pytest.raises(ConfigError, match="'engine-memory-mb'.*at least"):
        choose_engine(cfg.replace(engine="batched", engine_memory_mb=1))
    from fl_poison.cli import main

    for key, value in (("engine-memory-mb", 1), ("dropout", 0.5)):
        given = {k: v for k, v in cfg.to_dict().items() if v != DEFAULTS[k] and k not in ("out-dir", "run-name")}
        args = [a for k, v in {**given, "engine": "batched", key: value}.items() for a in ("--set", f"{k}={v}")]
        capsys.readouterr()
        assert main(["run", *args, "--out", str(tmp_path / "out")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"fl-poison: error: invalid value for '{key}'"), lines
        assert not list((tmp_path / "out").rglob("rounds.csv"))


def test_dispatch_a_behaviour_with_its_own_local_work_goes_through_the_client_app():
    cfg = _cfg("train-and-scale", **{"source-class": 3, "target-class": 8, "scale-bound": "1.0"})
    assert not behaviour_class(cfg, True).batchable() and behaviour_class(cfg, False).batchable()
    batched, serial = _grids(cfg)
    replies = _round(batched, cfg)
    malicious = {FIRST_NODE_ID + c for c in federation_for(cfg).malicious}
    assert {n for n, how in batched.last_dispatch.items() if how == "clientapp"} == malicious
    assert {n for n, how in batched.last_dispatch.items() if how == "batched"} == \
        {FIRST_NODE_ID + i for i in range(NUM_CLIENTS)} - malicious
    _assert_same_replies(replies, _round(serial, cfg))  # a round mixing both kinds, in message order
    # a query goes through the ClientApp too
    q = batched.create_message(RecordDict({}), "query.identify", FIRST_NODE_ID, "g")
    assert not list(batched.send_and_receive([q]))[0].has_error()
    assert batched.last_dispatch == {FIRST_NODE_ID: "clientapp"}


def test_chunks_fit_the_budget_and_replies_do_not_change(monkeypatch):
    assert memory.chunks([10, 10, 10, 10, 10], 100, 1, 220) == [[0, 1], [2, 3], [4]]
    assert memory.chunks([5, 500, 5], 10, 1, 100) == [[0], [1], [2]]  # an oversized client alone
    assert memory.chunks([], 10, 1, 100) == []
    cfg = _cfg("label-flip", **OPTIMIZERS["adam"], **PARTITIONS["dirichlet"])
    batched, serial = _grids(cfg)
    one = memory.client_fixed_bytes(new_model(cfg), TrainSettings.from_config(cfg), (1, 8, 8))
    largest = max(len(p) for p in federation_for(cfg).parts)
    monkeypatch.setattr(memory, "budget_bytes",
                        lambda mb, device: 2 * (one + largest * memory.sample_bytes((1, 8, 8))))
    _assert_same_replies(_round(batched, cfg), _round(serial, cfg), adam=True)
    assert batched.last_chunks == [2, 2]


def _run(tmp_path, cfg, name):
    cfg = cfg.replace(run_name=name, num_rounds=3)
    federation_for(cfg)
    grid, line = grid_for(cfg)
    try:
        run_experiment(grid, cfg, out_dir=tmp_path)
    finally:
        close_grid(grid)
    return read_rounds(tmp_path / name), line


@pytest.mark.parametrize("attack,over", [("label-flip", {"defense": "median"}),
                                         ("alie", {"defense": "median", "clients-per-round": NUM_CLIENTS})])
def test_a_whole_run_equals_engine_serial(tmp_path, attack, over):
    """rounds.csv of a small run: batched vs serial (alie: a colluding attack through the ClientApp, mixed rounds)."""
    cfg = _cfg(attack, **{**OPTIMIZERS["momentum+wd"], "clients-per-round": 3, **over})
    serial, line_s = _run(tmp_path, cfg.replace(engine="serial"), "serial")
    batched, line_b = _run(tmp_path, cfg.replace(engine="batched"), "batched")
    assert line_s.startswith("engine serial") and line_b.startswith("engine batched")
    assert len(serial) == len(batched) == 4
    for a, b in zip(serial, batched):
        for k, v in a.items():
            if k == "elapsed" or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if isinstance(v, float) and np.isnan(v):
                assert np.isnan(b[k]), k
            else:
                assert b[k] == pytest.approx(v, abs=METRIC_ABS), k


def test_auto_and_bad_input(monkeypatch, capsys):
    cfg = _cfg()
    assert choose_engine(cfg)[0] == "parallel"  # auto on the CPU
    assert choose_engine(cfg.replace(engine_workers=1))[0] == "serial"  # as engine-workers=1 always meant
    assert choose_engine(cfg.replace(engine="serial"))[0] == "serial"
    monkeypatch.setattr(choose, "BATCHED_OPTIMIZERS", ("sgd",))
    with pytest.raises(ConfigError, match="'optimizer'"):
        choose_engine(cfg.replace(engine="batched", optimizer="adam"))
    from fl_poison.cli import main

    if not torch.cuda.is_available():
        assert main(["run", "--set", "engine=batched", "--set", "device=cuda"]) == 2
        assert "'device'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="engine"):
        resolve({"engine": "vectorised"})
    with pytest.raises(ConfigError, match="engine-memory-mb"):
        resolve({"engine-memory-mb": 0})
