"""The fast deployment round pieces, offline: reply polling, the warm ClientApp's process identity.

Its restart on a new FAB is tested in test_warm_clientapp.py.
"""

from __future__ import annotations

import time

from fl_poison.app.polling import FastPollGrid, fast_polling
from fl_poison.app.replies import innermost
from fl_poison.deploy import ISOLATION_MODES, WARM_CLIENTAPP, clientapp_name
from fl_poison.deploy_procs import WARM, is_flower_program, not_ours, program


class _Reply:
    def __init__(self, to: str) -> None:
        self.metadata = type("M", (), {"reply_to_message_id": to})()


class _Grid:
    """A stand-in deployment grid: replies to ``ids`` arrive one per pull; counts pulls."""

    def __init__(self, ids: list[str], never: set[str] = frozenset()) -> None:
        self.ids, self.never, self.pulls = ids, never, 0

    def push_messages(self, messages):
        return list(self.ids)

    def pull_messages(self, message_ids):
        self.pulls += 1
        ready = sorted(set(message_ids) - self.never)
        return [_Reply(ready[0])] if ready else []


def test_fast_poll_collects_every_reply_pulling_often():
    grid = _Grid(["a", "b", "c"])
    t0 = time.time()
    replies = FastPollGrid(grid, interval=0.01).send_and_receive([], timeout=10)
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["a", "b", "c"]
    assert grid.pulls == 3 and time.time() - t0 < 1.0  # Flower's HttpGrid would have slept 6 s here


def test_fast_poll_gives_up_at_the_timeout_with_what_arrived():
    grid = _Grid(["a", "b"], never={"b"})
    t0 = time.time()
    replies = FastPollGrid(grid, interval=0.01).send_and_receive([], timeout=0.3)
    assert [r.metadata.reply_to_message_id for r in replies] == ["a"] and 0.3 <= time.time() - t0 < 2.0


def test_only_flowers_deployment_grids_are_wrapped_and_the_engine_is_still_named():
    class HttpGrid(_Grid):
        pass

    http = HttpGrid([])
    assert isinstance(fast_polling(http), FastPollGrid) and innermost(fast_polling(http)) is http
    other = _Grid([])
    assert fast_polling(other) is other


def test_the_warm_clientapp_is_recognised_as_this_federations_process():
    from fl_poison.deploy_procs import ProcInfo

    argv = ("/v/bin/python", str(WARM_CLIENTAPP), "--runtime-api-address", "127.0.0.1:19193", "--insecure",
            "--parent-pid", "7", "--federation", "/f/fed/")
    assert WARM_CLIENTAPP.name == WARM and WARM_CLIENTAPP.exists()
    assert program(argv) == WARM and is_flower_program(argv)
    info = ProcInfo(pid=9, argv=argv, state="S", pgrp=9, start=5, flwr_home="/f/fed/flwr-home", environ_readable=True)
    assert not_ours(info, WARM, 5, "/f/fed/flwr-home", "/f/fed", "127.0.0.1:19093") is None
    assert clientapp_name("node0") == "node0-clientapp" and ISOLATION_MODES[0] == "process"
