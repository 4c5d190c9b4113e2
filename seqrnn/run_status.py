"""How a run ended: ``completed``, ``early_stopped``, ``time_budget`` or ``diverged``.

``results.json`` records it as ``status``, and reports show it, so a run cut by its time budget
is never read as a converged one.
"""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, Timer
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

STATUSES = ("completed", "early_stopped", "time_budget", "diverged")


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


def run_status(trainer: L.Trainer) -> str:
    """One of :data:`STATUSES` for a trainer whose ``fit`` has returned."""
    callbacks = trainer.callbacks
    if any(isinstance(c, StopOnDivergence) and c.diverged_at for c in callbacks):
        return "diverged"
    if trainer.max_epochs is not None and 0 < trainer.max_epochs <= trainer.current_epoch:
        return "completed"  # every epoch ran, whatever else would have stopped it next
    timer = next((c for c in callbacks if isinstance(c, Timer)), None)
    budget = timer.time_remaining("train") if timer is not None else None
    if budget is not None and budget <= 0:
        return "time_budget"
    stopped = EarlyStoppingReason.NOT_STOPPED
    if any(isinstance(c, EarlyStopping) and c.stopping_reason != stopped for c in callbacks):
        return "early_stopped"
    return "completed"
