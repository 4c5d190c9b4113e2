"""Torch threads that follow the cores other processes leave free.

A run at two threads beside one busy process (a browser, a second run, a CI job) waits at
every parallel region for the thread the scheduler has parked: it ran 2.5-3.5x slower than
alone, and two such runs started together about 9x, where a run at one thread does not slow at
all. So while training, the run reads how much of its cores the other processes used over the
last few seconds (Linux ``/proc``; elsewhere it keeps its threads) and uses the cores left:
``threads = round(cores - others)``, between 1 and the threads it started with.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

# /proc/stat columns counted as busy: user, nice, system, irq, softirq, steal (not idle, iowait).
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


def our_cpus() -> set[int]:
    """The CPUs this process may run on (a SLURM job's or a container's cpuset included)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def busy_ticks(cpus: set[int], stat: str) -> int:
    """Clock ticks the CPUs ``cpus`` spent busy, from the text of ``/proc/stat``."""
    total = 0
    for line in stat.splitlines():
        name, *columns = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            total += sum(int(columns[i]) for i in _BUSY_COLUMNS if i < len(columns))
    return total


def own_ticks(stat: str) -> int:
    """Clock ticks this process (all its threads) spent on a CPU, from ``/proc/self/stat``."""
    # The command name (field 2) may hold spaces: count the fields after its closing bracket.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def threads_for(cores: int, others: float, most: int) -> int:
    """Threads for the cores ``others`` (in cores) leave free, between 1 and ``most``."""
    return max(1, min(most, round(cores - others)))


class CpuShare:
    """How many cores other processes used since the last reading, on this process's CPUs."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self.cpus = our_cpus()
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._read()

    def _read(self) -> tuple[float, int, int] | None:
        try:
            machine = busy_ticks(self.cpus, (self.proc / "stat").read_text())
            ours = own_ticks((self.proc / "self" / "stat").read_text())
        except (OSError, ValueError, IndexError):  # no /proc (not Linux), or an unknown layout
            return None
        return time.monotonic(), machine, ours

    def others(self) -> float | None:
        """Cores used by other processes since the last call (None where ``/proc`` is not
        readable, or no time has passed)."""
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[0] <= last[0]:
            return None
        seconds = now[0] - last[0]
        return max(0.0, ((now[1] - last[1]) - (now[2] - last[2])) / self.tick / seconds)


class ShareCores(Callback):
    """Every ``every_seconds`` of training, validation or testing, set torch's threads to the
    cores other processes leave free (see the module's docstring), at most the threads the run
    started with. ``threads`` given (the run's ``threads`` option): that many, always."""

    def __init__(self, threads: int | None = None, every_seconds: float = 3.0) -> None:
        self.fixed = threads is not None
        self.every_seconds = every_seconds
        self.most = 1
        self.share: CpuShare | None = None
        self._next = 0.0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Only on a CPU: on a GPU the threads feed the device and are rarely the bound.
        if self.fixed or self.share is not None or pl_module.device.type != "cpu":
            return
        self.most = torch.get_num_threads()
        if self.most > 1:
            self.share = CpuShare()
            self._next = time.monotonic() + self.every_seconds

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.share is not None:
            torch.set_num_threads(self.most)
            self.share = None

    def _follow(self) -> None:
        if self.share is None or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.every_seconds
        others = self.share.others()
        if others is not None:
            threads = threads_for(len(self.share.cpus), others, self.most)
            if threads != torch.get_num_threads():
                torch.set_num_threads(threads)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._follow()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._follow()

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._follow()
