"""Stop a run whose training loss is no longer a number: ``results.json`` says ``diverged``."""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.callbacks import Callback


class StopOnDivergence(Callback):
    """Stop training at the first non-finite training loss, with one line naming the epoch and
    the step. The checkpoint callback keeps the best checkpoint of before, which the final
    evaluation uses."""

    def __init__(self) -> None:
        self.diverged_at: tuple[int, int] | None = None  # (epoch, step), 1-based epoch

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None or math.isfinite(float(loss)):
            return
        self.diverged_at = (trainer.current_epoch + 1, trainer.global_step)
        trainer.should_stop = True
        if trainer.is_global_zero:
            print(
                f"diverged: training loss {float(loss)} at epoch {self.diverged_at[0]}, step "
                f"{self.diverged_at[1]}; training stops, the best checkpoint is kept",
                flush=True,
            )
