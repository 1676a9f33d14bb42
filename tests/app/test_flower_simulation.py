"""`flwr run .` (Flower's own simulation runtime, offline) runs the same apps and writes the same files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fl_poison.results import read_rounds, read_summary

ROOT = Path(__file__).resolve().parents[2]
FLWR = shutil.which("flwr") or str(Path(sys.executable).parent / "flwr")
KEYS = {"dataset": "digits", "num-clients": 3, "clients-per-round": 3, "num-rounds": 2, "seed": 5,
        "attack": "label-flip", "source-class": 7, "target-class": 1, "num-malicious": 1, "defense": "median"}


def _lit(v) -> str:
    return repr(v) if isinstance(v, (int, float)) else f'"{v}"'


def flwr_run_simulation(keys: dict, tmp_path: Path, num_supernodes: int = 3,
                        timeout: float = 300) -> subprocess.CompletedProcess:
    """`flwr run .` offline on Flower's simulation runtime with ``keys`` as run config; stops its local SuperLink.

    `flwr run` leaves the SuperLink it started running: every process carrying this FLWR_HOME is stopped after.
    """
    from fl_poison.deploy import flower_env, processes_with_env

    env = flower_env(tmp_path / "flwr-home")
    run_config = " ".join(f"{k}={_lit(v)}" for k, v in keys.items())
    try:
        return subprocess.run([FLWR, "run", str(ROOT), "--run-config", run_config, "--federation-config",
                               f"num-supernodes={num_supernodes} client-resources-num-cpus=1", "--stream"],
                              env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        for pid in processes_with_env("FLWR_HOME", env["FLWR_HOME"]):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass


@pytest.mark.slow
@pytest.mark.skipif(not Path(FLWR).exists(), reason="flwr CLI not installed")
def test_flwr_run_matches_the_inprocess_engine(tmp_path):
    proc = flwr_run_simulation({**KEYS, "out-dir": str(tmp_path), "run-name": "sim"}, tmp_path)
    sim = tmp_path / "sim"
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for f in ("config.json", "rounds.csv", "summary.json", "model.npz", "accuracy_loss.png", "attack.png"):
        assert (sim / f).exists(), f

    from fl_poison.cli import main

    assert main(["run", *sum((["--set", f"{k}={v}"] for k, v in KEYS.items()), []), "--set", "run-name=inproc",
                 "--out", str(tmp_path)]) == 0
    a, b = read_rounds(sim), read_rounds(tmp_path / "inproc")
    assert [r["round"] for r in a] == [0, 1, 2]
    for ra, rb in zip(a, b):  # same seeds, same clients, same sampling: the same numbers up to float noise
        assert ra["accuracy"] == pytest.approx(rb["accuracy"], abs=2 / 360)
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-3)
    assert read_summary(sim)["malicious_clients"] == read_summary(tmp_path / "inproc")["malicious_clients"]
