"""Writing files so that nothing half-written is ever left: a temporary file beside the target,
then a rename. A write that fails (a full disk, a folder that cannot be written) removes its
temporary file, leaves the previous target whole, and raises :class:`~seqrnn.errors.OutputError`
naming the file and the reason in one line."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from seqrnn.errors import OutputError

# What "the disk is full" looks like: no space, or a quota reached.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def describe_os_error(err: OSError, path: str | Path | None = None) -> str:
    """``cannot write <path>: <reason>`` for an ``OSError``, with the reason in words."""
    where = path if path is not None else (err.filename or "a file")
    if err.errno in DISK_FULL:
        return f"no space left on the device of {where}"
    return f"cannot write {where}: {err.strerror or err}"


@contextmanager
def atomic_target(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on leaving the block it replaces
    ``path`` (readable by all, as files normally are). On any error the temporary file is
    removed, ``path`` is untouched, and an ``OSError`` becomes :class:`OutputError`."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, mode) as out:
            yield out
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except OSError as err:
        raise OutputError(describe_os_error(err, path)) from err
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def write_atomic(path: str | Path, write: Callable[[IO], Any], mode: str = "wb") -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``."""
    with atomic_target(path, mode) as out:
        write(out)
    return Path(path)


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as JSON through a temporary file and a rename: readers never see half."""

    def dump(out: IO) -> None:
        json.dump(data, out, indent=2)
        out.write("\n")

    return write_atomic(path, dump, mode="w")
