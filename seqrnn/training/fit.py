"""One training run from start to ``results.json``: fit, evaluate the best checkpoint, record.

Plain objects in, plain dict out; the Hydra entry point ``experiments.train`` builds the objects.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, Timer
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger
from torch.utils.tensorboard.summary import hparams as tensorboard_hparams

from seqrnn.callbacks.find import find_callback
from seqrnn.callbacks.milestones import Milestones
from seqrnn.data import EVAL_SPLITS, SequenceDataModule
from seqrnn.files import write_json_atomic
from seqrnn.layout import RESULTS_FILE, RUN_CONFIG
from seqrnn.models import SequenceModel
from seqrnn.training.checkpoints import check_resumable
from seqrnn.training.status import run_status


def run_hparams(
    model: SequenceModel, datamodule: SequenceDataModule, trainer: L.Trainer, **extra: Any
) -> dict[str, Any]:
    """The settings that tell runs apart, as one flat dict for TensorBoard's HPARAMS tab."""
    settings = {
        "task": model.task,
        **{k: v for k, v in model.hparams.items() if v is not None},
        "data": datamodule.description,
        "order": datamodule.order,
        **datamodule.settings(),
        "batch_size": datamodule.batch_size,
        "max_epochs": trainer.max_epochs,
        "gradient_clip_val": trainer.gradient_clip_val or 0.0,
        **extra,
    }
    # TensorBoard takes numbers, strings and booleans; a list such as head_hidden shows as text.
    plain = (int, float, str, bool)
    return {k: v if isinstance(v, plain) else str(v) for k, v in settings.items()}


def train_and_evaluate(
    model: SequenceModel,
    datamodule: SequenceDataModule,
    trainer: L.Trainer,
    run_dir: str | Path,
    resume_from: str | Path | None = None,
    extra_hparams: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit ``model``, evaluate its best checkpoint on every split, write ``results.json``.

    The best checkpoint is the one the trainer's :class:`ModelCheckpoint` kept (the current
    weights when it has none). The evaluation covers the whole train, val and test splits unless
    the trainer's ``limit_test_batches`` says otherwise; ``results["evaluated"]`` records how many
    examples each split's numbers cover. The final metrics also go to TensorBoard's HPARAMS tab.

    Args:
        resume_from: a ``last.ckpt`` to continue from (see :func:`check_resumable`).
        extra_hparams: more settings to show beside the model's in TensorBoard (e.g. the seed).
    Returns:
        The dict written to ``<run_dir>/results.json``.
    """
    run_dir = Path(run_dir)
    if resume_from is not None:
        resume_from = check_resumable(resume_from, model)
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    # Read before testing: restoring the best checkpoint for the test also restores the Timer
    # and the Milestones to that epoch.
    train_seconds = _training_seconds(trainer, fallback=time.perf_counter() - started)
    milestones = _milestones(trainer)
    status = run_status(trainer)

    # the checkpoint callback that keeps the best (it has a monitor; last.ckpt's has none)
    keepers = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
    checkpoint = next((c for c in keepers if c.monitor is not None), None)
    best = checkpoint.best_model_path if checkpoint is not None else ""
    started = time.perf_counter()
    metrics = evaluate_splits(trainer, model, datamodule, ckpt_path=best or None)
    eval_seconds = time.perf_counter() - started

    results: dict[str, Any] = {
        **describe_model(model, datamodule),
        "status": status,
        "epochs": trainer.current_epoch,
        "wall_seconds": round(train_seconds + eval_seconds, 1),
        "checkpoint": _relative_to(best, run_dir) if best else None,
        **metrics,
    }
    if milestones is not None:
        results["milestones"] = milestones

    if not trainer.is_global_zero:  # data-parallel: one process writes
        return results
    hparams = run_hparams(model, datamodule, trainer, **(extra_hparams or {}))
    final_tags = sorted(f"final/{key}" for key in metrics if key != "evaluated")
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            log_hparams_with_metrics(logger, hparams, final_tags)
        else:  # MLflow's params, a CSVLogger's hparams.yaml (final/* went in as metrics)
            logger.log_hyperparams(hparams)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / RESULTS_FILE, results)
    attach_files(trainer.loggers, [run_dir / RESULTS_FILE, run_dir / RUN_CONFIG])
    return results


def attach_files(loggers: list[Logger], paths: list[Path]) -> None:
    """Store ``paths`` (those that exist) as artifacts of the loggers' runs that keep files
    (MLflow): the run's results and composed config travel with its metrics."""
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            for path in paths:
                if path.is_file():
                    logger.experiment.log_artifact(logger.run_id, str(path))


def describe_model(model: SequenceModel, datamodule: SequenceDataModule) -> dict[str, Any]:
    """What ``results.json`` says a model is: task, cell, size, data, parameters."""
    return {
        "task": model.task,
        "cell": model.stack.cell,  # a cell given by its class path: by its name
        "units": model.hparams.units,
        "layers": model.hparams.layers,
        "order": datamodule.order,
        **datamodule.order_settings(),
        "data": datamodule.description,
        "params": model.num_parameters,
    }


def evaluate_splits(
    trainer: L.Trainer,
    model: SequenceModel,
    datamodule: SequenceDataModule,
    ckpt_path: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (or the weights of ``ckpt_path``) on every split of ``EVAL_SPLITS``.

    Returns ``{"<split>_<metric>": value, ..., "evaluated": {split: examples}}``: the numbers
    of ``results.json`` (``train_loss``, ``test_acc``, ``test_bits``, ...). How much of each split
    is covered follows the trainer's ``limit_test_batches``.
    """
    evaluations = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    logged = {key: value for evaluation in evaluations for key, value in evaluation.items()}
    metrics: dict[str, Any] = {}
    # final/<split>_<name> -> <split>_<name>
    for split in EVAL_SPLITS:
        for key, value in sorted(logged.items()):
            if key.startswith(f"final/{split}_"):
                metrics[key.removeprefix("final/")] = value
    metrics["evaluated"] = _evaluated_examples(trainer)
    return metrics


def log_hparams_with_metrics(
    logger: TensorBoardLogger, hparams: dict[str, Any], metric_tags: list[str]
) -> None:
    """Fill TensorBoard's HPARAMS tab: ``hparams`` beside the metrics logged under ``metric_tags``.

    The tab shows, per run, the latest value of each tag, so the final metrics (logged by the
    test run at the last step) are what it compares. Lightning's own ``log_hyperparams`` would
    log the metrics again at step 0, where a resumed run would leave two values to pick from.
    """
    logger.log_hyperparams(hparams)  # hparams.yaml beside the event files
    experiment, start, end = tensorboard_hparams(hparams, {tag: 0.0 for tag in metric_tags})
    # SummaryWriter's public add_hparams writes into a new sub-run of its own, which TensorBoard
    # shows as another run; the raw summaries must go to this run's event file, and the writer
    # has no public method for that.
    writer = logger.experiment._get_file_writer()
    for summary in (experiment, start, end):
        writer.add_summary(summary)
    logger.experiment.flush()


def _training_seconds(trainer: L.Trainer, fallback: float) -> float:
    """Training time over all sessions of a resumed run (the Timer keeps it in checkpoints)."""
    timer = find_callback(trainer, Timer)
    return timer.time_elapsed("train") if timer is not None else fallback


def _milestones(trainer: L.Trainer) -> dict[str, Any] | None:
    """The crossings the :class:`Milestones` callback recorded (a copy), None without one."""
    callback = find_callback(trainer, Milestones)
    if callback is None or callback.spec is None:
        return None
    return {key: None if at is None else dict(at) for key, at in callback.reached.items()}


def _evaluated_examples(trainer: L.Trainer) -> dict[str, int]:
    """Examples behind each split's final numbers (fewer than the split under a batch limit)."""
    counts = {}
    for split, loader, batches in zip(
        EVAL_SPLITS, trainer.test_dataloaders, trainer.num_test_batches, strict=True
    ):
        counts[split] = loader.covered(int(batches))
    return counts


def _relative_to(path: str | Path, root: Path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(root.resolve()))
    except ValueError:
        return str(path)
