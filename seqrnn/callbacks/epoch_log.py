"""Plain progress lines, for logs that are files (batch jobs, ``nohup``, CI), where a live
progress bar writes thousands of redraws and no history: one line per epoch, and one every few
minutes within an epoch, so that a long epoch is never silent. The progress bar's own epoch
count is numbered as these lines are (:class:`EpochBar`)."""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar

from seqrnn.console import tell


def epochs_text(trainer: L.Trainer, epoch: int) -> str:
    """``3/20`` for the 0-based ``epoch``, or ``3`` when the run has no epoch limit."""
    total = trainer.max_epochs
    return f"{epoch + 1}/{total}" if total is not None and total > 0 else f"{epoch + 1}"


def minutes_text(seconds: float) -> str:
    """``42 s``, ``7 min``, ``2 h 05 min``: a time as a person reads it in a log."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


class EpochLog(Callback):
    """Print (and log, :func:`seqrnn.console.tell`), after every training epoch (its validation
    included), one line such as
    ``epoch 3/20  train loss 0.2345 acc 0.9321 | val loss 0.2012 acc 0.9412 | 312 s, 176 seq/s``,
    and within an epoch, every ``every_minutes`` of training, one such as
    ``epoch 3/20  step 120/430 (28%)  loss 0.4123 | 176 seq/s, epoch ends in 3 min``.

    The seconds are the epoch's wall time, validation included; sequences/s counts the training
    sequences of the epoch over that time (after a resume in the middle of an epoch: of the part
    this session ran).

    Args:
        every_minutes: minutes of training between lines within an epoch; None or 0: none.
    """

    def __init__(self, every_minutes: float | None = 2.0) -> None:
        if every_minutes is not None and every_minutes < 0:
            raise ValueError(f"every_minutes={every_minutes} must be >= 0 or null")
        self.every_seconds = 60.0 * every_minutes if every_minutes else None
        self._started = 0.0
        self._told = 0.0
        self._sequences = 0
        self._batches = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a run resumed in the middle of an epoch starts without an epoch start
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = self._told = time.perf_counter()
        self._sequences = self._batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._sequences += len(batch[0])
        self._batches += 1
        now = time.perf_counter()
        if self.every_seconds is None or now - self._told < self.every_seconds:
            return
        self._told = now
        if trainer.is_global_zero:
            tell(self._step_line(trainer, outputs, batch_idx, now - self._started))

    def _step_line(self, trainer: L.Trainer, outputs, batch_idx: int, seconds: float) -> str:
        total = trainer.num_training_batches
        done = batch_idx + 1
        where = f"step {done}"
        if isinstance(total, int) and total > 0:
            where += f"/{total} ({100 * done / total:.0f}%)"
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        parts = [f"epoch {epochs_text(trainer, trainer.current_epoch)}  {where}"]
        if loss is not None:
            parts[0] += f"  loss {float(loss):.4f}"
        rate = self._sequences / seconds if seconds > 0 else 0.0
        timing = f"{rate:.0f} seq/s"
        if isinstance(total, int) and total > done and self._batches:
            left = (total - done) * seconds / self._batches
            timing += f", the epoch's training ends in {minutes_text(left)}"
        return " | ".join([*parts, timing])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        seconds = time.perf_counter() - self._started
        metrics = trainer.callback_metrics
        parts = []
        for stage in ("train", "val"):
            values = [
                f"{name} {float(metrics[f'{stage}/{name}']):.4f}"
                for name in ("loss", "acc", "kl")
                if f"{stage}/{name}" in metrics
            ]
            if values:
                parts.append(f"{stage} {' '.join(values)}")
        rate = self._sequences / seconds if seconds > 0 else 0.0
        tell(
            f"epoch {epochs_text(trainer, trainer.current_epoch)}  {' | '.join(parts)} | "
            f"{seconds:.0f} s, {rate:.0f} seq/s"
        )


class EpochBar(RichProgressBar):
    """Lightning's rich progress bar, with epochs counted as the epoch lines count them
    (``Epoch 1/20``, not Lightning's 0-based ``Epoch 0/19``)."""

    def _get_train_description(self, current_epoch: int) -> str:
        # Lightning's (private) hook for the bar's label; the padding keeps the label as wide
        # as the validation bar's, as Lightning's does
        text = f"Epoch {epochs_text(self.trainer, current_epoch)}"
        return f"{text:{len(self.validation_description)}}"
