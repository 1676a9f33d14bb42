"""run_experiment's bookkeeping: detection credit, weight means per role, last-ten-round summaries."""

from __future__ import annotations

from types import SimpleNamespace
import numpy as np
import pytest
from fl_poison.app.experiment import Experiment
from fl_poison.config import resolve
from fl_poison.metrics.detection import Detection
from fl_poison.results import RunRecorder
from strategies.base import RoundReport
import time
from flwr.clientapp import ClientApp


SMALL = {"dataset": "digits", "num-clients": 4, "clients-per-round": 4, "num-rounds": 1, "seed": 3,
         "figures": False}


# --- 3. detection credits the defense only with what it flagged; invalid replies are counted apart ------
def _experiment(tmp_path, cfg, malicious, report):
    fed = SimpleNamespace(malicious=tuple(malicious))
    strategy = SimpleNamespace(last_report=report)
    rec = RunRecorder(cfg, tmp_path / "run", malicious)
    return Experiment(cfg, fed, strategy, rec, None), rec


def test_detection_counts_only_what_the_defense_judged_and_invalid_replies_apart(tmp_path):
    cfg = resolve({**SMALL, "attack": "label-flip", "source-class": 7, "target-class": 1, "num-malicious": 2})
    rep = RoundReport(server_round=1, clients=[0, 1, 3], kept=[True, False, True], weights=[0.5, 0.0, 0.5],
                      train_loss=[1.0] * 3, train_accuracy=[0.5] * 3, received_accuracy=[0.5] * 3,
                      invalid={2: "crashed"})
    exp, rec = _experiment(tmp_path, cfg, [1, 2], rep)
    out = exp._round_report(1)
    # client 1 flagged (tp), 0 and 3 kept honest (tn); 2 (malicious) crashed: invalid, not the defense's catch
    assert (out["tp"], out["fp"], out["fn"], out["tn"]) == (1, 0, 0, 2)
    assert out["num_selected"] == 4 and out["num_malicious_selected"] == 2 and out["num_invalid"] == 1
    assert out["num_flagged"] == 1 and out["invalid_malicious"] == 1
    assert (rec.detection.tp, rec.detection.tn) == (1, 2)
    assert rec.summary(None)["invalid_replies"] == {"total": 1, "malicious": 1, "rounds": 1}


# --- 11. weight_malicious is the mean weight of the malicious clients ---------------------------------
def test_weight_means_are_split_by_the_run_plan(tmp_path):
    cfg = resolve({**SMALL, "attack": "label-flip", "source-class": 7, "target-class": 1, "num-malicious": 1})
    rep = RoundReport(server_round=1, clients=[0, 1, 2, 3], kept=[True] * 4, weights=[0.1, 0.2, 0.3, 0.4],
                      train_loss=[1.0] * 4, train_accuracy=[0.5] * 4, received_accuracy=[0.5] * 4)
    exp, rec = _experiment(tmp_path, cfg, [3], rep)
    out = exp._round_report(1)
    assert out["weight_malicious"] == pytest.approx(0.4)
    assert out["weight_honest"] == pytest.approx(0.2)
    s = rec.summary(None)
    assert s["detection"]["mean_weight_malicious"] == pytest.approx(0.4)
    assert s["detection"]["mean_weight_honest"] == pytest.approx(0.2)


# --- 12. the summary's last-10 detection covers the last 10 rounds only ---------------------------------
def test_last10_detection_sums_only_the_last_ten_rounds(tmp_path):
    cfg = resolve({**SMALL, "attack": "label-flip", "source-class": 7, "target-class": 1, "num-malicious": 1})
    rec = RunRecorder(cfg, tmp_path / "run", [0])
    rec.add({"round": 0, "accuracy": 0.1})
    for r in range(1, 13):  # rounds 1-2 detect perfectly, rounds 3-12 miss the attacker
        d = Detection(tp=1, fn=0, fp=0, tn=3) if r <= 2 else Detection(tp=0, fn=1, fp=1, tn=2)
        rec.detection = rec.detection + d
        rec.add({"round": r, "accuracy": 0.5, "tp": d.tp, "fp": d.fp, "fn": d.fn, "tn": d.tn})
    det = rec.summary(None)["detection"]
    assert (det["tp"], det["fn"]) == (2, 10)
    assert (det["last10"]["tp"], det["last10"]["fp"], det["last10"]["fn"], det["last10"]["tn"]) == (0, 10, 10, 20)
    assert det["last10"]["recall"] == 0.0


def test_last10_metric_means_use_the_last_ten_rounds(tmp_path):
    cfg = resolve(SMALL)
    rec = RunRecorder(cfg, tmp_path / "run")
    for r in range(0, 13):
        rec.add({"round": r, "accuracy": float(r), "loss": 1.0})
    s = rec.summary(None)
    assert s["last10"]["accuracy"] == pytest.approx(np.mean(range(3, 13)))
    assert s["rounds"] == 12 and s["accuracy"] == 12.0


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


@pytest.mark.slow
def test_simulation_with_too_few_supernodes_fails_in_seconds():
    from fl_poison.app.experiment import wait_for_nodes
    from fl_poison.config import ConfigError, resolve
    from fl_poison.engine.inprocess import inprocess_grid

    cfg = resolve({"num-clients": 3, "clients-per-round": 3})
    grid = inprocess_grid(cfg.to_dict(), 2)  # a simulation of 2 SuperNodes for num-clients=3
    t = time.time()
    with pytest.raises(ConfigError, match="num-supernodes=3"):
        wait_for_nodes(grid, 3, timeout=600, settle=0.5)
    assert time.time() - t < 30
