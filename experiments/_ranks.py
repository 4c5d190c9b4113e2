"""One run dir for every rank of a data-parallel run that a launcher other than Lightning starts.

Lightning's own launcher hands its child processes rank 0's run dir on their command line. torchrun
and srun instead start every rank as a command of its own, and each would time-stamp a run dir
of its own (``${seqrnn.stamp:}`` in ``hydra.run.dir``), one of them holding the run and the
others only a log. Here the ranks agree on the stamp before Hydra composes anything; the
run-dir patterns read it from ``SEQRNN_RUN_STAMP`` (experiments/__init__.py):

- torchrun: rank 0 puts a time stamp in torchrun's own key-value store, the others read it; a
  restarted group (``--max-restarts``) reads the same stamp, so it goes on in the same run dir
  from its ``last.ckpt``;
- srun (several tasks of one SLURM job step): the stamp is the job and step id,
  ``slurm-<job>.<step>``, the same in every task without talking, and the same again when the job
  is requeued, so that the requeued job goes on from its ``last.ckpt``.

Ranks after the first log to ``<entry>_ddp_process_<rank>.log`` (as Lightning's children do) and
leave ``.hydra/`` to rank 0.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping

from seqrnn.layout import STAMP_FORMAT, STAMP_VARIABLE

STORE_KEY = "seqrnn/run-stamp"
STORE_TIMEOUT = datetime.timedelta(minutes=5)


def launched_rank(env: Mapping[str, str] = os.environ) -> tuple[str, int] | None:
    """``(launcher, rank)`` when torchrun or srun started this process as one of several ranks;
    None for a single process or Lightning's own launcher (which starts the others itself)."""
    if env.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and int(env.get("WORLD_SIZE", "1")) > 1:
        return "torchrun", int(env["RANK"])
    if "SLURM_STEP_ID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return "srun", int(env["SLURM_PROCID"])
    return None


def agreed_stamp(launcher: str, rank: int, env: Mapping[str, str] = os.environ) -> str:
    """The run-dir stamp every rank of this launch uses (see the module docstring)."""
    if launcher == "srun":
        return f"slurm-{env['SLURM_JOB_ID']}.{env['SLURM_STEP_ID']}"
    from torch.distributed import TCPStore

    store = TCPStore(
        env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False, timeout=STORE_TIMEOUT
    )
    if rank == 0:
        mine = datetime.datetime.now().strftime(STAMP_FORMAT)
        # compare_set keeps a stamp set before: a restarted group goes on in the same run dir
        return store.compare_set(STORE_KEY, "", mine).decode()
    return store.get(STORE_KEY).decode()


def rank_overrides(argv: list[str], env: Mapping[str, str] = os.environ) -> list[str]:
    """Agree on the run dir's stamp (``SEQRNN_RUN_STAMP`` in this process's environment) when
    another launcher started this process as one of several ranks, and return the overrides this
    rank adds: none for rank 0, its own log file and no ``.hydra/`` for the others.

    Nothing to agree on when the command names its run dir (``hydra.run.dir=``, ``resume=``, a
    rank of Lightning's own launcher) or is a sweep."""
    launch = launched_rank(env)
    names_dir = any(t.startswith(("hydra.run.dir=", "resume=")) for t in argv)
    if launch is None or names_dir or {"-m", "--multirun"} & set(argv):
        return []
    launcher, rank = launch
    os.environ[STAMP_VARIABLE] = agreed_stamp(launcher, rank, env)
    if rank == 0:
        return []
    log = f"${{hydra.runtime.output_dir}}/${{hydra.job.name}}_ddp_process_{rank}.log"
    return ["hydra.output_subdir=null", f"hydra.job_logging.handlers.file.filename={log}"]
