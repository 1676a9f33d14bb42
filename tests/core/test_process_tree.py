"""The process tree a sweep ends after ``ray.shutdown()``: found through /proc, waited for, then killed."""

import subprocess
import sys
import time

import pytest

from fl_poison.process_tree import alive, descendants, end, holding_files_under, names, with_argument

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _grandchild_tree():
    """A shell whose background child ignores SIGTERM and would sleep for a minute: a stuck agent."""
    p = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 60 & wait"])
    deadline = time.time() + 10
    while len(descendants()) < 2 and time.time() < deadline:
        time.sleep(0.05)
    return p


def test_descendants_finds_children_and_grandchildren_and_end_kills_what_outlives_the_grace():
    p = _grandchild_tree()
    tree = descendants()
    assert p.pid in tree and len(tree) >= 2
    assert tree.index(p.pid) < max(tree.index(q) for q in tree if q != p.pid)  # nearest first
    t0 = time.monotonic()
    killed = end(tree, grace_s=0.5)
    assert time.monotonic() - t0 >= 0.5
    assert sorted(killed) == sorted(tree)  # nothing exits on its own within the grace
    p.wait(timeout=5)
    time.sleep(0.2)
    assert alive(tree) == []


def test_end_returns_at_once_and_kills_nothing_when_the_processes_have_exited():
    p = subprocess.Popen(["true"])
    p.wait()
    t0 = time.monotonic()
    assert end([p.pid], grace_s=5) == []
    assert time.monotonic() - t0 < 1


def test_a_zombie_counts_as_ended():
    p = subprocess.Popen(["true"])
    time.sleep(0.3)  # exited, not yet waited for: a zombie
    assert alive([p.pid]) == [] and p.pid not in descendants()
    p.wait()


def test_a_process_reparented_away_from_us_is_found_by_the_files_it_holds_and_only_it(tmp_path):
    """An orphan (its parent exited, init adopted it) is no descendant, but keeps its log open."""
    session, other = tmp_path / "session", tmp_path / "other"
    session.mkdir(), other.mkdir()
    orphan = subprocess.run(["bash", "-c", f"sleep 60 >>{session / 'logs'} 2>&1 </dev/null & echo $!"],
                            capture_output=True, text=True, check=True)
    elsewhere = subprocess.Popen(["bash", "-c", f"exec sleep 60 >>{other / 'logs'}"])
    pid = int(orphan.stdout.strip())
    try:
        deadline = time.time() + 5
        while not holding_files_under(other) and time.time() < deadline:
            time.sleep(0.05)
        assert pid not in descendants()
        assert holding_files_under(session) == [pid]  # the process with a file elsewhere is not found
        assert holding_files_under(other) == [elsewhere.pid]
        assert names([pid, elsewhere.pid]) == {"sleep"}
        assert end([pid], grace_s=0.2) == [pid]
        time.sleep(0.2)
        assert holding_files_under(session) == []
    finally:
        elsewhere.kill()
        elsewhere.wait()


def test_a_process_is_found_by_one_word_of_its_command_line_exactly():
    """A worker not yet renamed is found by ``--session-name=S``; a longer name that starts the same is not."""
    sleeper = "import time; time.sleep(60)"
    ours = subprocess.Popen([sys.executable, "-c", sleeper, "--session-name=session_1"])
    other = subprocess.Popen([sys.executable, "-c", sleeper, "--session-name=session_12"])
    try:
        assert with_argument("--session-name=session_1") == [ours.pid]
        assert with_argument("--session-name=session_12") == [other.pid]
        assert with_argument("--session-name=session") == []
    finally:
        for p in (ours, other):
            p.kill()
            p.wait()
    assert with_argument("--session-name=session_1") == []


def test_a_process_that_has_gone_has_no_name():
    p = subprocess.Popen(["true"])
    p.wait()
    assert names([p.pid]) == set()


RAY_NODE = """
import glob, json, subprocess, sys, time
import ray
from fl_poison.process_tree import descendants, names
from fl_poison.ray_node import node_processes, session_dir
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
session = session_dir()
log = sorted(glob.glob(session + "/logs/*.log"))[0]
reader = subprocess.Popen(["tail", "-f", log], stdout=subprocess.DEVNULL)
deadline = time.time() + 60
while not {"ray::DashboardA", "ray::RuntimeEnv"} <= names(descendants()) and time.time() < deadline:
    time.sleep(0.2)
found = node_processes(session)
print(json.dumps({"found": sorted(names(list(found))), "reader": reader.pid in found}))
reader.kill()
ray.shutdown()
"""


@pytest.mark.slow
def test_the_processes_of_a_local_ray_node_are_its_servers_agents_and_workers_not_a_reader_of_its_logs():
    pytest.importorskip("ray")
    import json
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", RAY_NODE], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "PYTHONPATH": str(root), "RAY_USAGE_STATS_ENABLED": "0"})
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"ray::DashboardA", "ray::RuntimeEnv"} <= set(seen["found"]), seen
    # the node's own servers and workers (a worker not yet renamed is "python"), never the reader of a log
    assert all(n.startswith("ray::") or n in {"raylet", "gcs_server", "python"} for n in seen["found"]), seen
    assert not seen["reader"], seen


def _sleeper(*words: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *words])


def _pipe(said: bytes):
    import os

    r, w = os.pipe()
    os.write(w, said)
    os.close(w)
    return os.fdopen(r, "rb")


def test_the_node_guard_ends_the_sessions_processes_only_when_the_driver_closed_its_pipe_without_done(tmp_path):
    from fl_poison.ray_node import DONE, guard

    session = tmp_path / "session_2026-12-06_20-00-00_000000_1"
    session.mkdir()
    worker, bystander = _sleeper(f"--session-name={session.name}"), _sleeper("--session-name=session_other")
    try:
        assert guard(str(session), _pipe(DONE), grace_s=0.2) is False  # the driver ended the node itself
        assert worker.poll() is None
        assert guard(str(session), _pipe(b""), grace_s=0.2) is True  # the driver died: no "done"
        assert worker.wait(timeout=5) == -9 and bystander.poll() is None
    finally:
        worker.kill(), bystander.kill()


def test_the_node_guard_process_ignores_the_jobs_signals_and_exits_when_released(tmp_path):
    import os
    import signal

    from fl_poison.ray_node import NodeGuard

    session = tmp_path / "session_x"
    session.mkdir()
    worker = _sleeper(f"--session-name={session.name}")
    try:
        g = NodeGuard(str(session))
        time.sleep(1.0)  # started and ignoring
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            os.kill(g.pid, sig)
        time.sleep(0.5)
        assert alive([g.pid]) == [g.pid]
        t0 = time.monotonic()
        g.release()
        assert time.monotonic() - t0 < 5 and alive([g.pid]) == [] and worker.poll() is None
    finally:
        worker.kill()
