"""Which live processes provably belong to one local federation (Linux ``/proc``).

Why: ``federation.json`` is a plain file. After a reboot its PIDs may belong
to anything, and a hand-edited or copied file may name any process. Before a
signal is sent, a recorded PID must still be the very process ``up`` started:
the same start time (``/proc/PID/stat`` field 22, clock ticks since boot, which
a recycled PID cannot repeat), the expected Flower program, an argument naming
this federation's folder or SuperLink port, this federation's ``FLWR_HOME``
where the environment is readable, and leadership of its own process group
(``up`` starts each process in a session of its own and stops it by group).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
SUPERLINK, SUPERNODE = "flower-superlink", "flower-supernode"
#: the long-lived ClientApp process ``up`` starts beside a SuperNode run with ``--isolation process``
WARM = "warm_clientapp.py"


@dataclass(frozen=True)
class ProcInfo:
    """What ``/proc`` tells about one process."""

    pid: int
    argv: tuple[str, ...]
    state: str
    pgrp: int
    start: int
    flwr_home: str | None  # None: environment not readable (another user's process) or no FLWR_HOME
    environ_readable: bool


def _stat_fields(pid: int, proc: Path = PROC) -> list[str]:
    """``/proc/PID/stat`` from field 3 on: the command name in parentheses may hold spaces and ')'."""
    return (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def start_time(pid: int, proc: Path = PROC) -> int | None:
    """Field 22 of ``/proc/PID/stat`` (start time after boot, in clock ticks); None if no such process."""
    try:
        return int(_stat_fields(pid, proc)[19])
    except (OSError, IndexError, ValueError):
        return None


def proc_info(pid: int, proc: Path = PROC) -> ProcInfo | None:
    """The process ``pid`` as ``/proc`` shows it, or None when there is none."""
    try:
        fields = _stat_fields(pid, proc)
        argv = tuple(a.decode(errors="replace") for a in (proc / str(pid) / "cmdline").read_bytes().split(b"\0") if a)
    except (OSError, IndexError):
        return None
    home, readable = None, True
    try:
        for item in (proc / str(pid) / "environ").read_bytes().split(b"\0"):
            if item.startswith(b"FLWR_HOME="):
                home = item[len(b"FLWR_HOME="):].decode(errors="replace")
    except PermissionError:
        readable = False
    except OSError:
        return None
    return ProcInfo(pid, argv, fields[0], int(fields[2]), int(fields[19]), home, readable)


def program(argv: tuple[str, ...]) -> str:
    """The program a command line runs: a console script's name, not the interpreter running it."""
    names = [os.path.basename(a) for a in argv[:2]]
    if len(names) == 2 and names[0].startswith("python"):
        return names[1]
    return names[0] if names else ""


def is_flower_program(argv: tuple[str, ...]) -> bool:
    """flower-superlink / -supernode / -superexec, flwr-serverapp / -clientapp, flwr itself, our warm ClientApp."""
    name = program(argv)
    return name.startswith("flower-") or name in ("flwr", WARM) or name.startswith("flwr-")


def not_ours(info: ProcInfo | None, expected_program: str, recorded_start: int | None, flwr_home: str,
             folder: str, address: str) -> str | None:
    """Why process ``info`` is not the one this federation started (None: it provably is).

    ``folder`` is the federation folder and ``address`` its SuperLink's
    ``127.0.0.1:PORT``; one of them must appear in the command line (the
    SuperLink's as ``--port PORT``).
    """
    if info is None or info.state in ("Z", "X"):
        return "not running"
    if recorded_start is None:
        return "federation.json records no start time for it, so it cannot be told from a reused PID"
    if info.start != recorded_start:
        return (f"it started at tick {info.start}, not at tick {recorded_start} as recorded "
                "(the PID was reused)")
    if program(info.argv) != expected_program:
        return f"its command line is {' '.join(info.argv)[:120]!r}, not {expected_program}"
    port = address.rsplit(":", 1)[-1]
    folder_prefix = folder.rstrip("/") + "/"
    names_us = any(a.startswith(folder_prefix) or a == address for a in info.argv) or any(
        a == "--port" and b == port for a, b in zip(info.argv, info.argv[1:]))
    if not names_us:
        return f"its command line names neither {folder} nor {address}"
    if info.environ_readable and info.flwr_home != flwr_home:
        return f"its FLWR_HOME is {info.flwr_home!r}, not {flwr_home!r}"
    if info.pgrp != info.pid:
        return "it does not lead its own process group (the processes `up` starts do)"
    return None


def ancestors(pid: int | None = None, proc: Path = PROC) -> set[int]:
    """``pid`` (default: this process) and every parent up to init: never to be signalled."""
    out: set[int] = set()
    pid = os.getpid() if pid is None else pid
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            pid = int(_stat_fields(pid, proc)[1])
        except (OSError, IndexError, ValueError):
            break
    return out


def flower_processes_with_home(flwr_home: str, proc: Path = PROC) -> list[int]:
    """Live Flower processes whose environment has ``FLWR_HOME=flwr_home`` (never this process or its parents).

    Only Flower programs count, so a shell that exported the same FLWR_HOME is never among them.
    """
    skip = ancestors(proc=proc)
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        info = proc_info(int(entry.name), proc)
        if (info is not None and info.state not in ("Z", "X") and info.flwr_home == flwr_home
                and is_flower_program(info.argv)):
            found.append(info.pid)
    return sorted(found)
