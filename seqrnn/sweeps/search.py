"""Recipe search with Optuna: a study kept in a database (a SQLite file, or a server such as
PostgreSQL that workers on several machines share), trials drawn from a declared space, and
trials that fall behind pruned after each epoch.

Plain objects in and out; the loop that runs trials: :mod:`seqrnn.sweeps.search_loop`.
"""

from __future__ import annotations

import random
import time
import warnings
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import optuna
from lightning.pytorch.callbacks import Callback

from seqrnn.errors import ConfigError

DIRECTIONS = ("maximize", "minimize")
# Tries at opening a study's storage (workers racing to create an empty database's tables).
STORAGE_ATTEMPTS = 3
# Trials that count towards a search's number of trials (failed ones are retried instead).
COUNTED_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
RUNNING = optuna.trial.TrialState.RUNNING


def suggest(trial: optuna.Trial, space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One value per setting of ``space``, drawn by ``trial``.

    Each entry is ``{choices: [...]}`` (categorical) or ``{low, high}`` with optional ``log``
    (a float, or an int when ``low`` and ``high`` are both ints and ``int: true``).

    Raises:
        ConfigError: an entry that is neither.
    """
    values = {}
    for name, spec in space.items():
        spec = dict(spec)
        if "choices" in spec:
            values[name] = trial.suggest_categorical(name, list(spec["choices"]))
        elif "low" in spec and "high" in spec:
            low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
            if spec.get("int", False):
                values[name] = trial.suggest_int(name, int(low), int(high), log=log)
            else:
                values[name] = trial.suggest_float(name, float(low), float(high), log=log)
        else:
            raise ConfigError(
                f"search space entry {name}={spec} is not allowed; give {{choices: [...]}} or "
                "{low: ..., high: ..., log: true|false}"
            )
    return values


def is_database_url(storage: str | Path) -> bool:
    """Whether ``storage`` names a database server (``postgresql+psycopg://...``) rather than
    a SQLite file path."""
    return "://" in str(storage)


@contextmanager
def one_at_a_time(storage: str | Path, name: str) -> Iterator[None]:
    """Holds a lock named after the study ``name`` in a PostgreSQL ``storage`` (an advisory
    lock, released when the block ends), so that searches started together on their own
    (as on two machines) do not both act on what they read: both would find a new study empty
    and queue its known trials twice. Other storages: no lock (a SQLite file's workers are
    started by one search, which queues them once)."""
    if not str(storage).startswith("postgresql"):
        yield
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    key = zlib.crc32(f"seqrnn search {name}".encode())
    engine = sqlalchemy.create_engine(str(storage), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield
    finally:
        engine.dispose()


def shown_url(url: str) -> str:
    """``url`` with its password masked, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy can parse: shown as given
        return url


def study_storage(
    storage: str | Path, heartbeat_seconds: int = 30, grace_seconds: int = 120
) -> optuna.storages.RDBStorage:
    """Optuna's storage of ``storage`` (a SQLite file path, or a database URL), with heartbeats:
    a running trial's process writes one every ``heartbeat_seconds``; a trial without one for
    ``grace_seconds`` (its worker killed, preempted or out of time) is marked failed when a
    worker next draws a trial, and run once more (once: a trial that kills its worker twice is
    the trial's fault, not the worker's).

    Raises:
        ConfigError: a URL whose driver is not installed, or whose database cannot be reached
            or used, in one line (the password masked).
    """
    if is_database_url(storage):
        url = str(storage)
    else:
        path = Path(storage)
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path.resolve()}"
    for attempt in range(1, STORAGE_ATTEMPTS + 1):
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since v2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=heartbeat_seconds,
                    grace_period=grace_seconds,
                    heartbeat_stale_trial_callback=(
                        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
                    ),
                )
            except ModuleNotFoundError as err:
                raise ConfigError(
                    f"storage={shown_url(url)} needs the database driver {err.name!r}, not "
                    "installed (PostgreSQL: pip install -e '.[postgres]')"
                ) from None
            except Exception as err:  # noqa: BLE001 - SQLAlchemy's and Optuna's many errors
                failed = err
        # Workers started together on an empty database race to create its tables, and all
        # but one fail: they try again once the tables are there.
        if attempt < STORAGE_ATTEMPTS:
            time.sleep(1.0 + random.random())
    reason = str(getattr(failed, "orig", None) or failed).strip().splitlines()[0]
    raise ConfigError(
        f"storage={shown_url(url)} cannot be used: {reason}; give a database URL that this "
        "machine reaches (dialect+driver://user:password@host:port/database)"
    )


def open_study(
    storage: str | Path,
    name: str,
    direction: str,
    seed: int = 0,
    startup_trials: int = 4,
    warmup_epochs: int = 2,
    heartbeat_seconds: int = 30,
    grace_seconds: int = 120,
) -> optuna.Study:
    """The study ``name`` in ``storage`` (a SQLite file path, or a database URL that several
    machines' workers share: :func:`study_storage`), created or reopened.

    Sampler: TPE seeded with ``seed`` plus the trials the study already holds. Pruner: median
    (a trial stops when its value after an epoch is worse than the median of earlier trials'
    values at that epoch), silent for the first ``startup_trials`` trials and the first
    ``warmup_epochs`` epochs of each trial. A trial whose process died while the search goes on
    (no heartbeat for ``grace_seconds``: :func:`study_storage`) is marked failed and run again
    once; one left by a search that was killed as a whole: :func:`recover_dead_trials`.
    """
    if direction not in DIRECTIONS:
        raise ConfigError(
            f"direction={direction!r} is not allowed; choose {' or '.join(DIRECTIONS)}"
        )
    rdb = study_storage(storage, heartbeat_seconds, grace_seconds)
    study = optuna.create_study(
        storage=rdb,
        study_name=name,
        direction=direction,
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs
        ),
        load_if_exists=True,
    )
    # A reopened study's sampler starts past the draws it made before: seeded as before, a
    # resumed search would draw its first trials' parameters again.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


def recover_dead_trials(study: optuna.Study) -> list[int]:
    """Trials left ``running`` by processes that died (a search killed, then started again):
    marked failed now, and their parameters queued to run once more. Only for a search that
    knows no other process is running trials of ``study`` (experiments.search holds the study
    dir's lock). Returns the numbers of the trials it marked."""
    params = {t.number: t.params for t in study.get_trials(states=(RUNNING,))}
    for number in fail_left_running(study):
        study.enqueue_trial(params[number], user_attrs={"retry_of": number})
    return sorted(params)


def fail_left_running(study: optuna.Study) -> list[int]:
    """Mark failed the trials still ``running`` (their processes died; the caller knows no
    live one runs them); returns their numbers."""
    left = study.get_trials(deepcopy=False, states=(RUNNING,))
    for trial in left:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return [trial.number for trial in left]


def counted_trials(study: optuna.Study) -> int:
    """Trials that finished, completed or pruned."""
    return len(study.get_trials(deepcopy=False, states=COUNTED_STATES))


class PruneOnValidation(Callback):
    """Report ``monitor`` to ``trial`` after every validation (step = epochs completed) and stop
    the run with :class:`optuna.TrialPruned` when the study's pruner says so."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        epoch = trainer.current_epoch + 1
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}: {self.monitor}={value:.4f}")


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One flat row per trial: number, state, value, seconds, epochs reached, its params, what
    it recorded (``attr_*``) and the minutes it took to each milestone (``min_to_*``, empty
    where not reached)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        seconds = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else None
        )
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "value": trial.value,
                "seconds": None if seconds is None else round(seconds),
                "epochs": max(trial.intermediate_values, default=None),
                **trial.params,
                **{f"attr_{k}": v for k, v in trial.user_attrs.items() if not isinstance(v, dict)},
                **{
                    f"min_to_{key}": "" if at is None else round(at["seconds"] / 60, 1)
                    for key, at in (trial.user_attrs.get("milestones") or {}).items()
                },
            }
        )
    return rows
