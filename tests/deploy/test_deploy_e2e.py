"""A real deployment on loopback: TLS SuperLink with SuperNode authentication, separate SuperNodes.

Each test starts its own SuperLink and SuperNodes (PIDs recorded by
``LocalFederation``) and stops every one of them, checking afterwards that no
process with this test's FLWR_HOME is left.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fl_poison.deploy import (CONNECTION, LocalFederation, NodeSpec, alive, make_certificates, node_config_for,
                              write_connection)

ROOT = Path(__file__).resolve().parents[2]
FLWR = shutil.which("flwr") or str(Path(sys.executable).parent / "flwr")
pytestmark = [pytest.mark.deployment,
              pytest.mark.skipif(not (shutil.which("flower-superlink") or
                                      (Path(sys.executable).parent / "flower-superlink").exists()),
                                 reason="flower-superlink not installed")]

RUN = ("dataset='digits' num-clients=3 clients-per-round=3 attack='label-flip' source-class=3 "
       "target-class=8 defense='lfighter' figures=false received-eval-samples=128 run-name='run' ")


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open())) if path.exists() else []


@pytest.fixture
def federation(tmp_path):
    fed = LocalFederation(tmp_path / "fed", port=_free_port(), pythonpath=ROOT)
    try:
        yield fed
    finally:
        fed.down()
        assert fed.leftovers() == [], "processes of this federation still running"


def test_secured_deployment_label_flip_against_lfighter(federation, tmp_path):
    fed = federation
    make_certificates(fed.certs, 3, extra_nodes=1)
    (tmp_path / "red-team.txt").write_text("# operator's list\nnode2\n")
    nodes = [NodeSpec(f"node{i}", node_config_for(i, 3, i == 2, "digits", None), fed.certs / f"node{i}.key")
             for i in range(3)]
    fed.up(nodes)
    # node3's key is never registered; node4 has no TLS: the SuperLink refuses both, the run goes on
    fed.start_supernode(NodeSpec("unregistered", node_config_for(3, 3, False, "digits", None),
                                 fed.certs / "node3.key"), 3, max_wait=30)
    fed.start_supernode(NodeSpec("plaintext", node_config_for(0, 3, False, "digits", None), None),
                        4, secure=False, max_wait=30)
    out = tmp_path / "results"
    r = fed.run(ROOT, RUN + f"num-rounds=2 out-dir='{out}' red-team-file='{tmp_path / 'red-team.txt'}' round-timeout=120.0",
                timeout=400)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]

    run = out / "run"
    rows = _rows(run / "rounds.csv")
    assert [int(x["round"]) for x in rows] == [0, 1, 2]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["engine"] == "HttpGrid" and summary["rounds"] == 2
    assert summary["malicious_clients"] == [2]
    for row in rows[1:]:
        assert int(row["num_sent"]) == 3 and int(row["replies_missing"]) == 0
        assert int(row["num_selected"]) == 3 and int(row["num_malicious_selected"]) == 1
    defense = [json.loads(line) for line in (run / "defense.jsonl").read_text().splitlines()]
    assert sorted(defense[0]["clients"]) == [0, 1, 2] and defense[0]["malicious_selected"] == [2]
    assert (run / "model.npz").exists() and (run / "config.json").exists()
    # --isolation process (the default): each node's one long-lived ClientApp process served all its messages,
    # importing the app once (later tasks load nothing)
    for i in range(3):
        tasks = [ln for ln in (fed.logs / f"node{i}-clientapp.log").read_text().splitlines()
                 if ln.startswith("warm-clientapp: task")]
        assert len(tasks) >= 3, tasks  # identify + 2 training rounds
        assert all(float(t.split(" load ")[1].split()[0]) < 0.5 for t in tasks[1:]), tasks
        assert alive(fed.pids[f"node{i}-clientapp"])
    _second_run_of_changed_code_restarts_each_clientapp_process(fed, tmp_path)
    # the unregistered and the plain-text SuperNodes were refused and gave up (3 nodes served the run)
    for name in ("unregistered", "plaintext"):
        end = time.time() + 90
        while alive(fed.pids[name]) and time.time() < end:
            time.sleep(1)
        assert not alive(fed.pids[name]), f"{name} SuperNode still trying"
        log = (fed.logs / f"{name}.log").read_text(errors="replace")
        assert "Exit Code: 305" in log and "could not establish a connection to the SuperLink" in log
        # gRPC words a plain-text client against a TLS server either way, depending on timing
        signs = (("Failed to activate SuperNode",) if name == "unregistered" else
                 ("Server disconnected without sending a response", "Connection attempt failed"))
        assert any(s in log for s in signs), log[-500:]
    assert "No SuperNode found with the given public key" in (fed.logs / "superlink.log").read_text()
    # a Control API client without TLS is refused too
    write_connection(fed.home, fed.address, None, name="plain", make_default=False)
    r = subprocess.run([FLWR, "supernode", "list", "plain"], env=fed.env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    r = subprocess.run([FLWR, "supernode", "list", CONNECTION], env=fed.env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0


CHANGED = "fl-poison test: the changed ClientApp code is loaded"


def _changed_app(at: Path) -> Path:
    """This app with one line added to its ClientApp module (a print at import): another FAB, new code."""
    at.mkdir()
    for name in ("pyproject.toml", ".gitignore"):
        shutil.copy(ROOT / name, at / name)
    for package in ("fl_poison", "strategies", "clients"):
        shutil.copytree(ROOT / package, at / package, ignore=shutil.ignore_patterns("__pycache__"))
    with (at / "fl_poison" / "app" / "client_app.py").open("a") as fh:
        fh.write(f"\nprint({CHANGED!r}, flush=True)\n")
    return at


def _second_run_of_changed_code_restarts_each_clientapp_process(fed: LocalFederation, tmp_path: Path) -> None:
    """A second ``flwr run`` with changed code: each node's long-lived ClientApp process must exec itself
    afresh (same PID, so ``deploy down`` still stops it; the new FAB's first task now on its command line)
    and answer with the new code; a process that kept the first FAB's modules would never print CHANGED."""
    pids = {i: fed.pids[f"node{i}-clientapp"] for i in range(3)}
    for pid in pids.values():
        assert "--first-fab" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    before = {i: (fed.logs / f"node{i}-clientapp.log").read_text().count("warm-clientapp: task") for i in range(3)}
    out = tmp_path / "results-changed"
    r = fed.run(_changed_app(tmp_path / "changed-app"),
                RUN.replace("run-name='run'", "run-name='changed'") + f"num-rounds=1 out-dir='{out}' "
                "round-timeout=120.0", timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert [int(x["round"]) for x in _rows(out / "changed" / "rounds.csv")] == [0, 1]
    for i, pid in pids.items():
        assert fed.pids[f"node{i}-clientapp"] == pid and alive(pid)
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        assert argv[argv.index("--first-fab") + 1] and argv.count("--first-fab") == 1, argv
        log = (fed.logs / f"node{i}-clientapp.log").read_text()
        assert log.count(CHANGED) == 1, log[-2000:]  # loaded once: later tasks of that FAB stay in the process
        after = log[log.index(CHANGED):].count("warm-clientapp: task")
        assert after >= 2 and log.count("warm-clientapp: task") == before[i] + after, log[-2000:]  # identify + 1 round


def test_supernode_killed_mid_run_and_late_joiner(federation, tmp_path):
    fed = federation
    fed.isolation = "subprocess"  # Flower's default: a fresh flwr-clientapp per message (still selectable)
    make_certificates(fed.certs, 3)
    nodes = [NodeSpec(f"node{i}", node_config_for(i, 3, False, "digits", None), fed.certs / f"node{i}.key")
             for i in range(3)]
    fed.start_superlink()
    for spec in nodes:
        fed.register(Path(str(spec.key) + ".pub"), spec.name)
    for i in (0, 1):
        fed.start_supernode(nodes[i], i)
    out = tmp_path / "results"
    proc = fed.submit(ROOT, RUN + f"out-dir='{out}' round-timeout=90.0 num-rounds=3")
    try:
        time.sleep(8)
        fed.start_supernode(nodes[2], 2)  # joins after the run was submitted
        csv_path = out / "run" / "rounds.csv"
        end = time.time() + 300
        while len(_rows(csv_path)) < 2 and time.time() < end:  # round 1 done
            assert proc.poll() is None, (fed.logs / "flwr-run.log").read_text()[-2000:]
            time.sleep(0.5)
        fed.stop("node1")
        assert proc.wait(timeout=300) == 0, (fed.logs / "flwr-run.log").read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    rows = _rows(out / "run" / "rounds.csv")
    assert [int(x["round"]) for x in rows] == [0, 1, 2, 3]
    assert int(rows[1]["replies_missing"]) == 0, rows
    lost = [int(x["replies_missing"]) + int(x["replies_error"]) for x in rows[2:]]
    assert all(n >= 1 for n in lost), rows
    summary = json.loads((out / "run" / "summary.json").read_text())
    assert summary["malicious_clients"] is None and summary["detection"] is None  # nodes set roles, no red-team file


def test_up_names_a_supernode_that_exits_at_start_and_stops_the_rest(federation):
    from fl_poison.deploy_checks import DeployError

    fed = federation
    make_certificates(fed.certs, 2)
    (fed.certs / "node1.key").write_text("not a key\n")  # past the checks `deploy up` makes first
    nodes = [NodeSpec(f"node{i}", node_config_for(i, 2, False, "digits", None), fed.certs / f"node{i}.key")
             for i in range(2)]
    with pytest.raises(DeployError) as exc:
        fed.up(nodes)
    assert exc.value.code == 1
    assert str(exc.value).startswith("SuperNode node1 exited during start-up")
    assert str(exc.value).endswith(f"see {fed.logs / 'node1.log'}")
    assert alive(fed.pids["superlink"]) and alive(fed.pids["node0"])  # `deploy up` stops these; the fixture here


def test_cli_up_waits_for_every_supernode_online_and_down_stops_them(tmp_path):
    d, port = tmp_path / "fed", _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "fl_poison.cli", "deploy"]
    try:
        r = subprocess.run([*cli, "up", str(d), "-n", "2", "--port", str(port)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"SuperLink 127.0.0.1:{port} (TLS + SuperNode auth), 2 SuperNodes online")
        fed = LocalFederation(d)
        assert fed.running() == ["superlink", "node0", "node0-clientapp", "node1", "node1-clientapp"]
        assert fed.online_nodes() == 2
        again = subprocess.run([*cli, "up", str(d), "-n", "2", "--port", str(port)], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "lists running processes" in again.stderr
    finally:
        r = subprocess.run([*cli, "down", str(d)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("stopped node0 (PID "), r.stdout + r.stderr
    assert LocalFederation(d).leftovers() == [] and json.loads((d / "federation.json").read_text())["pids"] == {}
