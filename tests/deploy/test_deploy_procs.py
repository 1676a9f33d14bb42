"""`fl-poison deploy down` signals only processes that are provably its federation's.

Real processes stand in for Flower's: a plain ``sleep`` (someone else's
process under a recorded PID) and a python script named ``flower-superlink``
started the way ``up`` starts one (own session, the federation's FLWR_HOME,
its port in the command line), which ``down`` must stop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fl_poison.cli import main
from fl_poison.deploy import PID_FILE, LocalFederation, alive

ADDRESS = "127.0.0.1:19093"
SUPERLINK, SUPERNODE = "flower-superlink", "flower-supernode"


def start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat, read here independently of the code under test."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


@pytest.fixture
def started():
    """Start processes for a test and make sure none outlives it."""
    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], **kw) -> subprocess.Popen:
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw))
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def _record(fed_dir: Path, pids: dict[str, int], started: dict[str, int] | None = None) -> None:
    fed_dir.mkdir(parents=True, exist_ok=True)
    doc = {"address": ADDRESS, "secure": True, "pids": pids}
    if started is not None:
        doc["started"] = started
    (fed_dir / PID_FILE).write_text(json.dumps(doc))


def _fake_superlink(tmp_path: Path, fed_dir: Path, start) -> subprocess.Popen:
    """A process that looks to /proc exactly like the SuperLink `up` starts for ``fed_dir``."""
    script = tmp_path / "bin" / SUPERLINK
    script.parent.mkdir(exist_ok=True)
    script.write_text("import time\ntime.sleep(120)\n")
    env = {**os.environ, "FLWR_HOME": str((fed_dir / "flwr-home").resolve())}
    p = start([sys.executable, str(script), "--host", "127.0.0.1", "--port", ADDRESS.rsplit(":")[1]],
              env=env, start_new_session=True)
    for _ in range(50):  # until exec has replaced the forked interpreter's command line
        if Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")[1:2] == [str(script).encode()]:
            break
        time.sleep(0.05)
    return p


@pytest.mark.parametrize("with_start_time", [True, False])
def test_down_leaves_an_unrelated_process_listed_in_federation_json_running(tmp_path, started, capsys,
                                                                          with_start_time):
    sleeper = started(["sleep", "60"], start_new_session=True)
    fed_dir = tmp_path / "fed"
    ticks = {"node0": start_time(sleeper.pid)} if with_start_time else None
    _record(fed_dir, {"node0": sleeper.pid}, ticks)

    assert main(["deploy", "down", str(fed_dir)]) == 0
    time.sleep(0.3)
    assert sleeper.poll() is None, "down killed a process that is not this federation's"
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert out.out == "stopped nothing\n"
    assert len(err) == 1 and err[0].startswith(f"fl-poison: skipped node0 (PID {sleeper.pid}): "), err
    assert ("'sleep 60', not flower-supernode" if with_start_time else "no start time") in err[0]
    assert json.loads((fed_dir / PID_FILE).read_text())["pids"] == {}  # the stale record is cleared


def test_down_stops_its_own_superlink(tmp_path, started, capsys):
    fed_dir = tmp_path / "fed"
    link = _fake_superlink(tmp_path, fed_dir, started)
    _record(fed_dir, {"superlink": link.pid}, {"superlink": start_time(link.pid)})
    assert main(["deploy", "down", str(fed_dir)]) == 0
    assert link.wait(timeout=15) is not None
    out = capsys.readouterr()
    assert out.out.startswith(f"stopped superlink (PID {link.pid})") and out.err == ""


@pytest.mark.parametrize("tick_offset, reason", [(1, "(the PID was reused)"), (0, "its FLWR_HOME is ")])
def test_down_skips_a_reused_pid_and_a_flower_process_of_another_federation(tmp_path, started, capsys,
                                                                             tick_offset, reason):
    other = tmp_path / "other"
    link = _fake_superlink(tmp_path, other, started)
    fed_dir = tmp_path / "fed"
    _record(fed_dir, {"superlink": link.pid}, {"superlink": start_time(link.pid) + tick_offset})
    assert main(["deploy", "down", str(fed_dir)]) == 0
    time.sleep(0.3)
    assert link.poll() is None
    err = capsys.readouterr().err
    assert reason in err and err.count("\n") == 1
    from fl_poison.deploy_procs import flower_processes_with_home

    assert flower_processes_with_home(str((fed_dir / "flwr-home").resolve())) == []
    assert LocalFederation(other).leftovers() == [link.pid]


def test_a_shell_that_exported_the_federations_flwr_home_is_no_leftover(tmp_path, started):
    home = str((tmp_path / "fed" / "flwr-home").resolve())
    shell = started(["sh", "-c", "sleep 60"], env={**os.environ, "FLWR_HOME": home})
    time.sleep(0.2)
    from fl_poison.deploy_procs import flower_processes_with_home

    assert alive(shell.pid) and flower_processes_with_home(home) == []


def _info(**kw) -> dict:
    """A ProcInfo's fields: a SuperNode of the federation in /f, changed by ``kw``."""
    base = dict(pid=40, argv=("/venv/bin/python", f"/venv/bin/{SUPERNODE}", "--superlink", ADDRESS),
                state="S", pgrp=40, start=777, flwr_home="/f/flwr-home", environ_readable=True)
    return {**base, **kw}


@pytest.mark.parametrize("info, start, reason", [
    (None, 777, "not running"),
    (_info(state="Z"), 777, "not running"),
    (_info(), None, "no start time"),
    (_info(start=778), 777, "the PID was reused"),
    (_info(argv=("/venv/bin/python", f"/venv/bin/{SUPERLINK}", "--port", "19093")), 777, f"not {SUPERNODE}"),
    (_info(argv=("/venv/bin/python", f"/venv/bin/{SUPERNODE}", "--superlink", "127.0.0.1:9")), 777,
     "names neither /f nor 127.0.0.1:19093"),
    (_info(flwr_home="/g/flwr-home"), 777, "its FLWR_HOME is '/g/flwr-home'"),
    (_info(flwr_home=None), 777, "its FLWR_HOME is None"),
    (_info(pgrp=1), 777, "does not lead its own process group"),
])
def test_each_identity_check_refuses_on_its_own(info, start, reason):
    from fl_poison.deploy_procs import ProcInfo, not_ours

    why = not_ours(info and ProcInfo(**info), SUPERNODE, start, "/f/flwr-home", "/f", ADDRESS)
    assert why is not None and reason in why


@pytest.mark.parametrize("info", [
    _info(),
    _info(flwr_home=None, environ_readable=False),  # another user's process: the rest must hold
    _info(argv=("/venv/bin/python", f"/venv/bin/{SUPERNODE}", "--root-certificates", "/f/certs/ca.crt")),
])
def test_this_federations_process_passes_every_check(info):
    from fl_poison.deploy_procs import ProcInfo, not_ours

    assert not_ours(ProcInfo(**info), SUPERNODE, 777, "/f/flwr-home", "/f", ADDRESS) is None


def test_program_is_the_console_script_not_the_interpreter():
    from fl_poison.deploy_procs import program

    assert program(("/v/bin/python3.12", "/v/bin/flower-superexec", "--insecure")) == "flower-superexec"
    assert program(("/v/bin/flwr", "run")) == "flwr"
    assert program(("sleep", "60")) == "sleep" and program(()) == ""
