"""Many-to-one classifier: read the whole sequence, name the digit from the last output."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from seqrnn.data import EVAL_SPLITS
from seqrnn.models.base import SequenceModel
from seqrnn.nn import ClassifierHead


class SequenceClassifier(SequenceModel):
    """Input affine -> recurrent stack -> last top-layer output -> Linear -> ReLU -> Linear.

    Trained with softmax cross-entropy; logs ``{train,val}/loss`` and ``{train,val}/acc`` per
    epoch, and ``final/<split>_loss``, ``final/<split>_acc`` from :meth:`test_step` when tested on
    :meth:`~seqrnn.data.MNISTSequenceDataModule.eval_dataloaders`.

    Args:
        head_hidden: width of the head's hidden layer (None: ``units``).
        head_batchnorm: BatchNorm on the head's hidden layer.
        classes: number of classes.
        **kwargs: the stack and optimizer settings of :class:`SequenceModel`.

    Shape: ``x [B, T, F]`` -> logits ``[B, classes]``.
    """

    task = "classify"

    def __init__(
        self,
        head_hidden: int | None = None,
        head_batchnorm: bool = False,
        classes: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        units = self.stack.units
        self.head = ClassifierHead(units, head_hidden or units, classes, head_batchnorm)
        # One metric object per logged name: a torchmetrics Metric accumulates until it is
        # reset, so splits evaluated in one run must not share one. (ModuleDict keys cannot be
        # "train", a Module attribute, hence the prefixes.)
        self.acc = nn.ModuleDict(
            {
                key: MulticlassAccuracy(num_classes=classes, average="micro")
                for key in ("fit_train", "fit_val", *(f"final_{split}" for split in EVAL_SPLITS))
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.encode(x)
        return self.head(out[:, -1])

    def _step(self, batch, metric_key: str, loss_name: str, acc_name: str, **log_kwargs):
        """Cross-entropy of one batch; logs the loss and accuracy as epoch means."""
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        metric = self.acc[metric_key]
        metric(logits, y)
        # batch_size makes the epoch mean exact when the last batch is smaller.
        self.log(loss_name, loss, batch_size=len(y), on_step=False, on_epoch=True, **log_kwargs)
        self.log(acc_name, metric, batch_size=len(y), on_step=False, on_epoch=True, **log_kwargs)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "fit_train", "train/loss", "train/acc")
        self.log("train/batch_loss", loss, on_step=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "fit_val", "val/loss", "val/acc", prog_bar=True)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Final evaluation: loader ``k`` of ``trainer.test`` is split ``EVAL_SPLITS[k]``."""
        split = EVAL_SPLITS[dataloader_idx]
        self._step(
            batch,
            f"final_{split}",
            f"final/{split}_loss",
            f"final/{split}_acc",
            add_dataloader_idx=False,
        )
