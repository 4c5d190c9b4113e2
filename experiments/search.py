"""Search for a fast training recipe with Optuna.

    python -m experiments.search search=classify              # conf/search/classify.yaml
    python -m experiments.search search=predict timeout=5400  # start no trial after 90 min
    python -m experiments.search search=classify trials=40    # go on with a bigger budget
    python -m experiments.search launcher=slurm workers=8 storage=postgresql+psycopg://...

Every trial is one ``experiments.train`` run (composed from conf/train.yaml with the preset's
``train`` overrides and the values the trial drew) in ``outputs/search/<name>/trial_<n>/``;
trials that fall behind the median after an epoch are pruned. The study is kept in
``outputs/search/<name>/study.db`` (SQLite), so the same command resumes it after a kill, or in
a database (``storage=<URL>``) that workers on several machines share; ``launcher=slurm``
starts the workers as one SLURM job array. ``trials.csv`` lists every trial and ``best.yaml``
holds the best one's overrides. The loop itself: :mod:`seqrnn.sweeps.search_loop`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from experiments._cli import entry_point
from seqrnn.layout import entry_command

WORKER_KEY = "+search_worker"  # set on the worker processes a search starts


def spec_of(cfg: DictConfig):
    """The search of the composed ``search`` config, in the plain values the loop takes."""
    from omegaconf import OmegaConf

    from seqrnn.sweeps.search_loop import SearchSpec

    search = cfg.search
    return SearchSpec(
        name=search.name,
        direction=search.direction,
        metric=search.metric,
        monitor=search.monitor,
        train=list(search.train),
        space=OmegaConf.to_container(search.space, resolve=True),
        enqueue=OmegaConf.to_container(search.enqueue, resolve=True) if "enqueue" in search else [],
        trials=cfg.trials,
        timeout=cfg.timeout,
        seed=cfg.seed,
        study_dir=Path(cfg.paths.output_dir),
        storage=cfg.storage,
        startup_trials=search.startup_trials,
        warmup_epochs=search.warmup_epochs,
        heartbeat_seconds=cfg.heartbeat_seconds,
        grace_seconds=cfg.grace_seconds,
    )


def training():
    """This entry point's side of the search loop's contract (:class:`Training`): a trial's
    ``train`` config composed from its overrides (in the search's Hydra context) and written
    into its dir as a Hydra run dir holds it (for reports and ``resume=``), trained by
    :func:`experiments.train.train`."""
    from hydra import compose
    from omegaconf import OmegaConf

    from experiments.train import train
    from seqrnn.layout import HYDRA_DIR, RUN_CONFIG, RUN_OVERRIDES
    from seqrnn.sweeps.search_loop import Training

    def prepare(overrides: list[str], run_dir: Path) -> DictConfig:
        cfg = compose(config_name="train", overrides=overrides)
        (run_dir / HYDRA_DIR).mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, run_dir / RUN_CONFIG)
        OmegaConf.save(OmegaConf.create(overrides), run_dir / RUN_OVERRIDES)
        return cfg

    return Training(prepare=prepare, train=lambda cfg, callbacks: train(cfg, callbacks))


def worker_command(*extra: str) -> list[str]:
    """This same command as one more worker of its study: ``workers=`` and ``launcher=`` are
    the worker's own."""
    own = ("workers=", "launcher=", "launcher.", WORKER_KEY)
    argv = [a for a in sys.argv[1:] if not a.startswith(own)]
    return [sys.executable, "-m", *entry_command("search", *argv, "workers=1", *extra)]


def check(cfg: DictConfig) -> None:
    from seqrnn.errors import ConfigError, require_int, require_seconds
    from seqrnn.sweeps.search import is_database_url

    require_int("trials", cfg.trials, 1)
    require_int("workers", cfg.workers, 1)
    require_seconds("timeout", cfg.timeout)
    if cfg.grace_seconds <= cfg.heartbeat_seconds:
        raise ConfigError(
            f"grace_seconds={cfg.grace_seconds} is not allowed; it must be more than "
            f"heartbeat_seconds={cfg.heartbeat_seconds} (a live worker would be taken for dead)"
        )
    if cfg.launcher.name == "slurm" and not is_database_url(cfg.storage or ""):
        raise ConfigError(
            f"launcher=slurm needs storage=<database URL> that every node reaches (storage="
            f"{cfg.storage}: SQLite locks up on shared filesystems), e.g. "
            "postgresql+psycopg://user:password@host:5432/database (docs/sweeps.md)"
        )


def run(cfg: DictConfig) -> None:
    from seqrnn.sweeps.search import is_database_url
    from seqrnn.training.lock import run_lock

    check(cfg)
    if cfg.launcher.name == "slurm":
        search_on_slurm(cfg)
    elif "search_worker" in cfg or is_database_url(cfg.storage or ""):
        # started by a search that holds the lock; or one of the workers that share a database,
        # on this machine or others (heartbeats find the trials of dead ones)
        search_here(cfg)
    else:
        # one search per study dir: trials left running are then those of processes that died
        with run_lock(Path(cfg.paths.output_dir)):
            search_here(cfg)


def search_here(cfg: DictConfig) -> None:
    """``workers`` worker processes on this machine: this one and ``workers - 1`` more."""
    from seqrnn.sweeps.search_loop import open_search, report_best, run_worker

    spec = spec_of(cfg)
    study = open_search(spec, int(cfg.get("search_worker", 0)))  # the storage answers first
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // cfg.workers)
    helpers = [subprocess.Popen(worker_command(f"{WORKER_KEY}={i}")) for i in range(1, cfg.workers)]
    run_worker(study, spec, training(), first="search_worker" not in cfg, threads=threads)
    for helper in helpers:
        helper.wait()
    if "search_worker" not in cfg:
        report_best(study, spec)


def search_on_slurm(cfg: DictConfig) -> None:
    """``workers`` SLURM jobs (one array) drawing from the study in ``storage``; waits for
    them, then writes trials.csv and best.yaml. Ctrl-C cancels the array."""
    from seqrnn.console import tell
    from seqrnn.sweeps.search import counted_trials, fail_left_running
    from seqrnn.sweeps.search_loop import enqueue_known, open_search, report_best, shown_storage
    from seqrnn.sweeps.slurm_array import TASK_NUMBER, cancel, submit_array, wait_for_array

    spec = spec_of(cfg)
    study_dir = spec.study_dir
    study = open_search(spec)  # the storage answers, and the study exists before any worker
    enqueue_known(study, spec)
    command = worker_command(f"threads={cfg.launcher.cpus_per_task}", f"{WORKER_KEY}={TASK_NUMBER}")
    settings = dict(cfg.launcher)
    job = submit_array(command, cfg.workers, settings, study_dir / "workers", Path.cwd())
    tell(
        f"submitted {cfg.workers} workers as SLURM job {job} (logs: {study_dir / 'workers'}); "
        f"study {spec.name} in {shown_storage(spec)}"
    )
    try:
        wait_for_array(
            job,
            cfg.launcher.poll_seconds,
            tell,
            progress=lambda: f"{counted_trials(study)} of {cfg.trials} trials finished",
        )
    except KeyboardInterrupt:
        cancel(job)
        tell(f"cancelled the workers (scancel {job}); the same command goes on with the study")
        raise SystemExit(130) from None
    # every worker has ended: a trial still marked running lost its worker after the last
    # heartbeat check (the others had finished the search by then)
    for number in fail_left_running(study):
        tell(f"trial {number} lost its worker and no worker was left to run it again: failed")
    report_best(study, spec)


if __name__ == "__main__":
    entry_point("search", run)
