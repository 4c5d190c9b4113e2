"""LightningModules of the study's tasks."""

from seqrnn.errors import ConfigError
from seqrnn.models.base import (
    JOBS,
    TASKS,
    Comparison,
    MilestoneSpec,
    SequenceModel,
    tasks_for,
)
from seqrnn.models.classifier import SequenceClassifier
from seqrnn.models.predictor import Continuation, NextPixelPredictor
from seqrnn.models.symbols import SymbolPredictor

# The built-in tasks register themselves in TASKS (task name -> class) as they are imported
# above: classify, predict, dirichlet, in that order.


def check_task_data(task: str, datamodule: object) -> None:
    """Raise :class:`~seqrnn.errors.ConfigError` when ``task`` cannot read ``datamodule``'s data
    (e.g. ``task=classify`` on Bayesian symbol sequences, which have no labels)."""
    if task not in TASKS:
        raise ConfigError(
            f"task={task} has no model class registered; its conf/task/{task}.yaml names one "
            "(model._target_, a subclass of seqrnn.models.SequenceModel with task = "
            f"{task!r}) that must be importable"
        )
    wanted = TASKS[task].data_family
    family = getattr(datamodule, "family", None)
    if family != wanted:
        # the data config names are the family names (conf/data/mnist.yaml, dirichlet.yaml)
        raise ConfigError(f"task={task} reads {wanted} data, not {family}; use data={wanted}")


__all__ = [
    "check_task_data",
    "Comparison",
    "JOBS",
    "MilestoneSpec",
    "TASKS",
    "tasks_for",
    "Continuation",
    "NextPixelPredictor",
    "SequenceClassifier",
    "SequenceModel",
    "SymbolPredictor",
]
