"""``checkpoints/last.ckpt``: the checkpoint a stopped run goes on from (``resume=<run dir>``).

Written at the end of every epoch, every few minutes of training in between (with the batch
loader's position, so the resumed run sees the batches the uninterrupted one would have), and
when the process is told to stop (SIGTERM: a cluster's preemption, ``kill``). Always through a
temporary file and a rename, so a kill during the write leaves the previous ``last.ckpt`` whole.

In a SLURM job it is also the one owner of the time-limit warning, SIGUSR2 (what submitit's
``signal_delay_s`` sends, or ``sbatch --signal=B:USR2@<seconds>``): the run stops at the end
of the current batch as for SIGTERM, saves, and requeues its job (``scontrol requeue``), which
goes on from that ``last.ckpt``. It replaces submitit's own handler, which requeues without a
checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from seqrnn.layout import LAST_NAME

# Under data-parallel training, whether a timed save is due is rank 0's decision, broadcast to
# the others: asked every this many steps, not every batch (a collective per batch for nothing).
DDP_CHECK_STEPS = 50


class LastCheckpoint(Callback):
    """Keep ``<dirpath>/last.ckpt`` up to date for resuming.

    Args:
        dirpath: the folder of the checkpoint (``<run dir>/checkpoints``).
        every_minutes: also write it after the training batch that ends this many minutes
            since the last write (mid-epoch); ``None`` or 0: at epoch ends only.
    """

    def __init__(self, dirpath: str | Path, every_minutes: float | None = 5.0) -> None:
        if every_minutes is not None and every_minutes < 0:
            raise ValueError(f"every_minutes={every_minutes} must be >= 0 or null")
        self.path = Path(dirpath) / LAST_NAME
        self.every_seconds = 60.0 * every_minutes if every_minutes else None
        self._saved_at = time.monotonic()
        self._requeue = False  # set by SLURM's time-limit warning

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._saved_at = time.monotonic()
        self._requeue = False
        job = os.environ.get("SLURM_JOB_ID")
        if job and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR2, self._time_limit_near)

    def _time_limit_near(self, signum: int, frame) -> None:
        """SLURM's warning before the time limit: stop as for SIGTERM, then requeue."""
        self._requeue = True
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's own stop at the end of the batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_seconds is None:
            return
        if trainer.world_size > 1 and trainer.global_step % DDP_CHECK_STEPS:
            return  # under data-parallel training the clock is read every few steps only
        due = time.monotonic() - self._saved_at >= self.every_seconds
        # every process must take part in a save: rank 0's clock decides for all
        if trainer.strategy.broadcast(due):
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After validation, so the checkpoint holds what the best-checkpoint and early-stopping
        # callbacks made of this epoch's validation.
        self.save(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # Lightning turns SIGTERM into this exception at the end of the current batch, where
        # the model, optimizer and loader agree with each other.
        if not isinstance(exception, SIGTERMException):
            return
        self.save(trainer)
        if not trainer.is_global_zero:
            return
        where = f"epoch {trainer.current_epoch + 1}, step {trainer.global_step}"
        if self._requeue:
            job = os.environ["SLURM_JOB_ID"]
            requeued = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            outcome = (
                f"requeued SLURM job {job}, which goes on from it"
                if requeued.returncode == 0
                else f"could not requeue SLURM job {job} ({requeued.stderr.strip()})"
            )
            print(f"time limit near at {where}: saved {self.path}; {outcome}", flush=True)
            return
        print(
            f"stopped by SIGTERM at {where}: saved {self.path}; resume=<run dir> goes on from it",
            flush=True,
        )

    def save(self, trainer: L.Trainer) -> None:
        """Write the trainer's full state to ``last.ckpt`` (a temporary file, then a rename)."""
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(temporary, weights_only=False)  # (None logs a line each time)
        if trainer.is_global_zero:
            os.replace(temporary, self.path)
        trainer.strategy.barrier("last_checkpoint")
        self._saved_at = time.monotonic()
