"""The processes a command started, so that it can wait for them to end before it exits.

Ray's agents (dashboard agent, runtime-env agent) are children of the raylet, block SIGINT
and SIGTERM, and after ``ray.shutdown()`` exit only once they have noticed their raylet is
gone and tried to report it to a GCS that has already stopped: a minute or more, under load.
By then they may have been re-parented to init, so a process tree can miss them; but every
process of a Ray node keeps its logs open in the node's session directory, whoever its
parent is; and a worker the raylet has just started, not yet renamed ``ray::...``, carries the
session's name on its command line. A sweep that started a local Ray ends its process tree, every
``ray::`` process holding a file in its session directory and every process started with that session's
name, after a grace period.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _parents() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state letter) of every process /proc shows (empty where there is no /proc)."""
    table: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while we looked
        table[int(stat.parent.name)] = (int(fields[1]), fields[0])
    return table


def descendants(pid: int | None = None) -> list[int]:
    """Every live (not zombie) process below ``pid`` (default: this process), nearest first."""
    root = os.getpid() if pid is None else pid
    table = _parents()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found, frontier = [], [root]
    while frontier:
        nxt = [c for p in frontier for c in sorted(children.get(p, []))]
        found += [c for c in nxt if table[c][1] != "Z"]
        frontier = nxt
    return found


def holding_files_under(directory: str | Path) -> list[int]:
    """Every live process (but this one) with a file open under ``directory`` (others' are unreadable: skipped)."""
    prefix = str(Path(directory).resolve()).rstrip("/") + "/"
    table = _parents()
    found = []
    for pid, (_, state) in table.items():
        if pid == os.getpid() or state == "Z":
            continue
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith(prefix):
                found.append(pid)
                break
    return sorted(found)


def with_argument(argument: str) -> list[int]:
    """Every live process (but this one) whose command line has ``argument`` as one of its words, exactly."""
    wanted = argument.encode()
    found = []
    for pid, (_, state) in _parents().items():
        if pid == os.getpid() or state == "Z":
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in argv:
            found.append(pid)
    return sorted(found)


def names(pids: list[int]) -> set[str]:
    """The command names (``/proc/PID/comm``) of those of ``pids`` that still exist."""
    found = set()
    for pid in pids:
        try:
            found.add(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            pass
    return found


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still run (a zombie has ended)."""
    table = _parents()
    return [p for p in pids if p in table and table[p][1] != "Z"]


def end(pids: list[int], grace_s: float = 10.0, poll_s: float = 0.2) -> list[int]:
    """Wait up to ``grace_s`` for ``pids`` to exit, then SIGKILL the rest; returns those killed."""
    deadline = time.monotonic() + grace_s
    left = alive(pids)
    while left and time.monotonic() < deadline:
        time.sleep(poll_s)
        left = alive(left)
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return left
