"""How a run ended: ``completed``, ``early_stopped``, ``time_budget`` or ``diverged``.

``results.json`` records it as ``status``, and reports show it, so a run cut by its time budget
is never read as a converged one.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, Timer
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

from seqrnn.callbacks.divergence import StopOnDivergence
from seqrnn.callbacks.find import find_callback

STATUSES = ("completed", "early_stopped", "time_budget", "diverged")


def run_status(trainer: L.Trainer) -> str:
    """One of :data:`STATUSES` for a trainer whose ``fit`` has returned."""
    divergence = find_callback(trainer, StopOnDivergence)
    if divergence is not None and divergence.diverged_at:
        return "diverged"
    if trainer.max_epochs is not None and 0 < trainer.max_epochs <= trainer.current_epoch:
        return "completed"  # every epoch ran, whatever else would have stopped it next
    timer = find_callback(trainer, Timer)
    budget = timer.time_remaining("train") if timer is not None else None
    if budget is not None and budget <= 0:
        return "time_budget"
    early_stopping = find_callback(trainer, EarlyStopping)
    if (
        early_stopping is not None
        and early_stopping.stopping_reason != EarlyStoppingReason.NOT_STOPPED
    ):
        return "early_stopped"
    return "completed"
