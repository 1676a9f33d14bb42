"""Reliability: one test (or more) per defect found; each fails on the code with the defect."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.clientapp import ClientApp

from flower_replies import StubGrid as _Grid, make_reply
from strategies import defenses as D

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _server_identity(server_identity):
    """Every test here builds Flower messages (conftest's ``server_identity``)."""


# ---------------------------------------------------------------- BatchNorm buffers

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


# ---------------------------------------------------------------- run directory ownership

FAST = ["--set", "num-clients=3", "--set", "clients-per-round=3", "--set", "num-rounds=1", "--set", "figures=false",
        "--set", "received-eval-samples=0"]


def test_a_used_run_directory_is_refused_unless_overwrite(tmp_path, capsys):
    from fl_poison.cli import main

    d = tmp_path / "x"
    d.mkdir()
    (d / "model.npz").write_text("old")
    assert main(["run", *FAST, "--set", "run-name=x", "--out", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (d / "model.npz").read_text() == "old"
    assert main(["run", *FAST, "--set", "run-name=x", "--out", str(tmp_path), "--overwrite"]) == 0
    assert json.loads((d / "status.json").read_text()) == {"status": "complete", "round": 1}
    assert (d / "summary.json").exists() and not list(d.glob("*.tmp"))
    # generated names hash the config: the same config again is the same directory -> refused
    assert main(["run", *FAST, "--out", str(tmp_path / "gen")]) == 0
    assert main(["run", *FAST, "--out", str(tmp_path / "gen")]) == 2


def test_a_second_writer_is_locked_out(tmp_path):
    import fcntl

    from fl_poison.config import ConfigError
    from fl_poison.results import claim_run_dir

    lock = claim_run_dir(tmp_path / "r")
    with pytest.raises(ConfigError, match="another process holds"):
        claim_run_dir(tmp_path / "r", overwrite=True)
    lock.close()
    claim_run_dir(tmp_path / "r", overwrite=True).close()


def test_summary_is_written_last(tmp_path, monkeypatch):
    from fl_poison import results

    order = []
    real = results.write_json
    monkeypatch.setattr(results, "write_json", lambda p, d: (order.append(p.name), real(p, d)))
    monkeypatch.setattr(results.np, "savez", lambda p, **kw: order.append("model.npz"))
    from fl_poison.cli import main

    assert main(["run", *FAST, "--set", "run-name=o", "--out", str(tmp_path)]) == 0
    assert order.index("summary.json") > order.index("model.npz") and order[-1] == "status.json"


# ---------------------------------------------------------------- interrupts

@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_leaves_partial_results_and_says_so(tmp_path, sig, code):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "fl_poison.cli", "run", "--set", "num-clients=3", "--set", "clients-per-round=3",
           "--set", "num-rounds=500", "--set", "figures=false", "--set", "run-name=i", "--out", str(tmp_path)]
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    d = tmp_path / "i"
    deadline = time.time() + 240
    while time.time() < deadline and not ((d / "rounds.csv").exists() and
                                          len((d / "rounds.csv").read_text().splitlines()) >= 3):
        time.sleep(0.2)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    status = json.loads((d / "status.json").read_text())
    assert status["status"] == "interrupted" and status["round"] >= 1
    assert f"interrupted after round {status['round']}; partial results in {d}" in err
    assert "Traceback" not in err and not list(d.glob("*.tmp")) and not (d / "summary.json").exists()


# ---------------------------------------------------------------- experiment files

@pytest.mark.parametrize("text,needle", [
    ('[confg]\nnum-rounds = 2\n', "[confg]"),
    ('num-rounds = 2\n[config]\nseed = 1\n', "num-rounds"),
])
def test_experiment_file_with_unknown_section_or_stray_key_is_refused(tmp_path, capsys, text, needle):
    from fl_poison.cli import main

    f = tmp_path / "e.toml"
    f.write_text(text)
    assert main(["run", "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert needle in err and str(f) in err


def test_non_utf8_experiment_file_is_refused(tmp_path, capsys):
    from fl_poison.cli import main

    f = tmp_path / "e.toml"
    f.write_bytes(b"[config]\nrun-name = \"caf\xe9\"\n")
    assert main(["run", "--config", str(f)]) == 2
    assert "UTF-8" in capsys.readouterr().err


# ---------------------------------------------------------------- bad input: one line, exit 2

@pytest.mark.parametrize("args,needle", [
    (["--set", "lr=inf"], "'lr'"),
    (["--set", "lr=nan"], "'lr'"),
    (["--set", "momentum=-inf"], "'momentum'"),
    (["--set", "run-name=../escape"], "'run-name'"),
    (["--set", "run-name=a/b"], "'run-name'"),
    (["--out", ""], "'--out'"),
    (["--set", "model=resnet18"], "16x16"),
    (["--set", "defense=krum", "--set", "num-clients=2", "--set", "clients-per-round=2"], "at least 3"),
    (["--set", "partition=dirichlet", "--set", "dirichlet-alpha=1e-6"], "'dirichlet-alpha'"),
    (["--set", "num-clients=2000", "--set", "clients-per-round=2"], "'num-clients'"),
    (["--set", "partition=extreme", "--set", "train-samples=12"], "'train-samples'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, needle):
    from fl_poison.cli import main

    if "--out" not in args:
        args = [*args, "--out", str(tmp_path)]
    assert main(["run", "--set", "num-rounds=1", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_out_that_is_a_file_fails_before_loading_data(tmp_path, capsys, monkeypatch):
    from fl_poison import federation
    from fl_poison.cli import main

    monkeypatch.setattr(federation, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the check"))
    f = tmp_path / "file"
    f.write_text("")
    assert main(["run", "--out", str(f)]) == 2
    assert "this path is a file" in capsys.readouterr().err


def test_attack_that_can_never_act_warns(tmp_path, capsys):
    from fl_poison.cli import main

    assert main(["run", *FAST, "--set", "attack=untargeted-flip", "--set", "attack-start-round=5",
                 "--set", "malicious-fraction=0.4", "--out", str(tmp_path)]) == 0
    assert "attack never acts" in capsys.readouterr().err
    assert main(["run", *FAST, "--set", "attack=untargeted-flip", "--set", "run-name=n",
                 "--out", str(tmp_path)]) == 0
    assert "no client is malicious" in capsys.readouterr().err


def test_train_samples_above_the_data_warns(tmp_path, caplog, monkeypatch):
    from fl_poison import federation
    from fl_poison.cli import main

    monkeypatch.setattr(federation, "_cache", {})  # the warning comes when the split is built, once per process

    assert main(["run", *FAST, "--set", "train-samples=100000", "--out", str(tmp_path)]) == 0
    assert "using all" in caplog.text


def test_compare_refuses_non_runs_and_different_datasets(tmp_path, capsys):
    from fl_poison.cli import main

    assert main(["compare", str(tmp_path), str(tmp_path / "nope")]) == 2
    assert "not a finished run directory" in capsys.readouterr().err
    for name, ds in (("a", "digits"), ("b", "mnist")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"config": {"dataset": ds}}))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "different data sets" in capsys.readouterr().err


# ---------------------------------------------------------------- too few SuperNodes

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


def test_serverapp_config_error_is_one_logged_line(caplog):
    from fl_poison.app.server_app import app as server_app
    from fl_poison.engine.inprocess import run_inprocess

    run_inprocess(server_app, {"num-clients": 3, "clients-per-round": 5}, 3)
    assert "fl-poison: error: invalid value for 'clients-per-round'" in caplog.text


# ---------------------------------------------------------------- also: FL_POISON_DATA

def test_fl_poison_data_replaces_the_default_data_dir(monkeypatch, capsys, shared_data):
    from fl_poison.cli import main
    from fl_poison.data.datasets import resolve_data_dir

    monkeypatch.setenv("FL_POISON_DATA", str(shared_data))
    assert resolve_data_dir("data") == shared_data
    assert resolve_data_dir("elsewhere") == Path("elsewhere")
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "from $FL_POISON_DATA" in out
    assert [l for l in out.splitlines() if l.startswith("mnist ")][0].count("found in") == 1


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_out_dir_that_cannot_be_created_is_a_config_error_even_for_root():
    """os.access says "writable" to root for /proc; the probe must still refuse before any training."""
    from fl_poison.config import ConfigError
    from fl_poison.results import check_run_dir

    with pytest.raises(ConfigError) as err:
        check_run_dir(Path("/proc/fl-poison-test/run"))
    assert err.value.key == "--out" and "can be created" in str(err.value)
