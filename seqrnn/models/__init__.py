"""LightningModules of the study's tasks."""

from seqrnn.models.base import SequenceModel
from seqrnn.models.classifier import SequenceClassifier

# task name -> LightningModule class; the name is stored in every checkpoint.
TASKS: dict[str, type[SequenceModel]] = {SequenceClassifier.task: SequenceClassifier}

__all__ = ["TASKS", "SequenceClassifier", "SequenceModel"]
