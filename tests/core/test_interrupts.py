"""Ctrl-C and SIGTERM as a terminal and a process manager send them: to the whole process group.

Each child runs in its own session (``start_new_session``) and is signalled with
``os.killpg``, as a terminal signals its foreground job. The child resets SIGINT to
SIG_DFL before it starts: a test suite launched as a background job of a
non-interactive shell inherits SIGINT ignored, and fl-poison keeps an inherited
ignore (a shell's choice), so without the reset these tests would test nothing.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "FLWR_TELEMETRY_ENABLED": "0"}
SWEEP = """[config]
dataset = "digits"
num-clients = 4
clients-per-round = 4
num-rounds = {rounds}
figures = false
[sweep.s]
seeds = [0, 1]
"""


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    """``fl-poison ARGS`` as a terminal's foreground job: its own process group, SIGINT not ignored."""
    return subprocess.Popen([sys.executable, "-m", "fl_poison.cli", *args], cwd=cwd, env=ENV, text=True,
                            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_sigint_default)


def _group(pgid: int) -> list[str]:
    """Processes still in the job's process group or session (pool workers, raylets, Ray workers)."""
    out = subprocess.run(["bash", "-c", f"pgrep -g {pgid} -a; pgrep -s {pgid} -a"], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def _left_after(pgid: int, within: float) -> list[str]:
    """What is still in the group ``within`` seconds on (then killed, so that no test leaves it behind)."""
    deadline = time.time() + within
    while _group(pgid) and time.time() < deadline:
        time.sleep(0.3)
    left = _group(pgid)
    if left:
        os.killpg(pgid, signal.SIGKILL)
    return left


def _wait_for_rounds(pattern: str, rounds: int, p: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None:
        if any(len(Path(f).read_text().splitlines()) > rounds for f in glob.glob(pattern)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no {pattern} with {rounds} rounds (exit {p.poll()})")


def _interrupt(p: subprocess.Popen, sig: int, within: float) -> tuple[int, str]:
    """Signal the whole group; the exit code, stderr, and the group must be empty soon after."""
    os.killpg(p.pid, sig)
    try:
        _, err = p.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise AssertionError(f"still running {within}s after {signal.Signals(sig).name} to the process group")
    left = _left_after(p.pid, 30)  # the sweep waits up to 10 s for Ray's processes, then kills them
    assert not left, f"left running after exit (exit code {p.returncode}): {left}\n{err[-3000:]}"
    return p.returncode, err


CODES = [(signal.SIGINT, 130), (signal.SIGTERM, 143)]


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", CODES)
def test_signal_to_the_group_stops_a_parallel_run_with_its_exit_code(tmp_path, sig, code):
    p = _start(["run", "--set", "engine-workers=2", "--set", "num-clients=4", "--set", "clients-per-round=4",
                "--set", "num-rounds=100000", "--set", "figures=false", "--set", "run-name=r",
                "--out", str(tmp_path)], tmp_path)
    _wait_for_rounds(str(tmp_path / "r" / "rounds.csv"), 2, p)
    rc, err = _interrupt(p, sig, within=30)
    status = json.loads((tmp_path / "r" / "status.json").read_text())
    assert rc == code, err
    assert status["status"] == "interrupted" and status["round"] >= 1
    assert f"interrupted after round {status['round']}; partial results in {tmp_path / 'r'}" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def _sweep_then_resume(tmp_path: Path, sig: int, code: int, extra: list[str], within: float) -> None:
    (tmp_path / "s.toml").write_text(SWEEP.format(rounds=60))
    args = ["sweep", "s.toml", "--out", "out", *extra]
    p = _start(args, tmp_path)
    _wait_for_rounds(str(tmp_path / "out" / "runs" / "*" / "rounds.csv"), 2, p)
    rc, err = _interrupt(p, sig, within=within)
    assert rc == code, err
    assert "INTERRUPTED: run the same command again to resume" in err and "Traceback" not in err
    states = [json.loads(f.read_text())["status"] for f in (tmp_path / "out" / "runs").glob("*/status.json")]
    assert "interrupted" in states and "running" not in states, states
    again = subprocess.run([sys.executable, "-m", "fl_poison.cli", *args], cwd=tmp_path, env=ENV, text=True,
                           capture_output=True, timeout=400, preexec_fn=_sigint_default)
    assert again.returncode == 0, again.stderr
    runs = sorted((tmp_path / "out" / "runs").iterdir())
    assert len(runs) == 2 and all((r / "summary.json").exists() for r in runs)


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", CODES)
def test_signal_to_the_group_stops_a_local_sweep_and_the_same_command_resumes(tmp_path, sig, code):
    _sweep_then_resume(tmp_path, sig, code, ["--local"], within=30)


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", CODES)
def test_signal_to_the_group_stops_a_ray_sweep_and_leaves_no_ray_process(tmp_path, sig, code):
    pytest.importorskip("ray")
    _sweep_then_resume(tmp_path, sig, code, ["--max-parallel", "2"], within=60)


@pytest.mark.slow
def test_a_ray_sweep_killed_with_sigkill_leaves_no_ray_process_and_the_same_command_resumes(tmp_path):
    """kill -9 (or the OOM killer) on the driver alone: no cleanup code of it runs; its node guard ends the node."""
    pytest.importorskip("ray")
    (tmp_path / "s.toml").write_text(SWEEP.format(rounds=60))
    args = ["sweep", "s.toml", "--out", "out", "--max-parallel", "2"]
    p = _start(args, tmp_path)
    _wait_for_rounds(str(tmp_path / "out" / "runs" / "*" / "rounds.csv"), 2, p)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate(timeout=30)
    left = _left_after(p.pid, 30)  # without the guard, Ray's agents outlive their raylet by a minute or more
    assert not left, f"left running 30 s after the driver was killed: {left}"
    again = subprocess.run([sys.executable, "-m", "fl_poison.cli", *args], cwd=tmp_path, env=ENV, text=True,
                           capture_output=True, timeout=400, preexec_fn=_sigint_default)
    assert again.returncode == 0, again.stderr
    runs = sorted((tmp_path / "out" / "runs").iterdir())
    assert len(runs) == 2 and all((r / "summary.json").exists() for r in runs)


# ------------------------------------------------------------------ the rules, in this process


def test_sigterm_raises_terminated_once_and_a_second_signal_is_ignored():
    from fl_poison.interrupts import StopOnSignals, Terminated, exit_code

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as info:
        with StopOnSignals() as stop:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            finally:  # the cleanup a second signal must not abort
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
    assert stop.fired == signal.SIGTERM and exit_code(info.value) == 143
    assert signal.getsignal(signal.SIGTERM) == before


def test_an_inherited_sigint_ignore_is_kept():
    from fl_poison.interrupts import StopOnSignals

    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopOnSignals():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # nothing raised
    finally:
        signal.signal(signal.SIGINT, old)


def _blocking_app():
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def train(msg, context):
        time.sleep(3600)

    return app


def test_interrupted_round_of_the_parallel_grid_terminates_its_workers(server_identity):
    """Ctrl-C reaches the workers too: they ignore it, the parent raises at once and kills the pool."""
    import threading

    from flwr.app import ConfigRecord, RecordDict

    from fl_poison.engine.parallel import ParallelGrid

    old = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever started pytest
    grid = ParallelGrid(_blocking_app(), {}, num_nodes=2, workers=2)
    try:
        workers = list(grid._pool._pool)
        msgs = [grid.create_message(RecordDict({"config": ConfigRecord({})}), "train", n, "1")
                for n in grid.get_node_ids()]

        def ctrl_c():
            time.sleep(1.5)
            for w in workers:
                os.kill(w.pid, signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=ctrl_c, daemon=True).start()
        t0 = time.time()
        with pytest.raises(KeyboardInterrupt):
            grid.push_messages(msgs)
        assert time.time() - t0 < 10
        deadline = time.time() + 5
        while any(w.is_alive() for w in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(w.is_alive() for w in workers)
        assert all(w.exitcode == -signal.SIGKILL for w in workers)  # killed by the parent, not dead of KeyboardInterrupt
    finally:
        signal.signal(signal.SIGINT, old)
        grid.terminate()


# ------------------------------------------------------------------ executor options: one line, exit 2


@pytest.mark.parametrize("args,needle", [
    (["--max-parallel", "-1"], "'--max-parallel': -1 — a positive integer"),
    (["--max-parallel", "0"], "'--max-parallel': 0 — a positive integer"),
    (["--threads", "-1"], "'--threads': -1"),
    (["--resources", "cpus=nan"], "'--resources': 'cpus=nan' — finite"),
    (["--resources", "cpus=inf"], "'--resources': 'cpus=inf' — finite"),
    (["--resources", "gpus=inf"], "'--resources': 'gpus=inf' — finite"),
    (["--address", "127.0.0.1:1"], "nothing answers at 127.0.0.1:1"),
    (["--address", "ray://127.0.0.1:1"], "nothing answers at 127.0.0.1:1"),
    (["--address", "nonsense"], "auto, HOST:PORT"),
])
def test_bad_executor_options_are_one_line_and_exit_2_before_anything_runs(tmp_path, capsys, args, needle):
    from fl_poison.cli import main

    (tmp_path / "s.toml").write_text(SWEEP.format(rounds=1))
    t0 = time.time()
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert time.time() - t0 < 10 and not (tmp_path / "out").exists()


@pytest.mark.slow  # a subprocess that imports Ray: seconds, and under mutmut it would import the mutated copy
def test_address_auto_without_a_cluster_is_one_line_and_exit_2(tmp_path):
    pytest.importorskip("ray")
    (tmp_path / "s.toml").write_text(SWEEP.format(rounds=1))
    env = {**ENV, "RAY_TMPDIR": str(tmp_path / "ray")}  # no ray_current_cluster file: no cluster to find
    env.pop("RAY_ADDRESS", None)
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "fl_poison.cli", "sweep", "s.toml", "--out", "out", "--address", "auto"],
                       cwd=tmp_path, env=env, text=True, capture_output=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "no Ray cluster at auto" in r.stderr and "Traceback" not in r.stderr
    assert time.time() - t0 < 60


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
