"""The examples run as their README says: a user's own Flower app with one of our defenses, a plug-in package."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FLWR = shutil.which("flwr") or str(Path(sys.executable).parent / "flwr")


@pytest.mark.slow
@pytest.mark.skipif(not Path(FLWR).exists(), reason="flwr CLI not installed")
def test_own_flower_app_swaps_fedavg_for_a_defense_and_reads_its_report(tmp_path):
    """`flwr run .` of examples/own-flower-app (simulation, 5 nodes, 3 rounds): multi-Krum flags the noisy node."""
    from fl_poison.deploy import flower_env, processes_with_env

    app = tmp_path / "app"  # a copy: `flwr run` may write into the app folder
    shutil.copytree(EXAMPLES / "own-flower-app", app, ignore=shutil.ignore_patterns("__pycache__"))
    report = tmp_path / "report.json"
    env = flower_env(tmp_path / "flwr-home", pythonpath=ROOT)  # the apps import this checkout's strategies
    env["FLWR_LOG_LEVEL"] = "INFO"  # the app logs its report at INFO (the test session quiets Flower)
    try:
        proc = subprocess.run([FLWR, "run", ".", "--run-config", f"report-file='{report}'", "--federation-config",
                               "num-supernodes=5 client-resources-num-cpus=1", "--stream"],
                              cwd=app, env=env, capture_output=True, text=True, timeout=300)
    finally:  # `flwr run` leaves its local SuperLink running
        for pid in processes_with_env("FLWR_HOME", env["FLWR_HOME"]):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert report.exists(), log[-3000:]
    data = json.loads(report.read_text())
    assert data["defense"] == "multi-krum"
    assert [r["round"] for r in data["rounds"]] == [1, 2, 3]
    for r in data["rounds"]:
        assert r["clients"] == [0, 1, 2, 3, 4]
        assert r["flagged"] == [0]  # the node that sends noise (noisy-client = 0)
        assert r["kept"] == [1, 2, 3, 4]
    assert data["rounds"][-1]["accuracy"] > data["rounds"][0]["accuracy"]
    assert "my-app round 3" in log and "flagged [0]" in log
