"""A run reports "complete" only when it is a result: an unmoved or a non-finite global model is not one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, RecordDict
from flwr.clientapp import ClientApp

from fl_poison.app import client_app as real
from fl_poison.app.experiment import run_experiment
from fl_poison.cli import main
from fl_poison.config import resolve
from fl_poison.engine.inprocess import inprocess_grid
from fl_poison.results import read_rounds

FAST = ["--set", "num-clients=3", "--set", "clients-per-round=3", "--set", "figures=false", "--set", "engine-workers=1",
        "--set", "received-eval-samples=0"]


def test_an_all_zero_aggregate_leaves_the_model_unchanged():
    from fl_poison.app.experiment import _changed

    a = [np.ones((2, 2), np.float32), np.zeros(3, np.float32)]
    assert not _changed(a, [x + 0.0 for x in a])
    assert not _changed(a, [x - np.float32(1e-30) * x for x in a])  # below float32's resolution near 1
    assert _changed(a, [a[0], a[1] + np.float32(1e-7)])
    assert _changed(None, a)


def test_a_learning_rate_too_small_to_move_float32_weights_is_no_update(tmp_path, capsys):
    code = main(["run", *FAST, "--set", "num-rounds=2", "--set", "lr=1e-30", "--set", "run-name=r",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "the run trained nothing" in err and "exactly zero" in err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "no_update" and "exactly zero" in summary["reason"]
    assert summary["rounds_updated"] == 0
    rows = read_rounds(tmp_path / "r")
    assert [r["updated"] for r in rows[1:]] == [0, 0]
    assert json.loads((tmp_path / "r" / "status.json").read_text())["status"] == "failed"


def test_a_normal_run_counts_every_round_that_moved_the_model(tmp_path):
    assert main(["run", *FAST, "--set", "num-rounds=2", "--set", "run-name=r", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["rounds_updated"] == 2
    assert [r["updated"] for r in read_rounds(tmp_path / "r")[1:]] == [1, 1]


huge = ClientApp()  # every client sends finite weights of 1e30: the average is finite, its outputs overflow


@huge.query("identify")
def _identify(msg, context):
    return real.identify(msg, context)


@huge.train()
def _train(msg, context):
    reply = real.train(msg, context)
    arrays = reply.content["arrays"]
    big = ArrayRecord({n: Array(np.full_like(a, 1e30)) for n, a in zip(arrays.keys(), arrays.to_numpy_ndarrays())})
    return Message(RecordDict({"arrays": big, "metrics": reply.content["metrics"]}), reply_to=msg)


def test_a_model_whose_loss_is_not_finite_stops_the_run_at_once(tmp_path, caplog):
    cfg = resolve({"num-clients": 3, "clients-per-round": 3, "num-rounds": 5, "figures": False,
                   "received-eval-samples": 0, "run-name": "r"})
    summary = run_experiment(inprocess_grid(cfg.to_dict(), 3, huge), cfg, out_dir=tmp_path)
    assert summary["status"] == "non_finite" and summary["reason"].startswith("round 1: ")
    assert "not finite" in summary["reason"] and "NOT FINITE" in caplog.text
    rows = read_rounds(tmp_path / "r")
    assert [r["round"] for r in rows] == [0, 1]  # rounds 2..5 never ran
    assert rows[1]["loss"] is None  # NaN is written as an empty cell
    status = json.loads((tmp_path / "r" / "status.json").read_text())
    assert status["status"] == "failed" and status["round"] == 1


@pytest.mark.slow
def test_a_diverging_learning_rate_ends_with_exit_1_and_says_why(tmp_path, capsys):
    code = main(["run", "--set", "lr=1e8", "--set", "figures=false", "--set", "engine-workers=1", "--set", "run-name=r",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "not a result" in err and "not finite" in err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "non_finite"
    assert len(read_rounds(tmp_path / "r")) - 1 < 10  # stopped before num-rounds
