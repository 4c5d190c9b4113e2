"""Workers as one SLURM job array: ``sbatch --array=1-N`` of one command, and waiting for its
tasks to leave the queue (``squeue``, which every SLURM answers; ``sacct`` needs accounting).

The search starts its workers on a cluster this way (``experiments.search launcher=slurm``):
each array task is one worker process drawing trials from a shared study.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from seqrnn.errors import ConfigError

# The array task's number, as SLURM gives it to the task's shell.
TASK_NUMBER = "${SLURM_ARRAY_TASK_ID}"


def require_sbatch() -> None:
    """Raises ConfigError in one line where this machine cannot submit SLURM jobs."""
    if shutil.which("sbatch") is None:
        raise ConfigError(
            "launcher=slurm needs SLURM's sbatch on this machine's PATH (run the search on a "
            "cluster's login node; on one machine: launcher=local)"
        )


def sbatch_options(settings: Mapping[str, Any]) -> list[str]:
    """The sbatch options of ``settings`` (conf/launcher/slurm.yaml): cores, memory, time,
    partition, requeue, and its extra ``sbatch`` list last (so that they win)."""
    options = [
        f"--cpus-per-task={settings['cpus_per_task']}",
        f"--mem={settings['mem_gb']}G",
        f"--time={settings['time_min']}",
    ]
    if settings.get("partition"):
        options.append(f"--partition={settings['partition']}")
    options.append("--requeue" if settings.get("requeue", True) else "--no-requeue")
    return [*options, *settings.get("sbatch", [])]


def submit_array(
    command: Sequence[str],
    count: int,
    settings: Mapping[str, Any],
    log_dir: Path,
    workdir: Path,
    name: str = "seqrnn-search",
) -> str:
    """Submit ``command`` as an array of ``count`` tasks (numbered 1..count; every task's
    command gets ``TASK_NUMBER`` where it says so), each writing its output to
    ``log_dir/worker-<job>_<task>.out`` (appended to when requeued); returns the job id.

    Raises:
        ConfigError: sbatch is missing or refused the job (its reason, one line).
    """
    require_sbatch()
    log_dir.mkdir(parents=True, exist_ok=True)
    # quoted word by word, except the task number, which the task's shell fills in
    line = " ".join(w if TASK_NUMBER in w else shlex.quote(w) for w in command)
    submitted = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--array=1-{count}",
            f"--job-name={name}",
            "--open-mode=append",
            f"--output={log_dir / 'worker-%A_%a.out'}",
            f"--chdir={workdir}",
            *sbatch_options(settings),
            "--wrap",
            f"exec {line}",
        ],
        capture_output=True,
        text=True,
    )
    if submitted.returncode != 0:
        reason = (submitted.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise ConfigError(f"sbatch refused the workers: {reason}")
    return submitted.stdout.strip().split(";")[0]


def array_states(job: str) -> dict[str, str]:
    """``{"<job>_<task>": state}`` of the array's tasks still in the queue (pending ones one by
    one); empty once all have left it."""
    listed = subprocess.run(
        ["squeue", "-h", "-r", "-j", job, "-o", "%i|%T"], capture_output=True, text=True
    )
    if listed.returncode != 0:  # a job the queue has forgotten: all its tasks ended
        return {}
    return dict(line.split("|", 1) for line in listed.stdout.split() if "|" in line)


def cancel(job: str) -> None:
    """Cancel every task of ``job``."""
    subprocess.run(["scancel", job], capture_output=True)


def wait_for_array(
    job: str,
    poll_seconds: float,
    tell: Callable[[str], None],
    progress: Callable[[], str] = lambda: "",
) -> None:
    """Wait until every task of ``job`` has left the queue, telling a line whenever the count
    of its tasks in each state changes (``progress()`` adds to it, e.g. the trials done)."""
    said = None
    while states := array_states(job):
        counts = Counter(state.lower() for state in states.values())
        shown = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        line = f"workers of job {job}: {shown}"
        if line != said:
            extra = progress()
            tell(f"{line}{'; ' + extra if extra else ''}")
            said = line
        time.sleep(poll_seconds)
