"""The one way to find a callback on a trainer (the Timer, the Milestones ...)."""

from __future__ import annotations

from typing import TypeVar

import lightning as L
from lightning.pytorch.callbacks import Callback

C = TypeVar("C", bound=Callback)


def find_callback(trainer: L.Trainer, kind: type[C]) -> C | None:
    """The trainer's first callback of class ``kind`` (a subclass counts), None without one."""
    return next((c for c in trainer.callbacks if isinstance(c, kind)), None)
