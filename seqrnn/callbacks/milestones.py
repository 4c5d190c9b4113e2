"""Time to accuracy: the first epoch and training second at which a validation metric crossed
each of a few thresholds.

A recipe is judged by how fast it gets somewhere, not only by where it ends; ``results.json``
keeps these crossings under ``milestones`` so that runs of different recipes can be compared on
the time they took to reach, say, 98% validation accuracy.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, Timer

from seqrnn.callbacks.find import find_callback
from seqrnn.models.base import MilestoneSpec


class Milestones(Callback):
    """Record when the model's validation metric first crosses each of its thresholds.

    The spec comes from the LightningModule's ``milestones`` attribute (a
    :class:`MilestoneSpec`; a module without one records nothing). At the end of every
    validation outside the sanity check, each threshold not yet reached is tested against the
    epoch's value; a crossing records the epoch (1-based: epochs completed) and the training
    seconds so far. Those seconds are what ``results.json``'s ``wall_seconds`` counts: the
    :class:`Timer` callback's elapsed training time when there is one (it survives resumes),
    else this callback's own clock. The record is part of the callback's checkpoint state, so a
    resumed run keeps its crossings.
    """

    def __init__(self) -> None:
        self.spec: MilestoneSpec | None = None
        self.reached: dict[str, dict[str, float] | None] = {}
        self._own_seconds = 0.0  # carried over resumes when no Timer runs
        self._started: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.spec = getattr(pl_module, "milestones", None)
        if self.spec is not None:
            for threshold in self.spec.thresholds:
                self.reached.setdefault(self.spec.key(threshold), None)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._own_seconds, self._started = self._clock(), None

    def _clock(self) -> float:
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self._own_seconds + running

    def _seconds(self, trainer: L.Trainer) -> float:
        timer = find_callback(trainer, Timer)
        return timer.time_elapsed("train") if timer is not None else self._clock()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # (not on_validation_epoch_end: the epoch's aggregated metrics are complete only here)
        if self.spec is None or trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.spec.metric)
        if value is None:
            return
        value = float(value)
        for threshold in self.spec.thresholds:
            key = self.spec.key(threshold)
            if self.reached.get(key) is None and self.spec.reached(value, threshold):
                self.reached[key] = {
                    "epoch": trainer.current_epoch + 1,
                    "seconds": round(self._seconds(trainer), 1),
                }

    def state_dict(self) -> dict[str, Any]:
        return {"reached": dict(self.reached), "own_seconds": self._clock()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.reached.update(state_dict.get("reached", {}))
        self._own_seconds = float(state_dict.get("own_seconds", 0.0))
