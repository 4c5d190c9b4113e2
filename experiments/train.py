"""Train a model and evaluate its best checkpoint.

    python -m experiments.train task=classify cell=gru units=128
    python -m experiments.train size=3x32 trainer.max_epochs=20 data.order=row
    python -m experiments.train debug=fast                  # a few batches, nothing kept
    python -m experiments.train resume=<run dir>            # continue from its last.ckpt
    python -m experiments.train -m cell=gru,lstm size=1x32,3x32   # a sweep

Composes the config (the task, cell and size pick the recipe: conf/recipe) and runs
:func:`train`: one training run, top to bottom. ``experiments.search`` runs it for each trial.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from experiments._cli import entry_point, first_process, quiet_lightning
from experiments._runs import (
    check_run_settings,
    check_train_job,
    going_on_line,
    job_device,
    print_outputs,
    runnable_precision,
    slurm_plugins,
    threads_per_job,
    use_tf32,
    what_is_kept,
)
from seqrnn.layout import LAST_CHECKPOINT, RESULTS_FILE


def train(cfg: DictConfig, extra_callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """One training run of the composed ``train`` config: the data, the model, the callbacks,
    the loggers and the trainer built from it, trained (or resumed from the run dir's
    ``last.ckpt``) and its best checkpoint evaluated on every split by
    :func:`seqrnn.training.train_and_evaluate`; returns what it wrote to ``results.json``.

    ``extra_callbacks`` join the configured ones (a search's pruning callback). The run dir's
    lock (:mod:`seqrnn.training.lock`) is held throughout; a run dir with ``results.json`` is
    not trained again unless ``skip_done=false``."""
    import json

    import lightning as L
    import torch
    from hydra.utils import get_class, instantiate
    from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from seqrnn.callbacks import EpochLog, LastCheckpoint, find_callback
    from seqrnn.callbacks.last_checkpoint import hold_early_warnings
    from seqrnn.console import tell
    from seqrnn.errors import OutputError
    from seqrnn.models import check_task_data
    from seqrnn.training import train_and_evaluate
    from seqrnn.training.checkpoints import AtomicCheckpointIO, resumable_checkpoint
    from seqrnn.training.lock import run_lock

    hold_early_warnings()  # a SLURM time-limit warning before training must not end the job
    run_dir = Path(cfg.paths.output_dir)
    # One process per run dir; under data-parallel training the first process holds it.
    lock = run_lock(run_dir) if first_process() else contextlib.nullcontext()
    with lock, job_device(cfg) as device:
        if cfg.skip_done and (run_dir / RESULTS_FILE).is_file():
            # A re-launched sweep: this job finished before.
            print(f"done before: {run_dir / RESULTS_FILE} (skip_done=false runs it again)")
            return json.loads((run_dir / RESULTS_FILE).read_text())

        # The process: settings, numerics, threads, seeds.
        check_run_settings(cfg)
        use_tf32(bool(cfg.get("tf32", False)))
        threads = cfg.threads or threads_per_job()
        if threads:
            torch.set_num_threads(threads)
        quiet_lightning()
        L.seed_everything(cfg.seed, workers=True, verbose=False)

        # The data first: it decides the model's input width (1 per pixel, 28 per row).
        datamodule = instantiate(cfg.data)
        get_class(cfg.model._target_)  # importing a task's class registers it (models.TASKS)
        check_task_data(cfg.task, datamodule)
        datamodule.prepare_data()
        datamodule.setup("fit")
        model = instantiate(cfg.model, in_features=datamodule.features)

        # A dir with a last.ckpt is a run that was stopped: go on from there (checked before
        # the trainer prints anything: a damaged one is one line).
        last = run_dir / LAST_CHECKPOINT
        if last.is_file():
            saved = resumable_checkpoint(last, model)
            if first_process():
                tell(going_on_line(run_dir, saved, cfg.trainer.get("max_epochs")))

        # Callbacks and loggers.
        configured = (cfg.get("callbacks") or {}).values()
        callbacks = [instantiate(c) for c in configured if c is not None]
        callbacks += list(extra_callbacks)
        # A live bar only on a terminal that asked for one; elsewhere one plain line per epoch.
        bar = bool(cfg.trainer.get("enable_progress_bar", True)) and sys.stdout.isatty()
        if not bar:
            callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)] + [EpochLog()]
        loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
        if not loggers:  # `~logger`: nothing to write the learning rate to
            callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]

        # The trainer: every checkpoint written whole or not at all (a full disk keeps the last
        # good one); in a SLURM job, seqrnn alone owns the signals.
        trainer = instantiate(
            cfg.trainer,
            callbacks=callbacks,
            logger=loggers or False,
            enable_progress_bar=bar,
            plugins=[AtomicCheckpointIO(), *slurm_plugins()],
            **device,
            **runnable_precision(cfg.trainer),
        )

        # Train, then evaluate the best checkpoint on every split.
        try:
            results = train_and_evaluate(
                model,
                datamodule,
                trainer,
                run_dir,
                resume_from=last if last.is_file() else None,
                extra_hparams={"seed": cfg.seed},
            )
        except SIGTERMException:
            # last.ckpt holds the run (LastCheckpoint saved it); no results.json, so a
            # re-launch resumes it. The exit status says "not finished, and by which signal"
            # (143 for SIGTERM, 130 for Ctrl-C, as shells report them).
            saver = find_callback(trainer, LastCheckpoint)
            raise SystemExit(128 + (saver.stopped_by if saver else signal.SIGTERM)) from None
        except OutputError as err:
            raise OutputError(f"{err}; {what_is_kept(run_dir)}") from err
    if trainer.is_global_zero:
        print_outputs(run_dir, results)
    return results


def run(cfg: DictConfig) -> float | None:
    results = train(cfg)
    # A sweeper that optimises (e.g. Optuna) reads the returned number.
    return results.get("val_loss")


if __name__ == "__main__":
    entry_point("train", run, check=check_train_job)
