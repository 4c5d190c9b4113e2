"""Train a model and evaluate its best checkpoint.

    python -m experiments.train task=classify cell=gru units=128
    python -m experiments.train size=3x32 trainer.max_epochs=20 data.order=row
    python -m experiments.train debug=fast                  # a few batches, nothing kept
    python -m experiments.train resume=<run dir>            # continue from its last.ckpt
    python -m experiments.train -m cell=gru,lstm size=1x32,3x32   # a sweep

Composes the config (the task, cell and size pick the recipe: conf/recipe), builds the data,
model, callbacks, loggers and trainer from it, and hands them to
:func:`seqrnn.training.train_and_evaluate`.
"""

from __future__ import annotations

from omegaconf import DictConfig

from experiments._cli import entry_point
from experiments._runs import build_and_train, check_train_job


def run(cfg: DictConfig) -> float | None:
    results = build_and_train(cfg)
    # A sweeper that optimises (e.g. Optuna) reads the returned number.
    return results.get("val_loss")


if __name__ == "__main__":
    entry_point("train", run, check=check_train_job)
