"""One plain line per epoch, for logs that are files (batch jobs, ``nohup``, CI), where a live
progress bar writes thousands of redraws and no history."""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import Callback


class EpochLog(Callback):
    """Print, after every training epoch (its validation included), one line such as
    ``epoch 3/20  train loss 0.2345 acc 0.9321 | val loss 0.2012 acc 0.9412 | 312 s, 176 seq/s``.

    The seconds are the epoch's wall time, validation included; sequences/s counts the training
    sequences of the epoch over that time (after a resume in the middle of an epoch: of the part
    this session ran).
    """

    def __init__(self) -> None:
        self._started = 0.0
        self._sequences = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a run resumed in the middle of an epoch starts without an epoch start
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started, self._sequences = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._sequences += len(batch[0])

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
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        rate = self._sequences / seconds if seconds > 0 else 0.0
        print(
            f"epoch {trainer.current_epoch + 1}{total}  {' | '.join(parts)} | "
            f"{seconds:.0f} s, {rate:.0f} seq/s",
            flush=True,
        )
