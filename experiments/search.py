"""Search for a fast training recipe with Optuna.

    python -m experiments.search search=classify              # conf/search/classify.yaml
    python -m experiments.search search=predict timeout=5400  # start no trial after 90 min
    python -m experiments.search search=classify trials=40    # go on with a bigger budget

Every trial is one ``experiments.train`` run (composed from conf/train.yaml with the preset's
``train`` overrides and the values the trial drew) in ``outputs/search/<name>/trial_<n>/``;
trials that fall behind the median after an epoch are pruned. The study is kept in
``outputs/search/<name>/study.db`` (SQLite), so the same command resumes it after a kill;
``trials.csv`` lists every trial and ``best.yaml`` holds the best one's overrides.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments._cli import entry_point
from seqrnn.layout import HYDRA_DIR, RUN_CONFIG, RUN_OVERRIDES

STUDY_FILE = "study.db"
WORKER_KEY = "+search_worker"  # set on the extra worker processes a search starts


def override_text(value: Any) -> str:
    """A sampled value as Hydra override text (``true``, ``0.0031``, ``onecycle``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def trial_overrides(cfg: DictConfig, params: dict[str, Any], trial_dir: Path, threads: int):
    """The experiments.train overrides of one trial, in the order they apply."""
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
    """``trials.csv``, whole or not at all: workers sharing the study dir write it in turn."""
    from seqrnn.files import write_atomic
    from seqrnn.sweeps.search import trial_rows

    rows = trial_rows(study)
    fields = list(dict.fromkeys(key for row in rows for key in row))

    def write(f) -> None:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

    write_atomic(path, write, mode="w")


def start_workers(count: int) -> list[subprocess.Popen]:
    """``count`` more processes of this same command, each running trials of the same study."""
    argv = [a for a in sys.argv[1:] if not a.startswith(("workers=", WORKER_KEY))]
    return [
        subprocess.Popen(
            [sys.executable, "-m", "experiments.search", *argv, "workers=1", f"{WORKER_KEY}={i}"]
        )
        for i in range(1, count + 1)
    ]


def run(cfg: DictConfig) -> None:
    from seqrnn.errors import require_int, require_seconds
    from seqrnn.sweeps.search import is_database_url
    from seqrnn.training.lock import run_lock

    require_int("trials", cfg.trials, 1)
    require_int("workers", cfg.workers, 1)
    require_seconds("timeout", cfg.timeout)

    if "search_worker" in cfg or is_database_url(storage_of(cfg)):
        # started by the search below, which holds the lock; or one of the workers that share
        # a database, on this machine or others (heartbeats find the trials of dead ones)
        search_study(cfg)
        return
    # one search per study dir: trials left running are then those of processes that died
    with run_lock(Path(cfg.paths.output_dir)):
        search_study(cfg)


def storage_of(cfg: DictConfig) -> str | Path:
    """The study's storage: ``storage=`` (a database URL), else ``study.db`` in the study dir."""
    return cfg.storage or Path(cfg.paths.output_dir) / STUDY_FILE


def search_study(cfg: DictConfig) -> None:
    from hydra import compose

    from experiments.train import train
    from seqrnn.sweeps.search import (
        PruneOnValidation,
        counted_trials,
        is_database_url,
        open_study,
        recover_dead_trials,
        suggest,
    )

    search = cfg.search
    study_dir = Path(cfg.paths.output_dir)
    storage = storage_of(cfg)
    shared = is_database_url(storage)
    # workers draw apart: the helpers by their number, workers started on their own (a shared
    # database) by their process too
    worker = int(cfg.get("search_worker", 0)) + (os.getpid() if shared else 0)
    study = open_study(
        storage,
        search.name,
        search.direction,
        seed=cfg.seed + 1000 * worker,
        startup_trials=search.startup_trials,
        warmup_epochs=search.warmup_epochs,
    )
    # trials left running in a file only this search uses are those of dead processes; in a
    # shared database they may be another worker's: there the heartbeats find dead ones
    if "search_worker" not in cfg and not shared:
        for number in recover_dead_trials(study):
            print(f"trial {number} was cut off (its process died): failed; it runs once more")
    workers = cfg.workers
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // workers)
    space = OmegaConf.to_container(search.space, resolve=True)
    known = search.get("enqueue")
    if known and not study.trials and "search_worker" not in cfg:  # new study: known recipes
        for params in OmegaConf.to_container(known, resolve=True):
            study.enqueue_trial(params)

    def objective(trial) -> float:
        params = suggest(trial, space)
        trial_dir = study_dir / f"trial_{trial.number:03d}"
        overrides = trial_overrides(cfg, params, trial_dir, threads)
        train_cfg = compose(config_name="train", overrides=overrides)
        # Like a Hydra run dir: the composed config and overrides, for reports and resume=.
        (trial_dir / HYDRA_DIR).mkdir(parents=True, exist_ok=True)
        OmegaConf.save(train_cfg, trial_dir / RUN_CONFIG)
        OmegaConf.save(OmegaConf.create(overrides), trial_dir / RUN_OVERRIDES)
        trial.set_user_attr("run_dir", str(trial_dir))
        results = train(train_cfg, extra_callbacks=[PruneOnValidation(trial, search.monitor)])
        for key in ("epochs", "wall_seconds", "test_acc", "test_loss"):
            if key in results:
                trial.set_user_attr(key, results[key])
        trial.set_user_attr("milestones", results.get("milestones"))
        return float(results[search.metric])

    def stop_when_done(study, trial) -> None:
        write_trials(study, study_dir / "trials.csv")
        if counted_trials(study) >= cfg.trials:
            study.stop()

    helpers = start_workers(workers - 1) if workers > 1 else []
    if counted_trials(study) < cfg.trials:
        study.optimize(objective, timeout=cfg.timeout, callbacks=[stop_when_done])
    for helper in helpers:
        helper.wait()
    write_trials(study, study_dir / "trials.csv")
    if "search_worker" in cfg:
        return
    report_best(study, cfg, study_dir)


def report_best(study, cfg: DictConfig, study_dir: Path) -> None:
    """Print the best trial and write its overrides to ``best.yaml``."""
    from seqrnn.sweeps.search import counted_trials, is_database_url, shown_url

    storage = storage_of(cfg)
    where = shown_url(str(storage)) if is_database_url(storage) else storage
    print(f"study:  {where}  ({counted_trials(study)} trials finished)")
    print(f"trials: {study_dir / 'trials.csv'}")
    completed = [t for t in study.trials if t.value is not None]
    if not completed:
        print("no trial completed yet")
        return
    best = study.best_trial
    overrides = [*cfg.search.train, *(f"{k}={override_text(v)}" for k, v in best.params.items())]
    OmegaConf.save(OmegaConf.create(overrides), study_dir / "best.yaml")
    print(f"best:   trial {best.number}, {cfg.search.metric} {best.value:.4f}")
    print(f"        {' '.join(overrides)}")


if __name__ == "__main__":
    entry_point("search", run)
