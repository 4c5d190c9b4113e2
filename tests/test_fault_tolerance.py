"""Long runs survive being stopped: mid-epoch checkpoints with the loader's position (SIGKILL,
SIGTERM), whole last.ckpt files, one process per run dir, a clear line for a damaged last.ckpt."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import PROJECT_ROOT, run_train, signal_at, tiny_overrides

from seqrnn.data import SequenceBatches
from seqrnn.training.lock import LOCK_FILE, run_lock

# 80 training images in batches of 16: 5 steps an epoch, 2 epochs; a checkpoint every batch.
SETTINGS = [
    "data.order=row",
    "trainer.max_epochs=2",
    "threads=1",
    "callbacks.last_checkpoint.every_minutes=1e-9",
]


@pytest.fixture(scope="module")
def straight_run(tiny_mnist, tmp_path_factory):
    """The run trained without a break: the weights a stopped and resumed run must end with."""
    run_dir = tmp_path_factory.mktemp("straight")
    result = run_train(*tiny_overrides(tiny_mnist, run_dir), *SETTINGS)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def assert_same_weights(run_dir, reference_dir):
    got, expected = weights(run_dir), weights(reference_dir)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)


def test_a_run_killed_mid_epoch_resumes_at_the_next_batch(
    tiny_mnist, tmp_path, signaller, straight_run
):
    run_dir = tmp_path / "run"
    killed = run_train(*tiny_overrides(tiny_mnist, run_dir), *SETTINGS, *signal_at(1, 2, "SIGKILL"))
    assert killed.returncode == -signal.SIGKILL
    assert not (run_dir / "results.json").exists()
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    # in the middle of the second epoch: 5 + 3 steps, the loader 3 batches into epoch 1
    assert saved["global_step"] == 8
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 1, "position": 3}
    ]
    trained_before = saved["callbacks"]["Timer"]["time_elapsed"]["train"]

    resumed = run_train(f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # the killed run's lock was left behind; the resumed run takes it over
    assert "taking over the lock" in resumed.stderr
    assert_same_weights(run_dir, straight_run)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["epochs"] == 2 and results["status"] == "completed"
    assert results["wall_seconds"] >= trained_before  # both sessions' training counted


def stopped_by_sigterm(tiny_mnist, run_dir, epoch, batch, stage="train", name="SIGTERM"):
    """A run of SETTINGS without timed checkpoints, sent SIGTERM (or ``name``) at
    ``signal_at(epoch, batch, stage=stage)`` (20 validation images in batches of 8: 3 batches):
    it exits unfinished, with 128 + the signal's number."""
    stopped = run_train(
        *tiny_overrides(tiny_mnist, run_dir),
        *SETTINGS[:-1],
        "callbacks.last_checkpoint.every_minutes=null",
        "data.eval_batch_size=8",
        *signal_at(epoch, batch, name, stage=stage),
    )
    assert stopped.returncode == 128 + getattr(signal, name), stopped.stderr[-3000:]
    assert not (run_dir / "results.json").exists()
    return stopped


def test_a_slurm_time_limit_warning_before_training_stops_at_the_first_batch_and_requeues(
    tiny_mnist, tmp_path, signaller, monkeypatch
):
    """SLURM may warn a job of its time limit (SIGUSR2) before the run trains: it is kept, not
    the process's death, and the run saves after one batch and asks SLURM to requeue it."""
    scontrol, calls = tmp_path / "bin" / "scontrol", tmp_path / "scontrol-calls"
    scontrol.parent.mkdir()
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')  # records the requeue it is asked
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{scontrol.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    run_dir = tmp_path / "run"
    stopped = run_train(
        *tiny_overrides(tiny_mnist, run_dir),
        *SETTINGS[:-1],
        "callbacks.last_checkpoint.every_minutes=null",
        *signal_at(None, 0, "SIGUSR2", stage="setup"),
    )
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    assert "time limit near at epoch 1, step 1: saved" in stopped.stdout, stopped.stdout[-2000:]
    assert "requeued SLURM job 4242, which goes on from it" in stopped.stdout
    assert calls.read_text().split() == ["requeue", "4242"]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 1


def test_sigterm_saves_last_checkpoint_and_exits_unfinished(
    tiny_mnist, tmp_path, signaller, straight_run
):
    run_dir = tmp_path / "run"
    stopped = stopped_by_sigterm(tiny_mnist, run_dir, 0, 1)
    assert "stopped by SIGTERM at epoch 1, step 2" in stopped.stdout
    # no time-based or epoch-end checkpoint came before: the SIGTERM one is the only one
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2

    resumed = run_train(f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"going on from {run_dir / 'checkpoints' / 'last.ckpt'}: step 2" in resumed.stdout
    assert "taking over" not in resumed.stderr  # the stopped run released its lock
    assert_same_weights(run_dir, straight_run)


def test_ctrl_c_saves_last_checkpoint_as_sigterm_does_and_the_run_resumes(
    tiny_mnist, tmp_path, signaller, straight_run
):
    run_dir = tmp_path / "run"
    stopped = stopped_by_sigterm(tiny_mnist, run_dir, 0, 1, name="SIGINT")
    assert "Ctrl-C: stopping at the end of this batch" in stopped.stdout
    assert "stopped by Ctrl-C at epoch 1, step 2" in stopped.stdout
    assert "Traceback" not in stopped.stderr and "KeyboardInterrupt" not in stopped.stderr
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2
    resumed = run_train(f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(run_dir, straight_run)


def test_sigterm_during_validation_saves_the_epoch_and_the_resumed_run_validates_again(
    tiny_mnist, tmp_path, signaller, straight_run
):
    run_dir = tmp_path / "run"
    stopped = stopped_by_sigterm(tiny_mnist, run_dir, 0, 1, stage="validate")  # its 2nd batch
    assert "stopped by SIGTERM at epoch 1, step 5 (during validation" in stopped.stdout
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 5  # the whole first epoch's training, nothing lost
    resumed = run_train(f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["epochs"] == 2
    assert_same_weights(run_dir, straight_run)


def test_sigterm_during_the_final_evaluation_keeps_the_trained_run_and_evaluates_again(
    tiny_mnist, tmp_path, signaller, straight_run
):
    run_dir = tmp_path / "run"
    stopped = stopped_by_sigterm(tiny_mnist, run_dir, None, 1, stage="test")
    assert "stopped by SIGTERM during the final evaluation" in stopped.stdout
    # last.ckpt still holds the finished training, not the best weights the test loaded
    assert_same_weights(run_dir, straight_run)
    resumed = run_train(f"resume={run_dir}", "~callbacks.signal")  # not the signal again
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "epoch 1/2" not in resumed.stdout and "epoch 2/2" not in resumed.stdout  # no training
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["epochs"] == 2


def test_a_second_process_in_a_busy_run_dir_exits_2_naming_the_holder(tiny_mnist, tmp_path):
    hold = (
        "import time\nfrom seqrnn.training.lock import run_lock\n"
        f"with run_lock({str(tmp_path)!r}):\n    print('held', flush=True)\n    time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    hydra_files = tmp_path / ".hydra"
    hydra_files.mkdir()
    (hydra_files / "overrides.yaml").write_text("- the running run's own\n")
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run_train(*tiny_overrides(tiny_mnist, tmp_path), "debug=fast")
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert f"run dir {tmp_path} is in use by host " in lines[0]
    assert f"pid {holder.pid}" in lines[0]
    assert not (tmp_path / "results.json").exists()
    # refused before Hydra wrote anything: the running run's files are as they were
    assert (hydra_files / "overrides.yaml").read_text() == "- the running run's own\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", ".lock"]


def test_the_lock_is_released_on_the_way_out(tmp_path):
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().startswith("host ")
    assert (tmp_path / LOCK_FILE).read_text() == ""
    with run_lock(tmp_path):  # free again, nothing to take over
        pass


def test_an_unreadable_last_checkpoint_names_the_newest_readable_one(tiny_mnist, tmp_path):
    first = run_train(
        *tiny_overrides(tiny_mnist, tmp_path), "data.order=row", "trainer.max_epochs=1"
    )
    assert first.returncode == 0, first.stderr[-3000:]
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a copy cut short
    result = run_train(f"resume={tmp_path}", "trainer.max_epochs=2")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert f"{last} is not a readable checkpoint" in lines[0]
    assert (
        f"the newest readable checkpoint there is {tmp_path / 'checkpoints' / 'best.ckpt'}"
        in lines[0]
    )


def test_a_resumed_loader_goes_on_from_its_position():
    images = torch.arange(10, dtype=torch.uint8).reshape(10, 1, 1)
    loader = SequenceBatches(images, torch.arange(10), batch_size=3, shuffle=True, seed=1)
    loader.sampler.set_epoch(4)
    whole = [y.tolist() for _, y in loader]
    state = None
    for i, _ in enumerate(loader):
        if i == 1:
            state = loader.state_dict()
            break
    assert state == {"epoch": 4, "position": 2}
    fresh = SequenceBatches(images, torch.arange(10), batch_size=3, shuffle=True, seed=1)
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(4)
    assert [y.tolist() for _, y in fresh] == whole[2:]
    assert [y.tolist() for _, y in fresh] == whole  # the next pass starts at the beginning
    # a position of another epoch does not apply (an epoch-end checkpoint, resumed in the next)
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(5)
    assert len(list(fresh)) == len(whole)
    # reading the first batches (BatchNorm refresh) leaves the position alone
    fresh.sampler.set_epoch(4)
    iterator = iter(fresh)
    next(iterator)
    list(fresh.first(2))
    assert fresh.state_dict() == {"epoch": 4, "position": 1}


class FailingSave:
    """A trainer whose checkpoint write dies half-way, as a kill during the write would."""

    is_global_zero = True

    class strategy:  # noqa: N801 - stands in for trainer.strategy
        @staticmethod
        def barrier(name=None):
            pass

    def save_checkpoint(self, path, weights_only=None):
        with open(path, "wb") as f:
            f.write(b"half a checkpo")
        raise OSError("killed during the write")


def test_a_write_that_dies_leaves_the_previous_last_checkpoint_whole(tmp_path):
    from seqrnn.callbacks.last_checkpoint import LastCheckpoint

    callback = LastCheckpoint(tmp_path, every_minutes=None)
    (tmp_path / "last.ckpt").write_bytes(b"the whole previous checkpoint")
    with pytest.raises(OSError, match="killed during the write"):
        callback.save(FailingSave())
    assert (tmp_path / "last.ckpt").read_bytes() == b"the whole previous checkpoint"


@pytest.mark.parametrize(
    ("environment", "first"),
    [
        ({}, True),
        ({"SLURM_PROCID": "0"}, True),
        ({"SLURM_PROCID": "1"}, False),  # srun's second task of a DDP job: not the lock's holder
        ({"RANK": "1"}, False),  # torchrun
        ({"LOCAL_RANK": "1"}, False),  # Lightning's own launcher
    ],
)
def test_only_the_first_rank_holds_the_run_dir(environment, first, monkeypatch):
    from experiments._cli import RANK_VARIABLES, first_process

    for key in RANK_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    assert first_process() is first
