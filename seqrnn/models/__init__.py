"""LightningModules of the study's tasks."""

from seqrnn.models.base import SequenceModel
from seqrnn.models.classifier import SequenceClassifier
from seqrnn.models.predictor import Continuation, NextPixelPredictor

# task name -> LightningModule class; the name is stored in every checkpoint.
TASKS: dict[str, type[SequenceModel]] = {
    model.task: model for model in (SequenceClassifier, NextPixelPredictor)
}

__all__ = ["TASKS", "Continuation", "NextPixelPredictor", "SequenceClassifier", "SequenceModel"]
