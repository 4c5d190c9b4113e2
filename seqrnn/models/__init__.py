"""LightningModules of the study's tasks."""

from seqrnn.errors import ConfigError
from seqrnn.models.base import SequenceModel
from seqrnn.models.classifier import SequenceClassifier
from seqrnn.models.predictor import Continuation, NextPixelPredictor
from seqrnn.models.symbols import SymbolPredictor

# task name -> LightningModule class; the name is stored in every checkpoint.
TASKS: dict[str, type[SequenceModel]] = {
    model.task: model for model in (SequenceClassifier, NextPixelPredictor, SymbolPredictor)
}


def check_task_data(task: str, datamodule: object) -> None:
    """Raise :class:`~seqrnn.errors.ConfigError` when ``task`` cannot read ``datamodule``'s data
    (e.g. ``task=classify`` on Bayesian symbol sequences, which have no labels)."""
    wanted = TASKS[task].data_family
    family = getattr(datamodule, "family", None)
    if family != wanted:
        # the data config names are the family names (conf/data/mnist.yaml, dirichlet.yaml)
        raise ConfigError(f"task={task} reads {wanted} data, not {family}; use data={wanted}")


__all__ = [
    "check_task_data",
    "TASKS",
    "Continuation",
    "NextPixelPredictor",
    "SequenceClassifier",
    "SequenceModel",
    "SymbolPredictor",
]
