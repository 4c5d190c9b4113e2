"""Job states for ``hydra/launcher=slurm`` (submitit) where ``sacct`` is not available.

submitit learns a job's state from ``sacct``. On a cluster without accounting (``sacct`` fails)
every state stays unknown, and a job cancelled with ``scancel`` (or failed before it wrote a
result) is waited for forever. Here the queue answers instead (``squeue``, which knows a job for a
few minutes after it ended, and not at all after that), so that a job that ended without a result
ends the sweep.

Needs the ``slurm`` extra (``pip install -e ".[slurm]"``): imported only when a sweep uses it.
"""

from __future__ import annotations

import subprocess
import time

from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

# A job the queue no longer knows: it ended (cancelled, failed, or done) some minutes ago.
LEFT_QUEUE = "LEFT_QUEUE"


class QueueWatcher(SlurmInfoWatcher):
    """submitit's job-state watcher, asking ``squeue`` where ``sacct`` is not available."""

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        try:
            output = subprocess.check_output(command, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.CalledProcessError):
            self._info_dict.update(self.queue_states())
        else:
            self._info_dict.update(self.read_info(output))
        self._last_status_check = time.time()
        for job in self._registered - self._finished:
            if self.is_done(job, mode="cache"):
                self._finished.add(job)

    def queue_states(self) -> dict[str, dict[str, str]]:
        """``{job id: {"State": ...}}`` of the watched jobs from ``squeue`` (array tasks one by
        one); a job it does not list has left the queue."""
        watched = self._registered - self._finished
        ids = sorted({job.split("_")[0] for job in watched})
        listed = subprocess.run(
            ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ",".join(ids)],
            capture_output=True,
            text=True,
        )
        states = dict(line.split("|", 1) for line in listed.stdout.split() if "|" in line)
        return {job: {"State": states.get(job, LEFT_QUEUE)} for job in watched}


def watch_the_queue() -> None:
    """Make submitit's SLURM jobs (``hydra/launcher=slurm``) use :class:`QueueWatcher`."""
    SlurmJob.watcher = QueueWatcher(delay_s=SlurmJob.watcher._delay_s)
