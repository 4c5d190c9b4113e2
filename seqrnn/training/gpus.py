"""One GPU per job on a machine with several.

A job asks for one device (``trainer.devices=1``, the default); Lightning would give every such job
the first GPU, so two jobs side by side (``hydra/launcher=parallel``, a search's ``workers=``, two
commands typed in two shells) would share one GPU and leave the others idle. Instead each job holds
the first GPU no other seqrnn job on the machine holds (a lock file per GPU, released when the job
ends or dies) and waits for one when all are held: at most one job per GPU.
"""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCK_DIR = Path(tempfile.gettempdir()) / "seqrnn-gpus"
POLL_SECONDS = 1.0


def wants_one_of(trainer: Any, gpu_count: int) -> bool:
    """Whether a job of these trainer settings should hold one of ``gpu_count`` GPUs: it asks
    for a single device on an accelerator that is (or resolves to) a GPU, and there are several."""
    accelerator = str(trainer.get("accelerator", "auto"))
    devices = trainer.get("devices", "auto")
    single = devices == 1 or str(devices) == "1"
    return gpu_count > 1 and single and accelerator in ("auto", "gpu", "cuda")


@contextlib.contextmanager
def one_gpu(
    count: int, lock_dir: Path = LOCK_DIR, poll_seconds: float = POLL_SECONDS
) -> Iterator[int]:
    """Hold the first of ``count`` GPUs (0-based, among the visible ones) that no other holder
    has, waiting while all are held; yields its index."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    told = False
    while True:
        for index in range(count):
            handle = open(lock_dir / f"gpu{index}.lock", "a")  # noqa: SIM115 - held while in use
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield index
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if not told:
            print(f"all {count} GPUs are in use by other seqrnn jobs: waiting for one", flush=True)
            told = True
        time.sleep(poll_seconds)
