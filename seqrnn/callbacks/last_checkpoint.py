"""``checkpoints/last.ckpt``: the checkpoint a stopped run goes on from (``resume=<run dir>``).

Written at the end of every epoch, every few minutes of training in between (with the batch
loader's position, so the resumed run sees the batches the uninterrupted one would have), and
when the process is told to stop (SIGTERM: a cluster's preemption, ``kill``). Always through a
temporary file and a rename, so a kill during the write leaves the previous ``last.ckpt`` whole.

It owns the stop signals while the run trains and evaluates:

- SIGTERM, and Ctrl-C (SIGINT: what a person at a terminal sends), only mark the stop as asked. At
  the end of the next training or validation batch the processes agree (under data-parallel
  training: a stop asked on any rank stops all, at the same batch), and Lightning stops there:
  during training ``last.ckpt`` is saved with the batch just trained, during validation with the
  epoch's weights (the resumed run validates again), and during the final evaluation nothing is
  saved (``last.ckpt`` already holds the finished training; the resumed run only evaluates).
  Lightning's own handler would run a collective inside the signal handler, which pairs with the
  wrong one when the signal reaches one rank first. A second Ctrl-C quits at once, unsaved
  (``KeyboardInterrupt``).
- In a SLURM job, SIGUSR2 is the time-limit warning (what submitit's ``signal_delay_s`` sends,
  or ``sbatch --signal=B:USR2@<seconds>``): a stop as for SIGTERM, then ``scontrol requeue``, and
  the requeued job goes on from that ``last.ckpt``. It replaces submitit's own handler, which
  requeues without a checkpoint. A warning that comes while the run is still being built (SLURM
  may send it up to a minute early) is kept by :func:`hold_early_warnings` until the run
  trains: it then stops at its first batch, saves and requeues, instead of dying of it.
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
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from seqrnn.layout import LAST_NAME

# Under data-parallel training, whether a timed save is due is rank 0's decision, broadcast to
# the others: asked every this many steps, not every batch (a collective per batch for nothing).
DDP_CHECK_STEPS = 50

# SLURM time-limit warnings (SIGUSR2) that came before a run's LastCheckpoint took the signals.
_early_warnings: list[int] = []


def hold_early_warnings() -> None:
    """In a SLURM job, keep SLURM's time-limit warning (SIGUSR2) from now on for the run about
    to start, instead of dying of it (its default action) while the run is being built; the
    run's LastCheckpoint takes it when training (or the final evaluation) starts."""
    if os.environ.get("SLURM_JOB_ID") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR2, lambda signum, frame: _early_warnings.append(signum))


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
        self._stop_asked = False  # a SIGTERM, Ctrl-C or SLURM's time-limit warning came
        self.stopped_by = signal.SIGTERM  # which of them: the exit status tells the launcher
        self._interrupt_handler = None  # SIGINT's handler before this stage took it
        self._requeue = False  # set by SLURM's time-limit warning
        self._launcher = None
        self._alone = True
        # Lightning's own stop flag (no public setter): its loops stop at their next check, at
        # the point where model, optimizer and loader agree, and raise SIGTERMException
        self._connector = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._saved_at = time.monotonic()
        self._own_signals(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._own_signals(trainer)

    def _own_signals(self, trainer: L.Trainer) -> None:
        """Replace the SIGTERM handler Lightning installed for this stage (it restores the one
        before at the stage's end) and, in a SLURM job, take SIGUSR2."""
        self._stop_asked = self._requeue = False
        self.stopped_by = signal.SIGTERM
        self._launcher = trainer.strategy.launcher
        self._alone = trainer.world_size == 1
        self._connector = trainer._signal_connector
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only (e.g. a search's worker threads)
        signal.signal(signal.SIGTERM, self._stop_signal)
        if self._interrupt_handler is None:
            self._interrupt_handler = signal.signal(signal.SIGINT, self._interrupted)
        if os.environ.get("SLURM_JOB_ID"):
            signal.signal(signal.SIGUSR2, self._time_limit_near)
            if _early_warnings:  # came while the run was being built: stop at the first batch
                _early_warnings.clear()
                self._time_limit_near(signal.SIGUSR2, None)

    def _stop_signal(self, signum: int, frame) -> None:
        """SIGTERM: mark the stop as asked; the ranks agree on it at the end of a batch. A
        single process stops at the end of the batch it is in, as Lightning's handler does."""
        if not self._stop_asked and self._launcher is not None:
            # Lightning's own launcher: pass it on to the processes it started
            self._launcher.kill(signal.SIGTERM)
        self._stop_asked = True
        if self._alone:
            self._connector.received_sigterm = True

    def _interrupted(self, signum: int, frame) -> None:
        """Ctrl-C: the first stops as SIGTERM does (save at the end of the batch); a second one
        while that stop is on its way quits at once, as Ctrl-C does everywhere else."""
        if self._stop_asked:
            self._release_interrupt()
            raise KeyboardInterrupt
        self.stopped_by = signal.SIGINT
        print(
            "Ctrl-C: stopping at the end of this batch and saving last.ckpt "
            "(Ctrl-C again quits at once, unsaved)",
            flush=True,
        )
        # A terminal's Ctrl-C reaches every process of the job itself: nothing to pass on
        self._stop_asked = True
        if self._alone:
            self._connector.received_sigterm = True

    def _release_interrupt(self) -> None:
        """Give SIGINT back the handler it had before this run took it."""
        if self._interrupt_handler is not None:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, self._interrupt_handler)
            self._interrupt_handler = None

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._release_interrupt()

    def _time_limit_near(self, signum: int, frame) -> None:
        """SLURM's warning before the time limit: stop as for SIGTERM, then requeue."""
        self._requeue = True
        self._stop_signal(signal.SIGTERM, frame)

    def _agree_to_stop(self, trainer: L.Trainer) -> None:
        """Stop every rank at the end of this batch when a stop was asked on any: one flag's
        all-reduce per batch under data-parallel training, none otherwise."""
        stop = self._stop_asked
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            self._connector.received_sigterm = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._agree_to_stop(trainer)
        if self.every_seconds is None or trainer.received_sigterm:
            return
        if trainer.world_size > 1 and trainer.global_step % DDP_CHECK_STEPS:
            return  # under data-parallel training the clock is read every few steps only
        due = time.monotonic() - self._saved_at >= self.every_seconds
        # every process must take part in a save: rank 0's clock decides for all
        if trainer.strategy.broadcast(due):
            self.save(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_) -> None:
        if not trainer.sanity_checking:
            self._agree_to_stop(trainer)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_) -> None:
        self._agree_to_stop(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After validation, so the checkpoint holds what the best-checkpoint and early-stopping
        # callbacks made of this epoch's validation.
        self.save(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        training = trainer.state.fn == TrainerFn.FITTING
        if training:
            self.save(trainer)
        if not trainer.is_global_zero:
            return
        if training:
            where = f"at epoch {trainer.current_epoch + 1}, step {trainer.global_step}"
            if trainer.validating:
                where += " (during validation: the resumed run validates again)"
            saved = f"saved {self.path}"
        else:
            where = "during the final evaluation"
            saved = f"{self.path} holds the finished training (the resumed run evaluates again)"
        if self._requeue:
            job = os.environ["SLURM_JOB_ID"]
            requeued = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            outcome = (
                f"requeued SLURM job {job}, which goes on from it"
                if requeued.returncode == 0
                else f"could not requeue SLURM job {job} ({requeued.stderr.strip()})"
            )
            print(f"time limit near {where}: {saved}; {outcome}", flush=True)
            return
        by = "Ctrl-C" if self.stopped_by == signal.SIGINT else "SIGTERM"
        print(f"stopped by {by} {where}: {saved}; resume=<run dir> goes on from it", flush=True)

    def save(self, trainer: L.Trainer) -> None:
        """Write the trainer's full state to ``last.ckpt`` (a temporary file, then a rename)."""
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            trainer.save_checkpoint(temporary, weights_only=False)  # (None logs a line each time)
            if trainer.is_global_zero:
                os.replace(temporary, self.path)
        finally:  # a failed write (a full disk) leaves the previous last.ckpt and nothing else
            if trainer.is_global_zero and temporary.exists():
                temporary.unlink()
        trainer.strategy.barrier("last_checkpoint")
        self._saved_at = time.monotonic()
