"""The processes of a local Ray node a sweep started, and a guard that ends them if the sweep cannot.

The sweep ends its node itself (``ray.shutdown()``, then :func:`fl_poison.process_tree.end` on
every process of the node). A driver that dies without running that code (``kill -9``, the
out-of-memory killer, an abort inside Ray's C++) leaves the node's agents behind: Ray's fate
sharing stops the raylet and the GCS, but the dashboard and runtime-env agents block SIGINT and
SIGTERM and outlive them by a minute or more. The guard is a small process started beside the
node: it ignores the signals a terminal sends to the job (the driver handles those) and reads a
pipe from the driver. ``done`` then end of file: the driver ended the node; the guard exits. End
of file alone: the driver is gone; the guard ends the node's processes and exits.

Run as ``python -m fl_poison.ray_node SESSION_DIR`` (the sweep starts it; not a user command).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from fl_poison.process_tree import end, holding_files_under, names, with_argument

#: what the driver writes before it closes the pipe once it has ended the node itself
DONE = b"done\n"
#: seconds the guard gives the node's processes after the driver died, before SIGKILL
GUARD_GRACE_S = 2.0


def session_dir() -> str | None:
    """The session directory of the Ray node this driver is connected to (None where Ray cannot say)."""
    try:
        from ray._private.worker import _global_node

        return _global_node.get_session_dir_path()
    except Exception:
        return None


def node_processes(session: str | None) -> set[int]:
    """Ray's processes of that node, whoever their parent now is.

    Those named ``ray::...`` with logs open there (the name check spares anything else that has a file open
    there, a user's ``tail -f`` of a log), and those started with ``--session-name=<the session>`` (a worker
    the raylet has just forked is still named ``python`` and may not have opened its logs yet).
    """
    if not session:
        return set()
    named = {pid for pid in holding_files_under(session) if any(n.startswith("ray::") for n in names([pid]))}
    return named | set(with_argument(f"--session-name={Path(session).name}"))


#: a terminal's Ctrl-C, SIGTERM to the group and a closed terminal: the driver's to handle, never the guard's
JOB_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _ignore_job_signals() -> None:
    for sig in JOB_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, JOB_SIGNALS)  # ignored now: drop what came while blocked


class NodeGuard:
    """The guard process of one session; :meth:`release` once the driver has ended the node itself."""

    def __init__(self, session: str) -> None:
        # Blocked across the fork (the mask is inherited; a preexec_fn is unsafe in Ray's threaded driver), so a
        # signal to the group cannot end the guard before it ignores them; the driver gets its own at the unblock.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, JOB_SIGNALS)
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "fl_poison.ray_node", session],
                                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, close_fds=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def release(self, timeout_s: float = 5.0) -> None:
        """Tell the guard the node is ended; it exits at once (killed if it has not within ``timeout_s``)."""
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(DONE)
            self._proc.stdin.close()
            self._proc.wait(timeout=timeout_s)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()


def guard(session: str, pipe=None, grace_s: float = GUARD_GRACE_S) -> bool:
    """Block until the driver's end of ``pipe`` closes; end the node unless it said it was done. True if it did."""
    pipe = sys.stdin.buffer if pipe is None else pipe
    said = b""
    while chunk := pipe.read(64):
        said += chunk
    if said.endswith(DONE):
        return False
    end(sorted(node_processes(session)), grace_s=grace_s)
    return True


if __name__ == "__main__":
    _ignore_job_signals()
    guard(sys.argv[1])
