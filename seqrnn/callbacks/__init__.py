"""The callbacks that ``conf/callbacks`` names, one module each, and the one way to find a
callback on a trainer.

- :class:`LastCheckpoint`: ``checkpoints/last.ckpt`` for resuming (epoch ends, every few
  minutes, at SIGTERM);
- :class:`Milestones`: the epoch and training second at which validation first reached each
  threshold (``results.json``'s ``milestones``);
- :class:`StopOnDivergence`: non-finite gradients (a non-finite loss makes them so) end the
  run, on every rank at the same step (``status: diverged``);
- :class:`EpochLog`: plain progress lines (every epoch, every few minutes within one) where
  there is no terminal for a progress bar; :class:`EpochBar`: the bar, counting epochs as they do;
- :class:`ShareCores`: torch's threads follow the cores other processes leave free.
"""

from __future__ import annotations

from seqrnn.callbacks.divergence import StopOnDivergence
from seqrnn.callbacks.epoch_log import EpochBar, EpochLog
from seqrnn.callbacks.find import find_callback
from seqrnn.callbacks.last_checkpoint import LastCheckpoint
from seqrnn.callbacks.milestones import Milestones
from seqrnn.callbacks.share_cores import ShareCores

__all__ = [
    "EpochBar",
    "EpochLog",
    "LastCheckpoint",
    "Milestones",
    "ShareCores",
    "StopOnDivergence",
    "find_callback",
]
