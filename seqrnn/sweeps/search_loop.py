"""The search loop: workers that draw trials from one Optuna study and train each as one
training run, and what a search leaves in its dir (``trials.csv``, ``best.yaml``).

Plain values in (:class:`SearchSpec`); the loop knows nothing of Hydra: what it needs of the
training entry point is :class:`Training` (make a trial's run from ``train`` overrides; train
it), which ``experiments.search`` hands it. Where the workers run is the caller's: processes on
this machine, or SLURM jobs (:mod:`seqrnn.sweeps.slurm_array`).
"""

from __future__ import annotations

import csv
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from seqrnn.files import write_atomic
from seqrnn.sweeps.search import (
    PruneOnValidation,
    counted_trials,
    is_database_url,
    one_at_a_time,
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
class SearchSpec:
    """One search (conf/search.yaml with its preset, conf/search/<name>.yaml), in plain values.

    ``train``: the training overrides of every trial; ``space``: what a trial draws
    (:func:`seqrnn.sweeps.search.suggest`); ``enqueue``: settings tried first in a new study;
    ``metric``: the ``results.json`` key optimised in ``direction``; ``monitor``: the logged
    value the pruner reads after every epoch; ``trials``: finished trials the study is done at;
    ``timeout``: seconds after which no trial starts; ``storage``: a database URL, or None for
    ``study.db`` in ``study_dir``; the heartbeat and pruner settings:
    :func:`seqrnn.sweeps.search.open_study`."""

    name: str
    direction: str
    metric: str
    monitor: str
    train: list[str]
    space: dict[str, dict[str, Any]]
    enqueue: list[dict[str, Any]]
    trials: int
    timeout: float | None
    seed: int
    study_dir: Path
    storage: str | None = None
    startup_trials: int = 4
    warmup_epochs: int = 2
    heartbeat_seconds: int = 30
    grace_seconds: int = 120


@dataclass(frozen=True)
class Training:
    """What the search loop asks of the training entry point: ``prepare(overrides, run_dir)``
    composes one run's training config (the training defaults with ``overrides``), writes it
    into ``run_dir`` as a run dir of that entry point holds it, and returns it; ``train(config,
    callbacks)`` trains it with ``callbacks`` added and returns what it wrote to
    ``results.json``. The config is the entry point's: the loop only hands it back."""

    prepare: Callable[[list[str], Path], Any]
    train: Callable[[Any, Sequence[Any]], dict[str, Any]]


def storage_of(spec: SearchSpec) -> str | Path:
    """The study's storage: ``storage`` (a database URL), else ``study.db`` in the search dir."""
    return spec.storage or spec.study_dir / STUDY_FILE


def shown_storage(spec: SearchSpec) -> str:
    """The storage as messages show it (a URL's password masked)."""
    storage = storage_of(spec)
    return shown_url(str(storage)) if is_database_url(storage) else str(storage)


def override_text(value: Any) -> str:
    """A sampled value as Hydra override text (``true``, ``0.0031``, ``onecycle``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def trial_overrides(spec: SearchSpec, params: dict[str, Any], trial_dir: Path, threads: int):
    """The ``train`` overrides of one trial, in the order they apply."""
    return [
        *spec.train,
        *(f"{name}={override_text(value)}" for name, value in params.items()),
        f"seed={spec.seed}",
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


def sampler_seed(spec: SearchSpec, worker: int = 0) -> int:
    """The seed of worker ``worker``'s sampler: ``spec.seed + 1000 * worker`` where one search
    starts the workers (a SQLite file: the same search draws the same trials again); where
    workers share a database, each started on its own anywhere, a hash of the seed, the number
    and the process (:func:`worker_name`). Not the process id added: two searches started
    together have neighbouring ids, and :func:`open_study` adds the trials the study already
    holds, so pid 1001 opening an empty study and pid 1000 opening it one trial later drew
    the same settings (a full-suite run once counted 5 trials with 3 distinct settings)."""
    if not is_database_url(storage_of(spec)):
        return spec.seed + 1000 * worker
    # under 2**31: the trials that open_study adds keep it a valid NumPy seed (below 2**32)
    return zlib.crc32(f"{spec.seed} {worker} {worker_name()}".encode()) % 2**31


def open_search(spec: SearchSpec, worker: int = 0):
    """The search's study, opened (or created) by worker number ``worker``, its sampler seeded
    by :func:`sampler_seed`."""
    return open_study(
        storage_of(spec),
        spec.name,
        spec.direction,
        seed=sampler_seed(spec, worker),
        startup_trials=spec.startup_trials,
        warmup_epochs=spec.warmup_epochs,
        heartbeat_seconds=spec.heartbeat_seconds,
        grace_seconds=spec.grace_seconds,
    )


def enqueue_known(study, spec: SearchSpec) -> None:
    """A new study's first trials: the settings the preset knows (``spec.enqueue``), queued
    once even by searches started together on one database."""
    if not spec.enqueue:
        return
    with one_at_a_time(storage_of(spec), spec.name):
        if not study.trials:
            for params in spec.enqueue:
                study.enqueue_trial(params)


def run_worker(study, spec: SearchSpec, training: Training, first: bool = True, threads: int = 1):
    """Draw trials from ``study`` (:func:`open_search`) and train them until it holds
    ``spec.trials`` finished ones or ``spec.timeout`` seconds have passed; returns the study.
    ``first``: the worker that owns the search dir (it fails the trials that a killed search of
    the same SQLite file left running, and queues the preset's known settings into a new study);
    others leave both alone."""
    if first and not is_database_url(storage_of(spec)):
        # only this search uses the file: trials left running are those of dead processes (in
        # a shared database they may be another worker's: there heartbeats find dead ones)
        for number in recover_dead_trials(study):
            print(f"trial {number} was cut off (its process died): failed; it runs once more")
    if first:
        enqueue_known(study, spec)
    who = worker_name()

    def objective(trial) -> float:
        params = suggest(trial, spec.space)
        trial_dir = spec.study_dir / f"trial_{trial.number:03d}"
        print(f"trial {trial.number} on {who}: {trial_dir}", flush=True)
        config = training.prepare(trial_overrides(spec, params, trial_dir, threads), trial_dir)
        trial.set_user_attr("run_dir", str(trial_dir))
        trial.set_user_attr("worker", who)
        results = training.train(config, [PruneOnValidation(trial, spec.monitor)])
        for key in ("epochs", "wall_seconds", "test_acc", "test_loss"):
            if key in results:
                trial.set_user_attr(key, results[key])
        trial.set_user_attr("milestones", results.get("milestones"))
        return float(results[spec.metric])

    def stop_when_done(study, trial) -> None:
        write_trials(study, spec.study_dir / TRIALS_FILE)
        if counted_trials(study) >= spec.trials:
            study.stop()

    if counted_trials(study) < spec.trials:
        study.optimize(objective, timeout=spec.timeout, callbacks=[stop_when_done])
    return study  # trials.csv: written after each trial, and whole by report_best


def report_best(study, spec: SearchSpec) -> None:
    """Print where the study and its trials are and the best trial, and write the best one's
    overrides to ``best.yaml`` (none yet: says so)."""
    write_trials(study, spec.study_dir / TRIALS_FILE)
    print(f"study:  {shown_storage(spec)}  ({counted_trials(study)} trials finished)")
    print(f"trials: {spec.study_dir / TRIALS_FILE}")
    completed = [t for t in study.trials if t.value is not None]
    if not completed:
        print("no trial completed yet")
        return
    best = study.best_trial
    overrides = [*spec.train, *(f"{k}={override_text(v)}" for k, v in best.params.items())]
    write_atomic(spec.study_dir / BEST_FILE, lambda f: yaml.safe_dump(overrides, f), mode="w")
    print(f"best:   trial {best.number}, {spec.metric} {best.value:.4f}")
    print(f"        {' '.join(overrides)}")
