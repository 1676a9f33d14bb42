"""One sweep at a time per store: a second ``fl-poison sweep`` into the same ``--out`` is refused.

Two sweeps into one store would pick the same pending run, write into one run folder
at once and delete each other's half-written runs. The lock is an advisory ``flock`` on
``<out>/.sweep.lock``: the kernel drops it when its holder exits, however it exits, so a
killed sweep never leaves a stale lock behind. The file keeps the holder's pid and command
for the refusal's message.
"""

from __future__ import annotations

import fcntl
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fl_poison.config import ConfigError

LOCK_NAME = ".sweep.lock"


@contextmanager
def locked_store(out: str | Path) -> Iterator[Path]:
    """Hold ``out``'s lock for the block; ConfigError naming ``--out`` if another sweep holds it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise ConfigError("--out", str(out), f"a store no other sweep is writing; {holder} is sweeping into "
                              f"it now: wait for it to end (or stop it), then run the same command again; "
                              f"it resumes where that one stopped") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"sweep pid {os.getpid()} ({' '.join(sys.argv[:1] + sys.argv[1:3])} ...)\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
