"""The process tree a sweep ends after ``ray.shutdown()``: found through /proc, waited for, then killed."""

import subprocess
import sys
import time

import pytest

from fl_poison.process_tree import alive, descendants, end

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
