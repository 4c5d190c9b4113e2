"""One training run: fit, evaluate the best checkpoint, ``results.json``; the checkpoints it
reads and writes, the lock that makes a run dir one process's, and how the run ended.

- :mod:`~seqrnn.training.fit`: :func:`train_and_evaluate`, :func:`evaluate_splits`;
- :mod:`~seqrnn.training.checkpoints`: ``ckpt=`` resolution, loading, resuming, exporting;
- :mod:`~seqrnn.training.lock`: one process per run dir;
- :mod:`~seqrnn.training.status`: ``completed``, ``early_stopped``, ``time_budget``, ``diverged``.
"""

from seqrnn.training.fit import describe_model, evaluate_splits, train_and_evaluate

__all__ = ["describe_model", "evaluate_splits", "train_and_evaluate"]
