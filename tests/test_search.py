"""Recipe search: the Optuna study, its pruning callback, and `python -m experiments.search`."""

import csv
import dataclasses
import json
import os

import optuna
import pytest
import yaml
from conftest import quiet_trainer, run_entry, tiny_rows, tiny_search_args

from seqrnn.errors import ConfigError
from seqrnn.models import SequenceClassifier
from seqrnn.sweeps.search import PruneOnValidation, counted_trials, open_study, suggest


def test_suggest_draws_every_kind_of_setting():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = {
        "model.lr": {"low": 1e-4, "high": 1e-1, "log": True},
        "trainer.max_epochs": {"low": 2, "high": 5, "int": True},
        "model.gate_bias_init": {"choices": ["constant", "chrono"]},
    }
    for _ in range(20):
        values = suggest(study.ask(), space)
        assert 1e-4 <= values["model.lr"] <= 1e-1
        assert isinstance(values["trainer.max_epochs"], int)
        assert 2 <= values["trainer.max_epochs"] <= 5
        assert values["model.gate_bias_init"] in ("constant", "chrono")


def test_a_bad_space_entry_is_named():
    study = optuna.create_study()
    with pytest.raises(ConfigError, match=r"search space entry model.lr=\{'high': 1\} is not"):
        suggest(study.ask(), {"model.lr": {"high": 1}})


def test_pruning_stops_a_trial_that_falls_behind(tiny_mnist, tmp_path):
    # a pruner that prunes every accuracy below 2: the first report stops the run
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(2.0))
    trial = study.ask()
    trainer = quiet_trainer(
        max_epochs=5,
        limit_train_batches=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[PruneOnValidation(trial, "val/acc")],
    )
    model = SequenceClassifier(in_features=28, units=8)
    with pytest.raises(optuna.TrialPruned, match="pruned after epoch 1: val/acc="):
        trainer.fit(model, datamodule=tiny_rows(tiny_mnist))
    assert trainer.current_epoch == 0
    assert list(trial.storage.get_trial(trial._trial_id).intermediate_values) == [1]


def test_open_study_reopens_the_same_study(tmp_path):
    first = open_study(tmp_path / "s.db", "x", "maximize")
    first.optimize(lambda t: t.suggest_float("a", 0, 1), n_trials=2)
    again = open_study(tmp_path / "s.db", "x", "maximize")
    assert counted_trials(again) == 2
    with pytest.raises(ConfigError, match="direction='up' is not allowed"):
        open_study(tmp_path / "t.db", "x", "up")


@pytest.fixture(scope="module")
def searched(tiny_mnist, tmp_path_factory):
    study_dir = tmp_path_factory.mktemp("search")
    result = run_entry("search", *tiny_search_args(tiny_mnist, study_dir, "trials=3", "workers=2"))
    assert result.returncode == 0, result.stderr[-3000:]
    return study_dir, result


def test_search_runs_its_trials_as_training_runs(searched):
    study_dir, result = searched
    rows = list(csv.DictReader((study_dir / "trials.csv").open()))
    finished = [r for r in rows if r["state"] in ("complete", "pruned")]
    assert len(finished) >= 3  # two workers may each finish the last one
    for row in rows:
        if row["state"] != "complete":
            continue
        run_dir = study_dir / f"trial_{int(row['trial']):03d}"
        results = json.loads((run_dir / "results.json").read_text())
        assert float(row["value"]) == pytest.approx(results["val_acc"])
        # the trial trained with the values it drew
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        assert config["model"]["lr"] == pytest.approx(float(row["model.lr"]), rel=1e-5)
        assert config["data"]["batch_size"] == int(row["data.batch_size"])
        assert config["data"]["order"] == "row"
        # minutes to each milestone, from the trial's results (none reached on random images)
        assert row["min_to_val/acc>=0.9"] == "" and results["milestones"]["val/acc>=0.9"] is None
    best = yaml.safe_load((study_dir / "best.yaml").read_text())
    assert "task=classify" in best and any(o.startswith("model.lr=") for o in best)
    assert "best:   trial" in result.stdout


def test_enqueued_recipes_are_tried_first(tiny_mnist, tmp_path):
    enqueue = "+search.enqueue=[{model.lr: 0.0042, data.batch_size: 64}]"
    args = tiny_search_args(tiny_mnist, tmp_path, "trials=1", "workers=1", enqueue)
    result = run_entry("search", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert (float(row["model.lr"]), row["data.batch_size"]) == (0.0042, "64")


def test_search_resumes_its_study(searched, tiny_mnist):
    study_dir, _ = searched
    before = counted_trials(open_study(study_dir / "study.db", "tiny", "maximize"))
    again = run_entry("search", *tiny_search_args(tiny_mnist, study_dir, f"trials={before + 1}"))
    assert again.returncode == 0, again.stderr[-3000:]
    after = counted_trials(open_study(study_dir / "study.db", "tiny", "maximize"))
    assert after == before + 1


def test_unknown_search_preset_is_one_line():
    result = run_entry("search", "search=fastest")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: search=fastest is not a known search (in 'search=fastest'); "
        "choose one of: classify, predict, smoke"
    ]


PAUSER = """
import time
from pathlib import Path
from lightning.pytorch.callbacks import Callback

class PauseOnce(Callback):
    def __init__(self, marker):
        self.marker = Path(marker)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self.marker.exists():
            self.marker.write_text("paused")
            time.sleep(120)
"""


def test_a_killed_search_fails_its_cut_off_trial_runs_it_again_and_draws_nothing_twice(
    tiny_mnist, tmp_path
):
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import PROJECT_ROOT

    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "pauser.py").write_text(PAUSER)
    marker, study_dir = tmp_path / "paused", tmp_path / "study"
    pause = ["+callbacks.pause._target_=pauser.PauseOnce", f"+callbacks.pause.marker={marker}"]
    args = tiny_search_args(tiny_mnist, study_dir, "workers=1", train_extra=pause)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'helpers'}{os.pathsep}{PROJECT_ROOT}"}
    env.pop("SEQRNN_DATA_DIR", None)
    first = subprocess.Popen(
        [sys.executable, "-m", "experiments.search", *args, "trials=2"],
        cwd=PROJECT_ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "the first trial never started"
    os.killpg(first.pid, signal.SIGKILL)  # the whole search, mid-trial
    first.wait()
    study = open_study(study_dir / "study.db", "tiny", "maximize")
    (cut_off,) = study.trials
    assert cut_off.state == optuna.trial.TrialState.RUNNING  # as the kill left it

    again = run_entry("search", *args, "trials=3", env={"PYTHONPATH": env["PYTHONPATH"]})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trial 0 was cut off (its process died): failed; it runs once more" in again.stdout
    rows = list(csv.DictReader((study_dir / "trials.csv").open()))
    assert rows[0]["state"] == "fail"
    retried = [r for r in rows[1:] if r["model.lr"] == rows[0]["model.lr"]]
    assert len(retried) == 1 and retried[0]["state"] in ("complete", "pruned")
    drawn = [(r["model.lr"], r["data.batch_size"]) for r in rows[1:]]
    assert len(drawn) == len(set(drawn)) == 3  # no finished configuration drawn again


def test_workers_sharing_a_database_seed_their_samplers_far_apart(tmp_path, monkeypatch):
    """Searches started together have neighbouring process ids, and a study's sampler seed
    grows by the trials it already holds: two such workers must not meet on one seed (they
    drew the same settings: 5 trials with 3 distinct ones). One search's SQLite workers keep
    the plain, reproducible seeds."""
    from seqrnn.sweeps.search_loop import SearchSpec, sampler_seed

    spec = SearchSpec(
        name="seeds",
        direction="maximize",
        metric="val_acc",
        monitor="val/acc",
        train=[],
        space={},
        enqueue=[],
        trials=4,
        timeout=None,
        seed=7,
        study_dir=tmp_path,
        storage="postgresql+psycopg://seqrnn@db.example:5432/seqrnn",
    )
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    seeds = []
    for pid in range(4000, 4050):
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        seeds.append(sampler_seed(spec))
    # a study holds far fewer than 10,000 trials: no two workers' seeds within that of another
    gaps = [abs(a - b) for i, a in enumerate(seeds) for b in seeds[i + 1 :]]
    assert min(gaps) > 10_000, sorted(seeds)
    assert all(0 <= seed < 2**31 for seed in seeds)
    local = dataclasses.replace(spec, storage=None)
    assert [sampler_seed(local, worker) for worker in (0, 1, 2)] == [7, 1007, 2007]


def test_searches_started_together_on_one_database_queue_the_known_trials_once(
    postgres_url, tmp_path, monkeypatch
):
    """Two searches that open a new study at the same moment both find it empty; the study's
    lock in the database lets one queue the preset's known trials and the other see them (a
    full-suite run once drew each known trial twice). The queueing is slowed so that, without
    the lock, both would queue."""
    import threading
    import time
    import uuid

    from seqrnn.sweeps.search_loop import SearchSpec, enqueue_known, open_search

    known = [{"model.lr": 0.001}, {"model.lr": 0.002}]
    spec = SearchSpec(
        name=f"race-{uuid.uuid4().hex[:8]}",
        direction="maximize",
        metric="val_acc",
        monitor="val/acc",
        train=[],
        space={"model.lr": {"low": 1e-4, "high": 1e-1, "log": True}},
        enqueue=known,
        trials=4,
        timeout=None,
        seed=0,
        study_dir=tmp_path,
        storage=postgres_url,
    )
    studies = [open_search(spec, worker) for worker in (0, 1)]
    queue = optuna.Study.enqueue_trial

    def slow_queue(study, params, **kwargs):
        time.sleep(0.5)
        queue(study, params, **kwargs)

    monkeypatch.setattr(optuna.Study, "enqueue_trial", slow_queue)
    threads = [threading.Thread(target=enqueue_known, args=(study, spec)) for study in studies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    queued = optuna.load_study(study_name=spec.name, storage=postgres_url).trials
    assert len(queued) == len(known), [t.system_attrs for t in queued]


def test_two_workers_share_one_study_in_postgresql(postgres_url, tiny_mnist, tmp_path):
    """Two searches started together on their own with one storage URL (as on two machines)
    on an empty database draw from one study: the trials are counted once, none is left
    running, none drawn twice."""
    import subprocess
    import sys
    import uuid

    from conftest import PROJECT_ROOT

    name = f"tiny-{uuid.uuid4().hex[:8]}"
    study_dir = tmp_path / "study"
    args = tiny_search_args(tiny_mnist, study_dir, "workers=1", "trials=4")
    args += [f"search.name={name}", f"storage={postgres_url}"]
    env = {k: v for k, v in os.environ.items() if k != "SEQRNN_DATA_DIR"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "experiments.search", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name=name, storage=postgres_url)
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    counted = [
        t
        for t in study.trials
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    # each worker stops once 4 are counted; the other may be finishing one more then
    assert 4 <= len(counted) <= 5
    drawn = [tuple(sorted(t.params.items())) for t in counted]
    assert len(drawn) == len(set(drawn))
    assert {t.user_attrs["run_dir"] for t in study.trials} == {
        str(study_dir / f"trial_{t.number:03d}") for t in study.trials
    }
    rows = list(csv.DictReader((study_dir / "trials.csv").open()))
    assert len(rows) == len(study.trials)
    assert (study_dir / "best.yaml").is_file()
    assert "seqrnn:***@" in outputs[0][0] and "seqrnn:seqrnn@" not in outputs[0][0]
