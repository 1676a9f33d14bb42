"""A long-lived ClientApp process for one SuperNode (``flower-supernode --isolation process``).

Why: under Flower's default ``--isolation subprocess`` the SuperNode's SuperExec
starts a fresh ``flwr-clientapp`` for every message, which imports flwr and torch,
resolves the run config and reloads the node's data: seconds per message, on
every node, every round. This process stands in for that SuperExec: it asks the
SuperNode's Runtime API for ClientApp tasks and runs each one here, as
``flwr-clientapp`` would (pull message and context, load the app from the FAB,
call it, push the reply and the context), with Flower's own functions. Imports,
the resolved config, the model skeleton and the node's data (``federation_for``
caches per config) then survive from one message to the next.

Soundness: the code it runs is the first FAB's. A task of another FAB (a new
``flwr run`` with changed code) makes the process exec itself afresh with that
task's token (same PID, so ``deploy down`` still knows it), so stale code never
runs. It is started as a script path, not ``-m fl_poison...``, so that nothing
of fl_poison is imported before the FAB's copy is, as under ``flwr-clientapp``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if __name__ == "__main__" and sys.path and os.path.dirname(os.path.abspath(__file__)) == os.path.abspath(sys.path[0]):
    del sys.path[0]  # this file's folder would shadow top-level modules with fl_poison/app's ones

# Flower's own steps, imported at start so that a Flower without them stops this process at once (and
# `deploy up` names it) rather than at a run's first message.
from flwr.app import Message
from flwr.app.error import Error
from flwr.cli.install import install_from_fab
from flwr.clientapp.client_app import LoadClientAppError
from flwr.clientapp.utils import get_load_client_app_fn
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
from flwr.supercore.app_utils import start_parent_process_monitor
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

CLIENT_APP = "flwr-clientapp"
_installed: set[str] = set()  # FAB hashes this process has installed (and verified) already


def _client(address: str, insecure: bool, certificates: bytes | None, token: str | None = None):
    """A Runtime API client (with the task's token when given) that retries as Flower's processes do."""

    interceptors = [RuntimeVersionHttpInterceptor(component_name="flwr-clientapp" if token else "SuperExec")]
    if token:
        interceptors.append(RuntimeTokenHttpInterceptor(token))
    return RuntimeHttpClient.from_server_address(server_address=address, insecure=insecure,
                                                 root_certificates=certificates, interceptors=interceptors,
                                                 retry_invoker=make_simple_http_retry_invoker())


def run_task(address: str, token: str, insecure: bool, certificates: bytes | None) -> dict[str, float]:
    """One ClientApp task in this process (``flwr-clientapp``'s steps); returns seconds per step."""

    client = _client(address, insecure, certificates, token)
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    message = reply = context = None
    status, details = SubStatus.FAILED, "ClientApp task failed due to unknown reason"
    took, t0 = {}, time.perf_counter()
    try:
        heartbeat.start()
        message, context, run, fab = pull_task_input(client)
        took["pull"], t0 = time.perf_counter() - t0, time.perf_counter()
        if fab.hash_str not in _installed:  # the same FAB is never unpacked twice by one process
            install_from_fab(fab.content, skip_prompt=True)
            _installed.add(fab.hash_str)
        app = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)(
            run.fab_id, run.fab_version, fab.hash_str)
        took["load"], t0 = time.perf_counter() - t0, time.perf_counter()
        reply = app(message=message, context=context)
        took["app"], t0 = time.perf_counter() - t0, time.perf_counter()
        status, details = SubStatus.COMPLETED, ""
    except Exception as ex:  # noqa: BLE001 - an error reply, as flwr-clientapp sends
        code = (ErrorCode.LOAD_CLIENT_APP_EXCEPTION if isinstance(ex, LoadClientAppError)
                else ErrorCode.CLIENT_APP_RAISED_EXCEPTION)
        details = f"{type(ex)}:<'{ex}'>"
        print(f"warm-clientapp: ClientApp raised {details}", file=sys.stderr, flush=True)
        if message is not None:
            reply = Message(Error(code=code, reason=details), reply_to=message)
    finally:
        try:
            if reply is not None and context is not None:
                push_message(client, reply, context)
            push_task_output(client=client, context=context, sub_status=status, details=details)
        finally:
            if heartbeat.is_running:
                heartbeat.stop()
            client.close()
    took["push"] = time.perf_counter() - t0
    return took


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Long-lived ClientApp process for one SuperNode (--isolation process)")
    p.add_argument("--runtime-api-address", required=True, help="the SuperNode's Runtime API (its --port)")
    p.add_argument("--insecure", action="store_true", help="Runtime API without TLS (the SuperNode's default)")
    p.add_argument("--root-certificates", default=None, help="CA of the Runtime API's TLS certificate")
    p.add_argument("--parent-pid", type=int, default=None, help="exit when this process (the SuperNode) exits")
    p.add_argument("--poll-interval", type=float, default=0.1, help="seconds between task polls when idle")
    p.add_argument("--federation", default="", help="federation folder (names the process for `deploy down`)")
    p.add_argument("--first-token", default=None, help=argparse.SUPPRESS)
    p.add_argument("--first-fab", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def fresh_argv(argv: list[str], token: str, fab_hash: str) -> list[str]:
    """This process's arguments for a fresh start that first runs ``token``'s task of FAB ``fab_hash``.

    Earlier ``--first-token``/``--first-fab`` values (``--x v`` or ``--x=v``, both of which argparse
    takes) are dropped rather than left beside the new ones, so the command line names one task only.
    """
    keep, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--first-token", "--first-fab"):
            skip = True
        elif a.startswith(("--first-token=", "--first-fab=")):
            pass
        else:
            keep.append(a)
    return [*keep, "--first-token", token, "--first-fab", fab_hash]


def _exec_afresh(token: str, fab_hash: str) -> None:
    """Replace this process (same PID) by a fresh one that runs ``token``'s task first (new FAB: new code)."""
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), *fresh_argv(sys.argv[1:], token, fab_hash)])


def serve(args: argparse.Namespace) -> None:
    """Poll the Runtime API for ClientApp tasks and run them here, one at a time, until the SuperNode exits."""

    if args.parent_pid is not None:
        start_parent_process_monitor(args.parent_pid)
    certificates = None
    if args.root_certificates and not args.insecure:
        with open(args.root_certificates, "rb") as fh:
            certificates = fh.read()
    loaded = args.first_fab
    if args.first_token:
        _run_logged(args, args.first_token, certificates)
    poller = _client(args.runtime_api_address, args.insecure, certificates)
    while True:
        res = poller.AcquireTask(AcquireTaskRequest(supported_task_types=[CLIENT_APP]))
        if not (res.HasField("task") and res.token):
            time.sleep(args.poll_interval)
            continue
        fab = res.task.fab_hash
        if not fab or (loaded is not None and fab != loaded):
            poller.close()
            _exec_afresh(res.token, fab)
        loaded = fab
        _run_logged(args, res.token, certificates)


def _run_logged(args: argparse.Namespace, token: str, certificates: bytes | None) -> None:
    t0 = time.time()
    took = run_task(args.runtime_api_address, token, args.insecure, certificates)
    steps = " ".join(f"{k} {v:.2f}" for k, v in took.items())
    print(f"warm-clientapp: task at {t0:.3f} took {time.time() - t0:.2f} s ({steps})", flush=True)


def main(argv: list[str] | None = None) -> None:
    try:
        serve(_parse(argv))
    except KeyboardInterrupt:  # the parent monitor raises SIGINT when the SuperNode is gone
        pass


if __name__ == "__main__":
    main()
