"""The search loop: workers that draw trials from one Optuna study and train each as one
training run, and what a search leaves in its dir (``trials.csv``, ``best.yaml``).

The loop knows nothing of Hydra's command line: what it needs of the training entry point is
:class:`Training` (compose a ``train`` config from overrides; train it), which
``experiments.search`` hands it. Where the workers run is the caller's: processes on this
machine (:func:`start_local_workers`'s command) or SLURM jobs (:mod:`seqrnn.sweeps.slurm_array`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from seqrnn.files import write_atomic
from seqrnn.layout import HYDRA_DIR, RUN_CONFIG, RUN_OVERRIDES
from seqrnn.sweeps.search import (
    PruneOnValidation,
    counted_trials,
    is_database_url,
    open_study,
    recover_dead_trials,
    shown_url,
    suggest,
    trial_rows,
)

STUDY_FILE = "study.db"  # a search's SQLite study, in its dir, where no storage= is given
TRIALS_FILE = "trials.csv"
BEST_FILE = "best.yaml"


@dataclass(frozen=True)
class Training:
    """What the search loop asks of the training entry point: ``compose(overrides)`` gives the
    ``train`` config of one run (conf/train.yaml with ``overrides``), ``train(cfg, callbacks)``
    trains it with ``callbacks`` added and returns what it wrote to ``results.json``."""

    compose: Callable[[list[str]], DictConfig]
    train: Callable[[DictConfig, Sequence[Any]], dict[str, Any]]


def storage_of(cfg: DictConfig) -> str | Path:
    """The study's storage: ``storage=`` (a database URL), else ``study.db`` in the search dir."""
    return cfg.storage or Path(cfg.paths.output_dir) / STUDY_FILE


def shown_storage(cfg: DictConfig) -> str:
    """The storage as messages show it (a URL's password masked)."""
    storage = storage_of(cfg)
    return shown_url(str(storage)) if is_database_url(storage) else str(storage)


def override_text(value: Any) -> str:
    """A sampled value as Hydra override text (``true``, ``0.0031``, ``onecycle``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def trial_overrides(cfg: DictConfig, params: dict[str, Any], trial_dir: Path, threads: int):
    """The ``train`` overrides of one trial, in the order they apply."""
    return [
        *cfg.search.train,
        *(f"{name}={override_text(value)}" for name, value in params.items()),
        f"seed={cfg.seed}",
        f"threads={threads}",
        f"paths.output_dir={trial_dir}",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
    ]


def write_trials(study, path: Path) -> None:
    """``trials.csv``, whole or not at all: workers sharing the search dir write it in turn."""
    rows = trial_rows(study)
    fields = list(dict.fromkeys(key for row in rows for key in row))

    def write(f) -> None:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

    write_atomic(path, write, mode="w")


def worker_name() -> str:
    """Who runs a trial, for ``trials.csv``: the SLURM array task (``<job>_<task>``) or the
    host and process."""
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if job and task:
        return f"{job}_{task}"
    return f"{os.uname().nodename}:{os.getpid()}"


def open_search(cfg: DictConfig, worker: int = 0):
    """The search's study, opened (or created) by worker number ``worker``."""
    search = cfg.search
    storage = storage_of(cfg)
    # workers draw apart: by their number, and where they share a database (each started on
    # its own, anywhere) by their process too
    shared = is_database_url(storage)
    return open_study(
        storage,
        search.name,
        search.direction,
        seed=cfg.seed + 1000 * worker + (os.getpid() if shared else 0),
        startup_trials=search.startup_trials,
        warmup_epochs=search.warmup_epochs,
        heartbeat_seconds=cfg.heartbeat_seconds,
        grace_seconds=cfg.grace_seconds,
    )


def enqueue_known(study, cfg: DictConfig) -> None:
    """A new study's first trials: the recipes the preset knows (``search.enqueue``)."""
    known = cfg.search.get("enqueue")
    if known and not study.trials:
        for params in OmegaConf.to_container(known, resolve=True):
            study.enqueue_trial(params)


def run_worker(study, cfg: DictConfig, training: Training, first: bool = True, threads: int = 1):
    """Draw trials from ``study`` (:func:`open_search`) and train them until it holds
    ``cfg.trials`` finished ones or ``cfg.timeout`` seconds have passed; returns the study.
    ``first``: the worker that owns the search dir (it fails the trials that a killed search of
    the same SQLite file left running, and queues the preset's known recipes into a new study);
    others leave both alone."""
    search = cfg.search
    study_dir = Path(cfg.paths.output_dir)
    if first and not is_database_url(storage_of(cfg)):
        # only this search uses the file: trials left running are those of dead processes (in
        # a shared database they may be another worker's: there heartbeats find dead ones)
        for number in recover_dead_trials(study):
            print(f"trial {number} was cut off (its process died): failed; it runs once more")
    if first:
        enqueue_known(study, cfg)
    space = OmegaConf.to_container(search.space, resolve=True)
    who = worker_name()

    def objective(trial) -> float:
        params = suggest(trial, space)
        trial_dir = study_dir / f"trial_{trial.number:03d}"
        print(f"trial {trial.number} on {who}: {trial_dir}", flush=True)
        overrides = trial_overrides(cfg, params, trial_dir, threads)
        train_cfg = training.compose(overrides)
        # Like a Hydra run dir: the composed config and overrides, for reports and resume=.
        (trial_dir / HYDRA_DIR).mkdir(parents=True, exist_ok=True)
        OmegaConf.save(train_cfg, trial_dir / RUN_CONFIG)
        OmegaConf.save(OmegaConf.create(overrides), trial_dir / RUN_OVERRIDES)
        trial.set_user_attr("run_dir", str(trial_dir))
        trial.set_user_attr("worker", who)
        results = training.train(train_cfg, [PruneOnValidation(trial, search.monitor)])
        for key in ("epochs", "wall_seconds", "test_acc", "test_loss"):
            if key in results:
                trial.set_user_attr(key, results[key])
        trial.set_user_attr("milestones", results.get("milestones"))
        return float(results[search.metric])

    def stop_when_done(study, trial) -> None:
        write_trials(study, study_dir / TRIALS_FILE)
        if counted_trials(study) >= cfg.trials:
            study.stop()

    if counted_trials(study) < cfg.trials:
        study.optimize(objective, timeout=cfg.timeout, callbacks=[stop_when_done])
    write_trials(study, study_dir / TRIALS_FILE)
    return study


def report_best(study, cfg: DictConfig) -> None:
    """Print where the study and its trials are and the best trial, and write the best one's
    overrides to ``best.yaml`` (none yet: says so)."""
    study_dir = Path(cfg.paths.output_dir)
    write_trials(study, study_dir / TRIALS_FILE)
    print(f"study:  {shown_storage(cfg)}  ({counted_trials(study)} trials finished)")
    print(f"trials: {study_dir / TRIALS_FILE}")
    completed = [t for t in study.trials if t.value is not None]
    if not completed:
        print("no trial completed yet")
        return
    best = study.best_trial
    overrides = [*cfg.search.train, *(f"{k}={override_text(v)}" for k, v in best.params.items())]
    OmegaConf.save(OmegaConf.create(overrides), study_dir / BEST_FILE)
    print(f"best:   trial {best.number}, {cfg.search.metric} {best.value:.4f}")
    print(f"        {' '.join(overrides)}")
