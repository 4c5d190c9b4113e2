"""Stop a run whose training loss is no longer a number: ``results.json`` says ``diverged``."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class StopOnDivergence(Callback):
    """Stop training at the first step whose gradients are not finite (a non-finite training
    loss makes them so), with one line naming the epoch and the step. The checkpoint callback
    keeps the best checkpoint of before, which the final evaluation uses.

    The gradients are read after data-parallel training has averaged them, so every process
    sees the same ones and stops at the same step, without a collective of its own: a stop
    decided by the one process whose loss went wrong would leave the others waiting for it.
    """

    def __init__(self) -> None:
        self.diverged_at: tuple[int, int] | None = None  # (epoch, step), 1-based epoch
        self._not_finite = False

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module, optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        finite = [torch.isfinite(g).all() for g in grads if g is not None]
        # one read back from the device a step, not one per parameter
        self._not_finite = bool(finite) and not bool(torch.stack(finite).all())

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._not_finite:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.diverged_at = (trainer.current_epoch + 1, trainer.global_step)
        trainer.should_stop = True
        if trainer.is_global_zero:
            print(
                f"diverged: training loss {float(loss)} at epoch {self.diverged_at[0]}, step "
                f"{self.diverged_at[1]}; training stops, the best checkpoint is kept",
                flush=True,
            )
