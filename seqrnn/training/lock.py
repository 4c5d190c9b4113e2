"""One training process per run dir.

Two processes training into one dir (a sweep launched twice, ``resume=`` run twice) would
overwrite each other's checkpoints and results. A run holds an exclusive ``flock`` on
``<run dir>/.lock`` while it trains; the file names the holder (host and process id) for the
message the second one prints. The kernel drops the lock when its process dies, however it
dies, so a lock left by a killed run is free: the next run takes it over with a warning naming
the old holder.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from seqrnn.errors import RunDirBusy
from seqrnn.layout import LOCK_FILE


def holder_line() -> str:
    """How this process names itself in a lock file."""
    return f"host {socket.gethostname()}, pid {os.getpid()}"


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the lock of ``run_dir`` for the duration of the ``with`` block.

    Raises:
        RunDirBusy: a live process holds it (the message names it).
    """
    path = Path(run_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd) or "another process"
            raise RunDirBusy(
                f"run dir {run_dir} is in use by {holder}; wait for it to finish, stop it, or "
                "train into another dir"
            ) from None
        previous = _read(fd)
        if previous:  # a holder that did not release: it was killed
            print(
                f"warning: taking over the lock of {run_dir} from {previous}, which is gone",
                file=sys.stderr,
                flush=True,
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder_line()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # released cleanly: the next holder has nothing to warn about
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holder_of(run_dir: str | Path) -> str | None:
    """Who holds the lock of ``run_dir`` now (as its lock file names them), or None when no live
    process does. Reads only: creates nothing and takes the lock for no longer than the test."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # no lock file (or none that can be read): nobody holds it
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd) or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode(errors="replace").strip()
