"""Real (small) federated runs through the same ServerApp / ClientApp code Flower runs."""

import json

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, RecordDict
from flwr.clientapp import ClientApp

from fl_poison.app import client_app as real
from fl_poison.app.experiment import run_experiment
from fl_poison.cli import main
from fl_poison.config import resolve
from fl_poison.engine.inprocess import inprocess_grid, run_inprocess
from fl_poison.results import read_rounds, read_summary

SMALL = {"dataset": "digits", "num-clients": 6, "clients-per-round": 6, "num-rounds": 3, "seed": 3,
         "figures": False}


def _run(tmp_path, app=real.app, **over):
    cfg = resolve({**SMALL, **over})
    return run_experiment(inprocess_grid(cfg.to_dict(), cfg["num-clients"], app), cfg, out_dir=tmp_path)


@pytest.mark.slow
def test_the_flower_serverapp_runs_in_process(tmp_path):
    """The exact ServerApp `flwr run` starts, driven by the in-process Grid."""
    from fl_poison.app.server_app import app as server_app

    cfg = resolve({**SMALL, "num-rounds": 1, "out-dir": str(tmp_path), "run-name": "sa"})
    run_inprocess(server_app, cfg.to_dict(), cfg["num-clients"])
    assert read_summary(tmp_path / "sa")["rounds"] == 1


@pytest.mark.slow
def test_cli_run_writes_the_result_format(tmp_path):
    rc = main(["run", "--set", "num-clients=5", "--set", "clients-per-round=5", "--set", "num-rounds=4",
               "--set", "run-name=e2e", "--out", str(tmp_path)])
    assert rc == 0
    d = tmp_path / "e2e"
    for f in ("config.json", "rounds.csv", "summary.json", "model.npz", "accuracy_loss.png"):
        assert (d / f).exists(), f
    s = read_summary(d)
    for key in ("config", "rounds", "accuracy", "loss", "per_class_recall", "source_accuracy",
                "attack_success_rate", "last10", "source_accuracy_cv", "wall_seconds"):
        assert key in s
    assert s["rounds"] == 4 and len(s["per_class_recall"]) == 10
    assert s["source_accuracy"] is None and s["attack_success_rate"] is None
    rows = read_rounds(d)
    assert [r["round"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[-1]["accuracy"] > rows[0]["accuracy"] + 0.3  # it actually learns
    assert s["accuracy"] == pytest.approx(rows[-1]["accuracy"])
    assert s["last10"]["accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in rows[1:]]))
    log = [json.loads(line) for line in (d / "defense.jsonl").read_text().splitlines()]
    assert [e["round"] for e in log] == [1, 2, 3, 4] and log[0]["clients"] == [0, 1, 2, 3, 4]
    model = np.load(d / "model.npz")
    assert set(model.files) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}


@pytest.mark.slow
def test_same_config_and_seed_same_numbers(tmp_path):
    a = _run(tmp_path / "a", attack="label-flip", **{"source-class": 7, "target-class": 1,
                                                    "malicious-fraction": 0.34, "clients-per-round": 4})
    b = _run(tmp_path / "b", attack="label-flip", **{"source-class": 7, "target-class": 1,
                                                    "malicious-fraction": 0.34, "clients-per-round": 4})
    ra = read_rounds(tmp_path / "a" / next(p.name for p in (tmp_path / "a").iterdir()))
    rb = read_rounds(tmp_path / "b" / next(p.name for p in (tmp_path / "b").iterdir()))
    drop = {"elapsed"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in ra] == \
           [{k: v for k, v in r.items() if k not in drop} for r in rb]
    assert a["malicious_clients"] == b["malicious_clients"] and len(a["malicious_clients"]) == 2
    c = _run(tmp_path / "c", attack="label-flip", seed=4, **{"source-class": 7, "target-class": 1,
                                                            "malicious-fraction": 0.34, "clients-per-round": 4})
    rc = read_rounds(tmp_path / "c" / next(p.name for p in (tmp_path / "c").iterdir()))
    # the same config with another seed: another initial model, split and sampling, so every round differs
    assert all(x["loss"] != y["loss"] for x, y in zip(ra, rc))


# --- a misbehaving federation: NaN weights, wrong shapes, crashes --------------------------------
bad_app = ClientApp()


@bad_app.query("identify")
def _identify(msg, context):
    return real.identify(msg, context)


@bad_app.train()
def _train(msg, context):
    pid = int(context.node_config["partition-id"])
    if pid == 1:
        raise RuntimeError("client 1 crashed")
    reply = real.train(msg, context)
    arrays = reply.content["arrays"]
    names = list(arrays.keys())
    nps = arrays.to_numpy_ndarrays()
    if pid == 0:
        nps[0] = np.full_like(nps[0], np.nan)
    elif pid == 2:
        nps[1] = np.zeros((3,), dtype=nps[1].dtype)  # wrong shape
    elif pid == 3:
        names, nps = names[:-1], nps[:-1]  # an array missing
    else:
        return reply
    content = RecordDict({"arrays": ArrayRecord({n: Array(a) for n, a in zip(names, nps)}),
                          "metrics": reply.content["metrics"]})
    return Message(content, reply_to=msg)


@pytest.mark.slow
def test_bad_clients_are_dropped_and_the_run_goes_on(tmp_path, caplog):
    s = _run(tmp_path, app=bad_app, **{"num-rounds": 2})
    d = next(tmp_path.iterdir())
    rows = read_rounds(d)
    for r in rows[1:]:
        assert r["num_invalid"] == 4 and r["num_selected"] == 6 and r["updated"] == 1
    assert s["accuracy"] > rows[0]["accuracy"]
    assert "client 1 crashed" in caplog.text or "dropping client 1" in caplog.text


always_bad = ClientApp()


@always_bad.query("identify")
def _identify2(msg, context):
    return real.identify(msg, context)


@always_bad.train()
def _train2(msg, context):
    raise ValueError("nothing works")


@pytest.mark.slow
def test_no_valid_client_keeps_the_global_model(tmp_path):
    s = _run(tmp_path, app=always_bad, **{"num-rounds": 2})
    rows = read_rounds(next(tmp_path.iterdir()))
    assert all(r["updated"] == 0 and r["num_invalid"] == 6 for r in rows[1:])
    assert rows[-1]["accuracy"] == rows[0]["accuracy"]  # model unchanged
    assert s["rounds"] == 2


@pytest.mark.slow
def test_compare_attack_with_baseline(tmp_path, capsys):
    keys = ["--set", "num-clients=4", "--set", "clients-per-round=4", "--set", "num-rounds=2", "--set", "figures=false",
            "--set", "source-class=7", "--set", "target-class=1"]
    assert main(["run", *keys, "--set", "run-name=base", "--out", str(tmp_path)]) == 0
    assert main(["run", *keys, "--set", "attack=label-flip", "--set", "num-malicious=2", "--set", "run-name=att",
                 "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "att"), str(tmp_path / "base")]) == 0
    out = capsys.readouterr().out
    base, att = read_summary(tmp_path / "base"), read_summary(tmp_path / "att")
    expected = att["per_class_recall"][7] - base["per_class_recall"][7]
    assert f"delta source recall  {expected:+.4f}" in out
    assert f"m_cnt(7->1) = {base['confusion_matrix'][7][1]}" in out


def test_availability_sampler_follows_alpha():
    """The ServerApp's sampler with Tolpegin's rule: malicious slots per round ~ alpha * k (bounded)."""
    from types import SimpleNamespace

    from fl_poison.app.experiment import make_sampler

    cfg = resolve({"num-clients": 50, "clients-per-round": 5, "malicious-availability": 0.8, "seed": 1})
    fed = SimpleNamespace(honest=tuple(range(10, 50)), malicious=tuple(range(10)))
    node_of = {c: 1000 + c for c in range(50)}
    sampler = make_sampler(cfg, fed, node_of)
    counts = [sum(n < 1010 for n in sampler(r, list(node_of.values()), 5)) for r in range(1, 1001)]
    assert abs(np.mean(counts) - 0.8 * 5) < 3 * np.sqrt(5 * 0.8 * 0.2 / 1000)
    first, second = make_sampler(cfg, fed, node_of), make_sampler(cfg, fed, node_of)
    assert [first(r, [], 5) for r in range(1, 6)] == [second(r, [], 5) for r in range(1, 6)]  # seeded


def test_datasets_command_lists_files(capsys, shared_data):
    assert main(["datasets", "--set", f"data-dir={shared_data}"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "bundled" in out
    assert f"found in {shared_data / 'mnist'}" in out
    assert "cifar10" in out and "missing data_batch_1" in out


@pytest.mark.slow
def test_attackers_are_honest_outside_their_window(tmp_path):
    """A window that starts after the last round gives exactly the no-attack numbers; inside it, it bites."""
    keys = {"source-class": 7, "target-class": 1, "num-malicious": 3, "clients-per-round": 6}
    late = _run(tmp_path / "late", attack="label-flip", **{**keys, "attack-start-round": 10})
    none = _run(tmp_path / "none", **{"source-class": 7, "target-class": 1, "clients-per-round": 6})
    on = _run(tmp_path / "on", attack="label-flip", **{**keys, "attack-start-round": 2})
    assert late["per_class_recall"] == none["per_class_recall"] and late["loss"] == none["loss"]
    assert on["loss"] != none["loss"]
    on_rows = read_rounds(next((tmp_path / "on").iterdir()))
    none_rows = read_rounds(next((tmp_path / "none").iterdir()))
    # round 1 is before the window: nobody poisons yet, so it is the no-attack round exactly
    assert (on_rows[1]["accuracy"], on_rows[1]["loss"]) == (none_rows[1]["accuracy"], none_rows[1]["loss"])
    assert on_rows[2]["loss"] != none_rows[2]["loss"]


@pytest.mark.slow
def test_detection_summary_overall_and_last10(tmp_path):
    s = _run(tmp_path, attack="label-flip", defense="krum", **{"source-class": 7, "target-class": 1,
                                                             "num-malicious": 2, "num-rounds": 2})
    rows = read_rounds(next(tmp_path.iterdir()))
    det = s["detection"]
    assert det["tp"] == sum(r["tp"] for r in rows[1:]) and det["fp"] == sum(r["fp"] for r in rows[1:])
    assert det["tp"] + det["fn"] == sum(r["num_malicious_selected"] for r in rows[1:]) == 4
    assert det["last10"]["tp"] == det["tp"]  # a 2-round run: the last 10 rounds are all rounds
    # krum keeps exactly one client per round, so it flags 5 of 6
    assert det["tp"] + det["fp"] == 2 * 5
    assert set(s["malicious_source_samples"]) == {str(c) for c in s["malicious_clients"]}


@pytest.mark.slow
def test_flippers_show_in_client_side_accuracy(tmp_path):
    """The blog's signal: the received global model scores far worse on a flipper's (relabelled) data."""
    _run(tmp_path, attack="untargeted-flip", **{"num-malicious": 2, "num-rounds": 3})
    last = read_rounds(next(tmp_path.iterdir()))[-1]
    assert last["honest_received_model_accuracy"] > 0.6
    assert last["malicious_received_model_accuracy"] < 0.3 * last["honest_received_model_accuracy"]
    assert last["malicious_train_accuracy"] < last["honest_train_accuracy"]
