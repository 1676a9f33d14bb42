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

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FLWR = shutil.which("flwr") or str(Path(sys.executable).parent / "flwr")


@pytest.mark.slow
@pytest.mark.skipif(not Path(FLWR).exists(), reason="flwr CLI not installed")
def test_own_flower_app_swaps_fedavg_for_a_defense_and_reads_its_report(tmp_path):
    """`flwr run . local-sim` of examples/own-flower-app (5 simulated nodes, 3 rounds): multi-Krum flags the noisy one."""
    from fl_poison.deploy import flower_env, processes_with_env

    app = tmp_path / "app"  # a copy: `flwr run` may write into the app folder
    shutil.copytree(EXAMPLES / "own-flower-app", app, ignore=shutil.ignore_patterns("__pycache__"))
    report = tmp_path / "report.json"
    env = flower_env(tmp_path / "flwr-home", pythonpath=ROOT)  # the apps import this checkout's strategies
    env["FLWR_LOG_LEVEL"] = "INFO"  # the app logs its report at INFO (the test session quiets Flower)
    home = Path(env["FLWR_HOME"])
    home.mkdir()  # Flower's config with the example's named local simulation federation, as its README says
    (home / "config.toml").write_text('[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n\n'
                                      + (app / "federation.toml").read_text())
    try:
        proc = subprocess.run([FLWR, "run", ".", "local-sim", "--run-config", f"report-file='{report}'", "--stream"],
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


def _venv_with_this_environment(venv: Path) -> Path:
    """A fresh venv that sees every package of the running one; returns its python.

    ``--system-site-packages`` reaches the *base* interpreter's packages only, not those of the venv the
    tests run in (``.venv``, CI's ``.ci-venv``): a ``.pth`` file adds this environment's site-packages
    after the new venv's own, so fl-poison, torch, flwr, pip and setuptools resolve without a download.
    No pip of its own (``--without-pip``): the one ensurepip bundles comes with an old setuptools that
    would shadow ours and cannot build a wheel without the ``wheel`` package.
    """
    import site
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   capture_output=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    parent = [p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]} if Path(p).is_dir()]
    (Path(purelib) / "parent-environment.pth").write_text("\n".join(sorted(parent)) + "\n")
    return python


def _setuptools_builds_wheels() -> bool:
    """setuptools >= 70.1 builds (editable) wheels itself, without the ``wheel`` package (the dev extra pins it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = (int(x) for x in version("setuptools").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (70, 1)


@pytest.mark.slow
@pytest.mark.skipif(not _setuptools_builds_wheels(), reason="needs setuptools >= 70.1 here (pip install -e '.[dev]')")
def test_plugin_package_adds_an_attack_and_a_defense_through_entry_points(tmp_path):
    """examples/plugin-package installed (editable, offline) into a fresh venv: a 2-round run uses both plug-ins."""
    python = _venv_with_this_environment(tmp_path / "venv")
    pip = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "-e", str(EXAMPLES / "plugin-package")], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # this checkout's core
    run = subprocess.run([str(python), "-m", "fl_poison.cli", "run", "--set", "dataset=digits",
                          "--set", "num-clients=5", "--set", "clients-per-round=5", "--set", "num-rounds=2",
                          "--set", "num-malicious=1", "--set", "attack=mylab-sign-flip", "--set", "flip-factor=4",
                          "--set", "defense=mylab-norm-filter", "--set", "norm-ratio=2", "--set", "figures=false",
                          "--set", "engine-workers=1", "--set", "run-name=plugins", "--out", str(tmp_path / "out")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]

    from fl_poison.results import read_rounds, read_summary

    out = tmp_path / "out" / "plugins"
    summary = read_summary(out)
    assert summary["config"]["attack"] == "mylab-sign-flip" and summary["config"]["defense"] == "mylab-norm-filter"
    assert summary["config"]["flip-factor"] == 4.0 and summary["config"]["norm-ratio"] == 2.0
    rows = [r for r in read_rounds(out) if r["round"] >= 1]
    assert [r["malicious_flip_factor"] for r in rows] == [4.0, 4.0]  # the attack ran and sent its metric
    assert summary["detection"]["recall"] == 1.0  # the defense flagged the reversed, 4x longer update
    defense = [json.loads(line) for line in (out / "defense.jsonl").read_text().splitlines()]
    assert len(defense) == 2 and all(d["info"]["median_norm"] > 0 for d in defense)
    # and the plug-ins are not in this environment: only the venv that installed the package has them
    from fl_poison import plugins

    assert "mylab-sign-flip" not in plugins.plugins("attack")
