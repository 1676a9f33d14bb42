"""The warm ClientApp's restart on a new FAB, offline: its command line, its loop's choice, its exec.

Why: the long-lived ClientApp process (``fl_poison/app/warm_clientapp.py``) keeps
the code of the first FAB it loaded. A task of another FAB must make it exec
itself afresh with that task's token, or a second ``flwr run`` with changed code
would silently run the old code; a task of the same FAB must run in the process
without installing the FAB again, or the process gains nothing. Flower's
Runtime-API client and its ClientApp steps are replaced here by recorders at the
names the module looks up (``_client``, ``pull_task_input``, ``install_from_fab``,
...), so ``serve`` and ``run_task`` themselves run unchanged; ``_exec_afresh``
records its arguments and raises instead of replacing the test process.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import pytest
from flwr.proto.runtime_pb2 import AcquireTaskResponse  # pylint: disable=E0611
from flwr.proto.task_pb2 import Task  # pylint: disable=E0611

import fl_poison.app.warm_clientapp as warm
from fl_poison.app.warm_clientapp import _parse, fresh_argv

USER = ["--runtime-api-address", "127.0.0.1:9", "--insecure", "--parent-pid", "7", "--federation=/f/fed/"]


# ------------------------------------------------------------------------------- fresh_argv


def test_fresh_argv_appends_the_task_to_the_users_arguments():
    assert fresh_argv(USER, "tok", "f1") == [*USER, "--first-token", "tok", "--first-fab", "f1"]


@pytest.mark.parametrize("earlier", [
    ["--first-token", "old", "--first-fab", "f0"],
    ["--first-token=old", "--first-fab=f0"],
    ["--first-fab", "f0", "--first-token=old"],
], ids=["space", "equals", "mixed"])
def test_fresh_argv_replaces_an_earlier_task_in_either_form_and_keeps_the_rest_in_order(earlier):
    """A second restart must not carry the first restart's task: one pair, the new one, whatever the form."""
    argv = [*USER[:3], *earlier, *USER[3:]]
    assert fresh_argv(argv, "tok", "f1") == [*USER, "--first-token", "tok", "--first-fab", "f1"]


@pytest.mark.parametrize("form", ["space", "equals"])
def test_the_parser_takes_both_forms_and_a_fresh_command_line_parses_to_the_new_task(form):
    """The forms fresh_argv drops are the ones argparse accepts; what it writes parses back exactly."""
    old = (["--first-token", "old", "--first-fab", "f0"] if form == "space"
           else ["--first-token=old", "--first-fab=f0"])
    assert (_parse([*USER, *old]).first_token, _parse([*USER, *old]).first_fab) == ("old", "f0")
    args = _parse(fresh_argv([*USER, *old], "tok", ""))  # an empty FAB hash survives the round trip
    assert (args.first_token, args.first_fab) == ("tok", "")
    assert (args.runtime_api_address, args.insecure, args.parent_pid, args.federation) == (
        "127.0.0.1:9", True, 7, "/f/fed/")


def test_exec_afresh_replaces_the_process_by_this_script_with_the_tasks_arguments(monkeypatch):
    """Same interpreter, the script by path (nothing of fl_poison imported before the FAB's), the new task."""
    calls = []

    def execv(path, argv):
        calls.append((path, argv))
        raise _Restarted

    monkeypatch.setattr(os, "execv", execv)
    monkeypatch.setattr(sys, "argv", ["/somewhere/warm_clientapp.py", *USER, "--first-token", "old",
                                      "--first-fab", "f0"])
    with pytest.raises(_Restarted):
        warm._exec_afresh("tok", "f1")
    assert calls == [(sys.executable, [sys.executable, os.path.abspath(warm.__file__), *USER,
                                       "--first-token", "tok", "--first-fab", "f1"])]


# ------------------------------------------------------------------------------- the serve loop


class _Restarted(Exception):
    """Raised where the real process would have been replaced by exec."""


class _Drained(Exception):
    """The fake Runtime API has no more answers: ends the otherwise endless loop."""


class _Flower:
    """Stands in for the SuperNode's Runtime API and Flower's ClientApp steps, recording what is asked.

    ``polls`` are the AcquireTask answers in order (``None``: no task yet); ``fab_of`` maps a task's
    token to its FAB hash, which the pulled FAB then carries, as the SuperNode's would.
    """

    def __init__(self, polls: list[tuple[str, str] | None]) -> None:
        self.polls = list(polls)
        self.fab_of = {tok: fab for tok, fab in (p for p in polls if p)}
        self.ran: list[str] = []  # tokens whose app was called in this process
        self.installed: list[bytes] = []
        self.loaded: list[str] = []  # FAB hashes the app was loaded from
        self.pushed: list[str] = []  # tokens whose task output was pushed
        self.execs: list[tuple[str, str]] = []
        self.poller_closed = False
        self.sleeps = 0

    def install(self, monkeypatch, fresh_process: bool = True) -> None:
        if fresh_process:  # a new process (as after exec) has installed nothing yet
            monkeypatch.setattr(warm, "_installed", set())
        monkeypatch.setattr(warm, "_client", self._client)
        monkeypatch.setattr(warm, "HeartbeatSender", lambda fn: SimpleNamespace(
            start=lambda: None, stop=lambda: None, is_running=False))
        monkeypatch.setattr(warm, "make_task_heartbeat_fn_http", lambda client: None)
        monkeypatch.setattr(warm, "pull_task_input", self._pull)
        monkeypatch.setattr(warm, "install_from_fab", lambda content, skip_prompt: self.installed.append(content))
        monkeypatch.setattr(warm, "get_load_client_app_fn", lambda **kw: self._loader)
        monkeypatch.setattr(warm, "push_message", lambda client, reply, context: None)
        monkeypatch.setattr(warm, "push_task_output", lambda client, context, sub_status, details:
                            self.pushed.append(client.token))
        monkeypatch.setattr(warm, "_exec_afresh", self._exec)
        monkeypatch.setattr(warm.time, "sleep", self._sleep)

    def _client(self, address, insecure, certificates, token=None):
        return SimpleNamespace(token=token, close=lambda: None) if token else SimpleNamespace(
            AcquireTask=self._acquire, close=self._close_poller)

    def _acquire(self, request):
        assert list(request.supported_task_types) == [warm.CLIENT_APP]
        if not self.polls:
            raise _Drained
        p = self.polls.pop(0)
        return AcquireTaskResponse() if p is None else AcquireTaskResponse(task=Task(fab_hash=p[1]), token=p[0])

    def _close_poller(self):
        self.poller_closed = True

    def _pull(self, client):
        fab = self.fab_of[client.token]
        run = SimpleNamespace(fab_id="fl-poison/fl-poison", fab_version="0.1.0")
        return SimpleNamespace(token=client.token), {}, run, SimpleNamespace(hash_str=fab, content=fab.encode())

    def _loader(self, fab_id, fab_version, fab_hash):
        self.loaded.append(fab_hash)
        return lambda message, context: self.ran.append(message.token) or "reply"

    def _exec(self, token, fab_hash):
        self.execs.append((token, fab_hash))
        raise _Restarted

    def _sleep(self, seconds):
        self.sleeps += 1

    def serve(self, argv: list[str]) -> None:
        """``main(argv)`` until the process would exec afresh (returns) or the polls run out (returns)."""
        try:
            warm.main(argv)
        except (_Restarted, _Drained):
            pass


ARGS = ["--runtime-api-address", "127.0.0.1:9", "--insecure", "--poll-interval", "0"]


def test_first_task_and_tasks_of_the_same_fab_run_here_and_install_it_once(monkeypatch):
    """No FAB loaded yet: the first task runs here; later tasks of that FAB run here, nothing reinstalled."""
    flower = _Flower([None, ("t1", "A"), None, ("t2", "A"), ("t3", "A")])
    flower.install(monkeypatch)
    flower.serve(ARGS)
    assert flower.execs == []
    assert flower.ran == flower.pushed == ["t1", "t2", "t3"]
    assert flower.installed == [b"A"] and flower.loaded == ["A", "A", "A"]
    assert flower.sleeps == 2  # an empty poll waits and polls again


def test_a_task_of_another_fab_execs_afresh_with_its_token_and_fab_before_running_anything(monkeypatch):
    flower = _Flower([("t1", "A"), ("t2", "B"), ("t3", "A")])
    flower.install(monkeypatch)
    flower.serve(ARGS)
    assert flower.ran == ["t1"] and flower.installed == [b"A"]  # B's task is not run with A's code
    assert flower.execs == [("t2", "B")]
    assert flower.poller_closed  # the Runtime API connection is closed before the process is replaced
    assert flower.polls == [("t3", "A")]  # nothing more is taken from the SuperNode before the exec


def test_after_the_exec_the_new_task_runs_first_and_its_fab_is_the_loaded_one(monkeypatch):
    """The restarted process (``fresh_argv``'s command line) runs its first task before polling, then
    treats that task's FAB as loaded: same FAB here, the earlier FAB again means another exec."""
    flower = _Flower([("t3", "B"), ("t4", "A")])
    flower.fab_of["t2"] = "B"
    flower.install(monkeypatch)
    flower.serve(fresh_argv([*ARGS, "--first-token", "t1", "--first-fab", "A"], "t2", "B"))
    assert flower.ran == ["t2", "t3"] and flower.installed == [b"B"] and flower.loaded == ["B", "B"]
    assert flower.execs == [("t4", "A")]


@pytest.mark.parametrize("polls, first, ran, execs", [
    ([("t1", "")], None, [], [("t1", "")]),
    ([("t2", "")], ("t1", ""), ["t1"], [("t2", "")]),
    ([("t2", "A")], ("t1", ""), ["t1"], [("t2", "A")]),
    ([("t1", "A"), ("t2", "")], None, ["t1"], [("t2", "")]),
], ids=["first-task", "after-empty", "known-after-empty", "after-known"])
def test_a_task_without_a_fab_hash_always_execs_afresh(monkeypatch, polls, first, ran, execs):
    """An empty hash cannot show the task's code is the loaded code, so it is never run with it: each such
    task gets a fresh process (which runs it first), and the next task of any FAB restarts again."""
    flower = _Flower(polls)
    argv = ARGS
    if first:
        flower.fab_of[first[0]] = first[1]
        argv = fresh_argv(ARGS, *first)
    flower.install(monkeypatch)
    flower.serve(argv)
    assert flower.ran == ran and flower.execs == execs
