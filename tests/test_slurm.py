"""The cluster path on a real one-node SLURM (scripts/slurm-local, which `.ci/run` starts): a
sweep through `hydra/launcher=slurm_cpu`, and a job requeued in the middle of an epoch that goes
on from the batch it was stopped at. Skipped without a cluster, except under CI=true; only on
that cluster (its name is seqrnn-local), since every test ends by cancelling the queue's jobs."""

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from conftest import PROJECT_ROOT, run_train, tiny_overrides

pytestmark = pytest.mark.slurm

# Waits at the end of one training batch (the first time only: a marker file says it did) until
# SIGTERM has come, so that a requeue always lands in the middle of that epoch.
PAUSER = textwrap.dedent(
    """
    import time
    from pathlib import Path
    from lightning.pytorch.callbacks import Callback

    class PauseAt(Callback):
        def __init__(self, epoch, batch, marker):
            self.at, self.marker = (epoch, batch), Path(marker)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if (trainer.current_epoch, batch_idx) != self.at or self.marker.exists():
                return
            self.marker.write_text(str(trainer.global_step))
            for _ in range(3600):  # at most 3 minutes
                if trainer.received_sigterm:
                    return
                time.sleep(0.05)
    """
)
SETTINGS = [
    "data.order=row",
    "trainer.max_epochs=2",
    "threads=1",
    "trainer.enable_progress_bar=false",
]


LOCAL_CLUSTER = "seqrnn-local"  # the ClusterName scripts/slurm-local writes


def queued_jobs() -> list[str]:
    listed = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
    return listed.stdout.split()


@pytest.fixture(scope="module")
def node() -> str:
    """The local cluster's node, idle; without one a skip (a failure under CI=true)."""
    found = shutil.which("sinfo") and subprocess.run(
        ["sinfo", "-h", "-o", "%t %n"], capture_output=True, text=True, timeout=30
    )
    states = found.stdout.split() if found and found.returncode == 0 else []
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    settings = dict(line.split("=", 1) for line in config.stdout.splitlines() if "=" in line)
    name = {key.strip(): value.strip() for key, value in settings.items()}.get("ClusterName")
    if not states or states[0] not in ("idle", "mix") or name != LOCAL_CLUSTER:
        why = f"no local SLURM cluster {LOCAL_CLUSTER} (start one as root: scripts/slurm-local)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; CI needs it")
        pytest.skip(why)
    return states[1]


@pytest.fixture
def cluster(node):
    """The node, with an empty queue before and after the test: a job a failed test leaves
    behind would hold the node's CPUs and be taken for the next test's job."""
    for job in queued_jobs():
        subprocess.run(["scancel", job], capture_output=True)
    yield node
    for job in queued_jobs():
        subprocess.run(["scancel", job], capture_output=True)
    wait_for(lambda: not queued_jobs(), 60, "the cancelled jobs to leave the queue")


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def job_field(job: str, name: str) -> str | None:
    """Field ``name`` of ``scontrol show job``; None once the job is gone."""
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True)
    for word in shown.stdout.split():
        if word.startswith(f"{name}="):
            return word.removeprefix(f"{name}=")
    return None


def job_state(job: str) -> str:
    return job_field(job, "JobState") or "GONE"


def queue_state(job: str) -> str:
    """The job's state as squeue lists it (COMPLETING while any run of it is still ending)."""
    listed = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True)
    return listed.stdout.strip() or "GONE"


def job_environment(tmp_path, **modules: str) -> dict[str, str]:
    """The environment of a job that imports the callback modules ``name=source`` (written to
    ``tmp_path/helpers``), reading data only from the paths its command gives."""
    helpers = tmp_path / "helpers"
    helpers.mkdir(exist_ok=True)
    for name, source in modules.items():
        (helpers / f"{name}.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(helpers), str(PROJECT_ROOT)])}
    env.pop("SEQRNN_DATA_DIR", None)
    return env


def the_queued_job() -> str:
    """The id of the one job in the queue."""
    (job,) = queued_jobs()
    return job


def run_seconds(job: str) -> int:
    days, _, clock = job_field(job, "RunTime").rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def bring_the_time_limit_near(job: str) -> None:
    """Cut a running job's time limit to end 1-2 minutes from now. SLURM sends the warning
    (--signal=...@40) up to a minute before it is due, so a 1-minute limit given at submission
    could warn a job before it had started training; cut once the job waits at its pause, the
    warning comes while it waits there, on a machine of any speed."""
    minutes = run_seconds(job) // 60 + 2
    subprocess.run(["scontrol", "update", f"JobId={job}", f"TimeLimit={minutes}"], check=True)


def test_a_sweep_through_the_slurm_launcher_completes_and_reports(cluster, tiny_mnist, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train(
        "-m",
        "hydra/launcher=slurm_cpu",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.mem_gb=2",
        "cell=gru,lstm",
        *tiny_overrides(tiny_mnist),
        *SETTINGS,
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("classify-gru-1x32_0", "classify-lstm-1x32_1"):
        results = json.loads((sweep / job / "results.json").read_text())
        assert results["status"] == "completed" and results["epochs"] == 2
    report = (sweep / "report.md").read_text()
    assert "gru" in report and "lstm" in report


def submit_paused_job(tiny_mnist, tmp_path, *sbatch_options: str) -> tuple[str, dict]:
    """``sbatch`` one training run that pauses at epoch 1, batch 3 until it is told to stop;
    returns the job id and the files of the run (its dir, the pause marker, the job's log)."""
    env = job_environment(tmp_path, pauser=PAUSER)
    files = {"run": tmp_path / "run", "marker": tmp_path / "paused_at_step"}
    overrides = [
        *tiny_overrides(tiny_mnist, files["run"]),
        *SETTINGS,
        "+callbacks.pause._target_=pauser.PauseAt",
        "+callbacks.pause.epoch=0",
        "+callbacks.pause.batch=2",
        f"+callbacks.pause.marker={files['marker']}",
    ]
    command = " ".join(["exec", sys.executable, "-m", "experiments.train", *overrides])
    submitted = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "-c",
            "1",
            "--mem=2G",
            "--open-mode=append",  # a requeued job's output goes on in the same file
            "-o",
            str(tmp_path / "job-%j.out"),
            "-D",
            str(PROJECT_ROOT),
            *sbatch_options,
            "--wrap",
            command,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    job = submitted.stdout.strip().split(";")[0]
    files["log"] = tmp_path / f"job-{job}.out"
    return job, files


def start_when_requeued(job: str) -> None:
    """SLURM holds a requeued job for two minutes; let it start as soon as it is pending, with
    time enough to finish (a limit cut by bring_the_time_limit_near would warn it again).

    Pending means pending in squeue, which says COMPLETING while the requeued run is still being
    stopped (``scontrol show job`` already says PENDING then), and a second later: SLURM revokes
    the old run's credential when it requeues, and refuses a launch whose credential dates from
    that same second ("Killing non-startable batch job: Job credential revoked"), which fails
    the job (what its two-minute hold avoids)."""
    wait_for(lambda: queue_state(job) == "PENDING", 180, "the job to be requeued")
    time.sleep(1.5)
    update = ["scontrol", "update", f"JobId={job}", "TimeLimit=10"]
    subprocess.run([*update, "StartTime=now"], check=True)


def assert_went_on_to_the_straight_runs_weights(files, tiny_mnist, tmp_path):
    results = json.loads((files["run"] / "results.json").read_text())
    assert results["status"] == "completed" and results["epochs"] == 2
    straight = tmp_path / "straight"
    done = run_train(*tiny_overrides(tiny_mnist, straight), *SETTINGS)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = torch.load(files["run"] / "checkpoints" / "last.ckpt", weights_only=False)
    expected = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=False)
    for name, value in expected["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, rtol=0, atol=1e-6)


def test_a_requeued_job_goes_on_from_the_batch_it_was_stopped_at(cluster, tiny_mnist, tmp_path):
    job, files = submit_paused_job(tiny_mnist, tmp_path)
    wait_for(files["marker"].exists, 120, "the job to reach epoch 1, batch 3")
    subprocess.run(["scontrol", "requeue", job], check=True)  # as a preemption does
    start_when_requeued(job)
    wait_for((files["run"] / "results.json").exists, 300, "the requeued job to finish")
    log = files["log"].read_text()
    stopped_at = int(files["marker"].read_text())  # the step the pause (and the signal) came at
    assert f"stopped by SIGTERM at epoch 1, step {stopped_at}" in log, log[-3000:]
    # the requeued job went on from the step saved at the signal
    assert f"going on from {files['run'] / 'checkpoints' / 'last.ckpt'}: step {stopped_at}" in log
    assert_went_on_to_the_straight_runs_weights(files, tiny_mnist, tmp_path)


def test_a_time_limit_saves_requeues_and_goes_on(cluster, tiny_mnist, tmp_path):
    # warned 40 s before its limit, which is cut to 1-2 minutes from the pause: the first
    # segment is stopped there
    job, files = submit_paused_job(tiny_mnist, tmp_path, "--time=10", "--signal=B:USR2@40")
    wait_for(files["marker"].exists, 120, "the job to reach epoch 1, batch 3")
    bring_the_time_limit_near(job)
    start_when_requeued(job)  # the job requeues itself at the warning
    wait_for((files["run"] / "results.json").exists, 300, "the requeued job to finish")
    log = files["log"].read_text()
    stopped_at = int(files["marker"].read_text())
    assert f"time limit near at epoch 1, step {stopped_at}" in log, log[-3000:]
    assert f"requeued SLURM job {job}, which goes on from it" in log
    # the requeued job went on from the step saved at the signal
    assert f"going on from {files['run'] / 'checkpoints' / 'last.ckpt'}: step {stopped_at}" in log
    assert_went_on_to_the_straight_runs_weights(files, tiny_mnist, tmp_path)


def start_paused_sweep(tiny_mnist, tmp_path) -> tuple:
    """A one-job sweep through hydra/launcher=slurm_cpu whose job pauses at epoch 1, batch 3;
    returns the sweep dir, the pause marker and the driver process (output in its stdout)."""
    env = job_environment(tmp_path, pauser=PAUSER)
    sweep, marker = tmp_path / "sweep", tmp_path / "paused_at_step"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "experiments.train",
            "-m",
            "hydra/launcher=slurm_cpu",
            "hydra.launcher.timeout_min=10",  # cut to 1-2 minutes from the pause
            "hydra.launcher.signal_delay_s=40",
            "hydra.launcher.mem_gb=2",
            *tiny_overrides(tiny_mnist),
            *SETTINGS,
            "+callbacks.pause._target_=pauser.PauseAt",
            "+callbacks.pause.epoch=0",
            "+callbacks.pause.batch=2",
            f"+callbacks.pause.marker={marker}",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return sweep, marker, driver


def test_a_sweep_job_past_its_time_limit_is_requeued_by_its_own_checkpoint(
    cluster, tiny_mnist, tmp_path
):
    """The same through hydra/launcher=slurm_cpu (submitit): the time-limit warning submitit
    asks for (signal_delay_s) is handled by LastCheckpoint, not by submitit's own requeue."""
    sweep, marker, driver = start_paused_sweep(tiny_mnist, tmp_path)
    try:
        wait_for(marker.exists, 120, "the job to reach epoch 1, batch 3")
        job = the_queued_job()
        bring_the_time_limit_near(job)
        start_when_requeued(job)
        output, _ = driver.communicate(timeout=300)
    finally:
        driver.kill()
    assert driver.returncode == 0, output[-3000:]
    results = json.loads((sweep / "classify-gru-1x32_0" / "results.json").read_text())
    assert results["status"] == "completed" and results["epochs"] == 2
    logs = "".join(p.read_text() for p in sorted((sweep / ".submitit").rglob("*_log.*")))
    stopped_at = int(marker.read_text())
    assert f"time limit near at epoch 1, step {stopped_at}" in logs, logs[-3000:]
    assert f"last.ckpt: step {stopped_at}" in logs  # the requeued job went on from there


def test_ddp_as_one_slurm_job_of_two_tasks_completes_in_one_run_dir(cluster, tiny_mnist, tmp_path):
    """srun starts both ranks as processes of their own: only rank 0 takes the run dir's lock
    (SLURM_PROCID), so neither waits for the other forever."""
    sweep = tmp_path / "sweep"
    result = run_train(
        "-m",
        "hydra/launcher=slurm_cpu",
        "hydra.launcher.tasks_per_node=2",
        "hydra.launcher.timeout_min=5",
        "hydra.launcher.mem_gb=2",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        *tiny_overrides(tiny_mnist),
        *SETTINGS,
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in sweep.iterdir() if (p / "results.json").exists()]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["epochs"] == 2
    assert results["evaluated"]["test"] == 40  # every test image, over both shards
    logs = "".join(p.read_text() for p in sorted((sweep / ".submitit").rglob("*_log.*")))
    assert "in use by" not in logs and "Initializing distributed: GLOBAL_RANK: 1" in logs


def test_ddp_under_srun_with_the_default_run_dir_writes_one_run_named_after_the_job(
    cluster, tiny_mnist, tmp_path
):
    """A plain batch script, `srun python -m experiments.train trainer=ddp ...`, no run dir
    given: every task would time-stamp a dir of its own; they agree on slurm-<job>.<step>."""
    overrides = [*tiny_overrides(tiny_mnist), *SETTINGS, "trainer=ddp", "trainer.devices=2"]
    overrides.append("trainer.accelerator=cpu")
    command = " ".join(["srun", sys.executable, "-m", "experiments.train", *overrides])
    env = job_environment(tmp_path)
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--ntasks-per-node=2", "-c", "1", "--mem=3G", "-o", "job.out"]
        + ["-D", str(tmp_path), "--wrap", command],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    job = submitted.stdout.strip().split(";")[0]
    wait_for(lambda: job_state(job) in ("COMPLETED", "FAILED", "GONE"), 300, "the job")
    log = (tmp_path / "job.out").read_text()
    runs = list((tmp_path / "outputs" / "classify" / "gru-1x32").iterdir())
    assert [run.name for run in runs] == [f"slurm-{job}.0"], log[-3000:]
    results = json.loads((runs[0] / "results.json").read_text())
    assert results["status"] == "completed" and results["evaluated"]["test"] == 40
    assert (runs[0] / "train_ddp_process_1.log").is_file()


# Waits at the end of one training batch until SIGTERM comes (at most 5 minutes).
WAITER = textwrap.dedent(
    """
    import time
    from pathlib import Path
    from lightning.pytorch.callbacks import Callback

    class WaitAt(Callback):
        def __init__(self, marker):
            self.marker = Path(marker)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.marker.write_text("waiting")
            for _ in range(6000):
                if trainer.received_sigterm:
                    return
                time.sleep(0.05)
    """
)


def test_a_cancelled_job_ends_the_sweep_without_sacct(cluster, tiny_mnist, tmp_path):
    """The local cluster has no accounting (no sacct), as some real ones: submitit alone would
    wait for the cancelled job forever; squeue tells it the job was cancelled."""
    assert subprocess.run(["sacct"], capture_output=True).returncode != 0  # no accounting here
    env = job_environment(tmp_path, waiter=WAITER)
    marker = tmp_path / "waiting"
    driver = subprocess.Popen(
        [sys.executable, "-m", "experiments.train", "-m", "hydra/launcher=slurm_cpu"]
        + ["hydra.launcher.mem_gb=2", *tiny_overrides(tiny_mnist), *SETTINGS]
        + ["+callbacks.wait._target_=waiter.WaitAt", f"+callbacks.wait.marker={marker}"]
        + [f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(marker.exists, 120, "the job to start training")
        job = the_queued_job()
        subprocess.run(["scancel", job], check=True)
        _, stderr = driver.communicate(timeout=150)
    finally:
        driver.kill()
    assert driver.returncode == 1, stderr[-3000:]
    assert (
        f"Job {job} (task: 0)" in stderr
        and "has not produced any output (state: CANCELLED)" in stderr
    )


def test_a_requeued_sweep_job_cancelled_while_pending_ends_the_sweep(cluster, tiny_mnist, tmp_path):
    """A job requeued by its time limit and cancelled before it started again: the sweep ends
    with the job's state instead of waiting for a result that will never come."""
    sweep, marker, driver = start_paused_sweep(tiny_mnist, tmp_path)
    try:
        wait_for(marker.exists, 120, "the job to reach epoch 1, batch 3")
        job = the_queued_job()
        bring_the_time_limit_near(job)
        wait_for(lambda: job_state(job) == "PENDING", 180, "the job to be requeued")
        subprocess.run(["scancel", job], check=True)
        output, _ = driver.communicate(timeout=150)
    finally:
        driver.kill()
    assert driver.returncode == 1, output[-3000:]
    assert f"Job {job} (task: 0)" in output and "(state: CANCELLED)" in output, output[-3000:]


BREAKER = textwrap.dedent(
    """
    from lightning.pytorch.callbacks import Callback

    class BreakOnRank(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_rank == 1 and trainer.global_step == 2:
                raise RuntimeError("rank 1 broke at step 2")
    """
)


def test_a_rank_that_fails_ends_the_ddp_job_at_once_with_its_reason(cluster, tiny_mnist, tmp_path):
    """Rank 1 raises at step 2; rank 0 would wait for it in the next all-reduce until the time
    limit: srun ends it (the launcher's --kill-on-bad-exit), and the sweep says why."""
    sweep = tmp_path / "sweep"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train", "-m", "hydra/launcher=slurm_cpu"]
        + ["hydra.launcher.tasks_per_node=2", "hydra.launcher.timeout_min=10"]
        + ["hydra.launcher.mem_gb=2", "trainer=ddp", "trainer.accelerator=cpu"]
        + ["trainer.devices=2", *tiny_overrides(tiny_mnist), *SETTINGS]
        + ["+callbacks.breaker._target_=breaker.BreakOnRank", f"hydra.sweep.dir={sweep}"],
        cwd=PROJECT_ROOT,
        env=job_environment(tmp_path, breaker=BREAKER),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert time.monotonic() - started < 200  # not the 10-minute time limit
    logs = "".join(p.read_text() for p in sorted((sweep / ".submitit").rglob("*_log.*")))
    assert "rank 1 broke at step 2" in logs + result.stderr


# Waits once, at the first training batch of the first trial to get there, writing which SLURM
# array task it is in, until that task is cancelled; every other trial sleeps 3 s there,
# so that the other worker still draws trials after the cancelled one's heartbeat has gone.
SEARCH_PAUSER = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path
    from lightning.pytorch.callbacks import Callback

    class PauseOnce(Callback):
        def __init__(self, marker):
            self.marker = Path(marker)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            task = os.environ["SLURM_ARRAY_JOB_ID"] + "_" + os.environ["SLURM_ARRAY_TASK_ID"]
            try:
                with self.marker.open("x") as f:  # the first trial anywhere, once
                    f.write(task)
            except FileExistsError:
                if batch_idx == 0 and trainer.current_epoch == 0:
                    time.sleep(3)
                return
            for _ in range(6000):  # until the task is cancelled (SIGTERM), at most 5 minutes
                if trainer.received_sigterm:
                    return
                time.sleep(0.05)
    """
)


def slurm_search(tiny_mnist, tmp_path, postgres_url, *extra: str, env=None, train_extra=()):
    """``experiments.search launcher=slurm`` of a tiny study on two workers; returns the
    finished command, the study and the search dir."""
    import uuid

    import optuna
    from conftest import tiny_search_args

    name, study_dir = f"tiny-{uuid.uuid4().hex[:8]}", tmp_path / "study"
    args = tiny_search_args(tiny_mnist, study_dir, *extra, train_extra=("threads=1", *train_extra))
    args += ["launcher=slurm", "workers=2", f"search.name={name}", f"storage={postgres_url}"]
    args += ["launcher.mem_gb=2", "launcher.time_min=10", "launcher.poll_seconds=1"]
    environment = env or {k: v for k, v in os.environ.items() if k != "SEQRNN_DATA_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "experiments.search", *args],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result, optuna.load_study(study_name=name, storage=postgres_url), study_dir


def trials_by_worker(study_dir) -> dict[int, list[str]]:
    """Which workers started each trial, from the workers' logs (``trial N on W: dir``)."""
    started: dict[int, list[str]] = {}
    for log in sorted((study_dir / "workers").glob("worker-*.out")):
        for line in log.read_text().splitlines():
            if line.startswith("trial ") and " on " in line:
                number, worker = line.removeprefix("trial ").split(":")[0].split(" on ")
                started.setdefault(int(number), []).append(worker)
    return started


def test_a_search_on_two_slurm_workers_runs_every_trial_once(
    cluster, postgres_url, tiny_mnist, tmp_path
):
    import optuna

    result, study, study_dir = slurm_search(tiny_mnist, tmp_path, postgres_url, "trials=4")
    assert "submitted 2 workers as SLURM job" in result.stdout
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    assert optuna.trial.TrialState.FAIL not in states
    assert 4 <= len(study.trials) <= 5  # a worker may be finishing one more when 4 are done
    started = trials_by_worker(study_dir)
    assert sorted(started) == [t.number for t in study.trials]
    assert all(len(workers) == 1 for workers in started.values())  # none run twice
    assert len({w for workers in started.values() for w in workers}) == 2  # both drew trials
    rows = list(csv.DictReader((study_dir / "trials.csv").open()))
    assert [int(r["trial"]) for r in rows] == [t.number for t in study.trials]
    assert {r["attr_worker"] for r in rows} == {w for ws in started.values() for w in ws}
    assert (study_dir / "best.yaml").is_file() and "best:   trial " in result.stdout


def test_a_cancelled_slurm_worker_leaves_its_trial_failed_and_run_again(
    cluster, postgres_url, tiny_mnist, tmp_path
):
    import threading

    import optuna

    marker = tmp_path / "paused_in"
    pause = ["+callbacks.pause._target_=pauser.PauseOnce", f"+callbacks.pause.marker={marker}"]
    env = job_environment(tmp_path, pauser=SEARCH_PAUSER)

    def cancel_the_paused_worker() -> None:
        wait_for(marker.exists, 300, "a trial to pause")
        time.sleep(0.5)  # the marker is written whole
        subprocess.run(["scancel", marker.read_text().strip()], check=True)

    canceller = threading.Thread(target=cancel_the_paused_worker, daemon=True)
    canceller.start()
    # heartbeats every second: a worker is taken for dead 4 s after its last
    _, study, study_dir = slurm_search(
        tiny_mnist,
        tmp_path,
        postgres_url,
        "trials=5",
        "heartbeat_seconds=1",
        "grace_seconds=4",
        env=env,
        train_extra=pause,
    )
    canceller.join(timeout=5)
    by_number = {t.number: t for t in study.trials}
    (cancelled,) = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    # the retry is the trial whose failed_trial names the cancelled one (Optuna's record)
    again = [t for t in study.trials if t.system_attrs.get("failed_trial") == cancelled.number]
    assert len(again) == 1 and again[0].params == cancelled.params
    assert again[0].state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in by_number.values()]
    assert cancelled.user_attrs["worker"] == marker.read_text().strip()
    started = trials_by_worker(study_dir)
    assert all(len(workers) == 1 for workers in started.values())  # none run twice at once
