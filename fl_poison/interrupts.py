"""How fl-poison stops on a signal: one exception in the main thread, then exit 130 (SIGINT) or 143 (SIGTERM).

Why one module: the run and sweep commands, the parallel engine's wait loop and the Ray
driver must agree on which exception a signal becomes and on the exit code it gives.

* SIGTERM raises :class:`Terminated`, a ``KeyboardInterrupt``, so every ``except Exception``
  (a run's own failure handling) lets it through and it ends the process like Ctrl-C.
* Only the first signal raises: a second Ctrl-C or SIGTERM while the first one is being
  handled is ignored, so it cannot abort the cleanup (terminating worker pools, stopping
  Ray) half-way and leave processes behind.
* A SIGINT that was already ignored when the process started (``nohup``, a ``&`` job of a
  non-interactive shell) stays ignored: that is the starting shell's choice, and Python
  itself keeps it. Such a process still stops cleanly on SIGTERM.
"""

from __future__ import annotations

import signal
import threading

EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it ends like Ctrl-C (exit 143 instead of 130)."""


def exit_code(exc: BaseException) -> int:
    """The shell's code for a process ended by this interrupt: 128 + the signal number."""
    return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT


class StopOnSignals:
    """While active (``with StopOnSignals():``), SIGTERM raises :class:`Terminated` and SIGINT ``KeyboardInterrupt``.

    :meth:`install` may be called again after a library replaced the handlers (``ray.init``
    sets its own SIGTERM handler in the driver). Outside the main thread it does nothing:
    Python delivers signals to the main thread only.
    """

    def __init__(self) -> None:
        self.fired: int | None = None  # the signal that stopped us, once one has
        self._previous: dict[int, object] = {}

    def _handler(self, signum: int, frame) -> None:
        if self.fired is not None:
            return  # already stopping: let the cleanup finish
        self.fired = signum
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            current = signal.getsignal(sig)
            if sig == signal.SIGINT and current == signal.SIG_IGN and sig not in self._previous:
                continue  # inherited as ignored: keep the shell's choice
            old = signal.signal(sig, self._handler)  # always: a library may have replaced it below Python
            self._previous.setdefault(sig, old)

    def restore(self) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous.clear()

    def __enter__(self) -> "StopOnSignals":
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.restore()
