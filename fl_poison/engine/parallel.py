"""A Flower ``Grid`` that delivers a round's messages to a pool of forked worker processes.

Why: on a CPU, one process training small CNNs with several torch threads
reaches ~0.7 of the machine; one single-threaded process per core reaches the
ceiling (measured in ``benchmarks/engines.py``). Each worker calls the SAME
ClientApp as :class:`~fl_poison.engine.inprocess.InProcessGrid`
(``client_app(message, context)``), so every attack and every reply is
unchanged; only where the call runs differs.

* Workers are forked once, when the grid is built: data already loaded in
  this process (``federation_for``) is shared copy-on-write, not reloaded.
* Each worker runs with one torch thread (the pool provides the parallelism).
* A node's :class:`Context` lives here; it is shipped with the message and
  the worker ships back ``context.state``, so state persists across rounds
  exactly as in the serial grid, whichever worker runs the node next.
* A ClientApp that raises becomes an error reply with code 2, as in Flower.
* Results do not depend on the number of workers: client randomness is
  seeded per (run seed, round, client) and replies come back in message order.
* Signals are the parent's business: workers ignore SIGINT (a terminal's Ctrl-C
  reaches the whole process group), the parent waits on results in short slices
  so its own KeyboardInterrupt / SIGTERM is raised at once, and an interrupted
  round terminates the pool, so no worker outlives the run.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import weakref
from typing import Iterable
from uuid import uuid4

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fl_poison.engine.inprocess import InProcessGrid, error_reply, inprocess_grid

log = logging.getLogger("fl_poison.engine")

_WORKER_APP: ClientApp | None = None
#: seconds between checks of a pending result: how soon the parent notices its own interrupt
POLL_S = 0.2


def available_cores() -> int:
    """Cores this process may run on (affinity-aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def resolve_workers(engine_workers: int) -> int:
    """``-1`` = one worker per available core; otherwise the number given (>= 1)."""
    return available_cores() if engine_workers == -1 else int(engine_workers)


def _init_worker(client_app: ClientApp, threads: int) -> None:
    import torch

    global _WORKER_APP
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # SIGTERM too: a group signal that killed a worker holding the pool's task-queue lock would leave that lock
    # taken for ever, and the parent's terminate() would wait on it; _shutdown ends workers with SIGKILL instead
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _WORKER_APP = client_app
    torch.set_num_threads(threads)


def _run_client(job: tuple[Message, Context]) -> tuple[Message, RecordDict]:
    """In a worker: the ClientApp's reply (or an error reply) and the node's updated state."""
    msg, context = job
    try:
        reply = _WORKER_APP(msg, context)
    except Exception as exc:  # a crashing client must never crash the server
        reply = error_reply(msg, exc)
    return reply, context.state


def _wait(result, poll_s: float = POLL_S):
    """``result.get()``, waiting in slices so a signal in this process is handled at once."""
    while not result.ready():
        result.wait(poll_s)
    return result.get()


def _shutdown(pool) -> None:
    """``pool.terminate()``, ending the workers with SIGKILL: they ignore SIGTERM (see ``_init_worker``)."""
    for worker in list(pool._pool):
        worker.terminate = worker.kill
    pool.terminate()
    pool.join()


class ParallelGrid(InProcessGrid):
    """:class:`InProcessGrid` whose ``push_messages`` fans a batch out to ``workers`` processes.

    Use as a context manager or call :meth:`close`; a forgotten pool is
    terminated when the grid is garbage-collected or the interpreter exits.
    """

    def __init__(self, client_app: ClientApp, run_config: dict, num_nodes: int, workers: int,
                 run_id: int = 1, threads_per_worker: int = 1) -> None:
        super().__init__(client_app, run_config, num_nodes, run_id)
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        ctx = mp.get_context("fork")
        self._pool = ctx.Pool(workers, initializer=_init_worker, initargs=(client_app, threads_per_worker))
        self._finalizer = weakref.finalize(self, _shutdown, self._pool)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        ids, jobs = [], []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = str(uuid4())
            ids.append(msg.metadata.message_id)
            context = self._contexts.get(msg.metadata.dst_node_id)
            if context is None:
                self._replies[msg.metadata.message_id] = self._deliver(msg)  # unknown node: error reply
            else:
                jobs.append((msg, context))
        try:
            pending = [self._pool.apply_async(_run_client, (job,)) for job in jobs]
            for (msg, context), result in zip(jobs, pending):
                reply, state = _wait(result)
                context.state = state
                reply.metadata.__dict__["_message_id"] = str(uuid4())
                self._replies[msg.metadata.message_id] = reply
        except BaseException:  # an interrupt (or a broken pool): no worker may keep training
            self.terminate()
            raise
        return ids

    def terminate(self) -> None:
        """Kill the worker processes now, whatever they are doing (idempotent)."""
        self._finalizer()

    def close(self) -> None:
        """Stop the worker processes (idempotent)."""
        if self._finalizer.alive:
            try:
                self._pool.close()
                self._pool.join()
            except BaseException:  # interrupted while the workers wind down
                self.terminate()
                raise
            self._finalizer.detach()

    def __enter__(self) -> "ParallelGrid":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_grid(run_config: dict, num_nodes: int, engine_workers: int = 1,
              client_app: ClientApp | None = None, device: str = "cpu") -> InProcessGrid:
    """The in-process grid for ``engine-workers``: serial for 1, a :class:`ParallelGrid` otherwise.

    Build it after the federation's data are loaded, so workers share them.
    On a CUDA device the grid is serial: forked processes cannot share a CUDA
    context, and one process keeps the GPU busy better than several.
    """
    from fl_poison.devices import resolve_device

    workers = min(resolve_workers(engine_workers), num_nodes)
    if resolve_device(device).type == "cuda":
        workers = 1
    grid = inprocess_grid(run_config, num_nodes, client_app)  # also sets this process's task identity
    if workers <= 1:
        return grid
    return ParallelGrid(grid._client_app, run_config, num_nodes, workers)


def close_grid(grid) -> None:
    """Close a grid if it holds resources (a no-op for the serial grid)."""
    close = getattr(grid, "close", None)
    if close is not None:
        close()
