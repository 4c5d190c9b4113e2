"""Many-to-one classifier: read the whole sequence, name the digit from the last output."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from seqrnn.models.base import Comparison, MilestoneSpec, SequenceModel
from seqrnn.nn import MLPHead


class SequenceClassifier(SequenceModel):
    """Input affine -> recurrent stack -> last top-layer output -> Linear -> [BatchNorm] -> ReLU
    -> Linear.

    Trained with softmax cross-entropy; logs ``loss`` and ``acc`` (see :class:`SequenceModel`).

    Args:
        head_hidden: width of the head's hidden layer (None: ``units``).
        head_batchnorm: BatchNorm on the head's hidden layer (the library default, and the
            GRU-128's recipe; the searched recipes, with chrono gate biases, leave it out).
        classes: number of classes.
        bn_refresh_batches: see :class:`SequenceModel`; the head's BatchNorm uses it.
        **kwargs: the stack and optimizer settings of :class:`SequenceModel`.

    Shape: ``x [B, T, F]`` -> logits ``[B, classes]``.
    """

    task = "classify"
    milestones = MilestoneSpec("val/acc", "max", (0.90, 0.95, 0.97, 0.98, 0.99))
    jobs = ("evaluate", "analyze")
    comparison = Comparison("test_acc", "test accuracy", True, "val/acc>=0.98")

    def __init__(
        self,
        head_hidden: int | None = None,
        head_batchnorm: bool = True,
        classes: int = 10,
        bn_refresh_batches: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(bn_refresh_batches=bn_refresh_batches, **kwargs)
        units = self.stack.units
        # The head: Linear -> [BatchNorm] -> ReLU -> Linear.
        self.head = MLPHead(units, [head_hidden or units], classes, head_batchnorm)
        # One accuracy per stage: a torchmetrics Metric accumulates until it is reset, so
        # splits evaluated in one run must not share one.
        self.acc = nn.ModuleDict(
            {
                stage: MulticlassAccuracy(num_classes=classes, average="micro")
                for stage in self.METRIC_STAGES
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, state = self.encode(x)
        return self.head(self.stack.top_output(state))

    def batch_metrics(self, batch, stage: str) -> tuple[torch.Tensor, dict[str, Any]]:
        """Softmax cross-entropy (nats per example) and accuracy of one batch."""
        x, y = batch
        logits = self(x)
        accuracy = self.acc[stage]
        accuracy(logits, y)
        return F.cross_entropy(logits, y), {"acc": accuracy}
