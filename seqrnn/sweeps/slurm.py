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

# States of a job on its way somewhere, not ended: submitit counts every state it does not know
# as ended, and a job requeued at its time limit passes through some of these.
NOT_ENDED = {
    "CONFIGURING",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "RESV_DEL_HOLD",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
    "SUSPENDED",
}

# Seconds between the two answers that must agree before a job is taken to have ended: one
# answer caught mid-requeue (or from a controller too busy to list it) ended a running sweep.
CONFIRM_AFTER_S = 3.0


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

    def is_done(self, job_id: str, mode: str = "standard") -> bool:
        # sacct writes "CANCELLED by <uid>"
        return self.ended(self.get_state(job_id, mode=mode).upper().split()[0])

    def queue_states(self) -> dict[str, dict[str, str]]:
        """``{job id: {"State": ...}}`` of the watched jobs from ``squeue`` (array tasks one by
        one); a job it does not list has left the queue. A job is reported ended only when a
        second answer ``CONFIRM_AFTER_S`` later agrees; no answer (squeue failed) is no news."""
        states = self.ask_squeue(self._registered - self._finished)
        ended = {job for job, state in states.items() if self.ended(state)}
        if ended:
            time.sleep(CONFIRM_AFTER_S)
            again = self.ask_squeue(ended)
            for job in ended:
                if self.ended(again.get(job)):
                    states[job] = again[job]
                else:
                    del states[job]  # not confirmed: no news of it this time
        return {job: {"State": state} for job, state in states.items()}

    @staticmethod
    def ask_squeue(jobs: set[str]) -> dict[str, str]:
        """``{job id: state}`` as ``squeue`` lists ``jobs`` now; ``{}`` when it cannot answer."""
        ids = sorted({job.split("_")[0] for job in jobs})
        if not ids:
            return {}
        command = ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ",".join(ids)]
        try:
            listed = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return {}
        if listed.returncode != 0 and "Invalid job id" not in listed.stderr:
            return {}  # the controller did not answer (busy, restarting)
        # (squeue refuses a list of ids none of which it knows any more: all have left)
        states = dict(line.split("|", 1) for line in listed.stdout.split() if "|" in line)
        return {job: states.get(job, LEFT_QUEUE) for job in jobs}

    @staticmethod
    def ended(state: str | None) -> bool:
        """Whether ``state`` is the end of a job: not one submitit waits on, nor one on the way."""
        incomplete = {"READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING"}
        return state is not None and state not in incomplete | {"PREEMPTED"} | NOT_ENDED


def watch_the_queue() -> None:
    """Make submitit's SLURM jobs (``hydra/launcher=slurm``) use :class:`QueueWatcher`."""
    SlurmJob.watcher = QueueWatcher(delay_s=SlurmJob.watcher._delay_s)
