"""Data-parallel training on two CPU processes (gloo), however it is launched: Lightning's own
launcher and torchrun (srun: tests/test_slurm.py). One run dir per run, the same metrics as one
process, and stop decisions every rank takes together (a diverging rank, a SIGTERM to one rank)."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from conftest import PROJECT_ROOT, run_entry, run_train, signal_at, tiny_overrides

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gloo DDP on CPU processes")

DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "threads=1"]


def test_ddp_on_two_cpu_processes_gives_the_same_results_keys(tiny_mnist, tmp_path):
    single = run_train(*tiny_overrides(tiny_mnist, tmp_path / "one"), "trainer.max_epochs=1")
    ddp = run_train(
        *tiny_overrides(tiny_mnist, tmp_path / "ddp"),
        "trainer.max_epochs=1",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
    )
    assert single.returncode == 0 and ddp.returncode == 0, ddp.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert set(one) == set(two)
    assert two["evaluated"] == one["evaluated"]  # every example evaluated, shards or not
    assert (tmp_path / "ddp" / "train_ddp_process_1.log").is_file()  # a second process ran


DIVERGER = """
import math
from lightning.pytorch.callbacks import Callback

class NanOnRank(Callback):
    def __init__(self, rank, batch):
        self.rank, self.batch = rank, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == self.rank and trainer.global_step == self.batch:
            pl_module.input_proj.weight.data.fill_(math.nan)
"""


def test_ddp_stops_every_rank_at_once_when_one_rank_diverges(tiny_mnist, tmp_path):
    """Rank 1's weights turn into NaN before its third step: its loss goes wrong, the averaged
    gradients of both ranks too, and both stop at that step (not rank 1 alone, leaving rank 0
    waiting in its next all-reduce)."""
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "diverger.py").write_text(DIVERGER)
    result = run_entry(
        "train",
        *tiny_overrides(tiny_mnist, tmp_path / "ddp"),
        "trainer.max_epochs=3",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "+callbacks.nan._target_=diverger.NanOnRank",
        "+callbacks.nan.rank=1",
        "+callbacks.nan.batch=2",
        env={"PYTHONPATH": f"{tmp_path / 'helpers'}{os.pathsep}{PROJECT_ROOT}"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "diverged: training loss" in result.stdout and "at epoch 1, step 3" in result.stdout
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert results["status"] == "diverged"


def last_weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def test_a_sigterm_to_one_rank_stops_every_rank_at_the_same_batch(tiny_mnist, tmp_path, signaller):
    """Rank 1 alone is signalled at the end of its first batch: both ranks agree at the end of
    the next one, save one last.ckpt together and exit unfinished; resumed, the run ends with the
    weights of the run that was never stopped."""
    settings = [*DDP, "data.order=row", "trainer.max_epochs=2"]
    straight = run_train(*tiny_overrides(tiny_mnist, tmp_path / "straight"), *settings)
    assert straight.returncode == 0, straight.stderr[-3000:]

    run_dir = tmp_path / "run"
    stopped = run_train(
        *tiny_overrides(tiny_mnist, run_dir), *settings, *signal_at(0, 0, "SIGTERM", rank=1)
    )
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    # 80 training images, 2 ranks, batches of 16: 3 steps an epoch (40 -> 2 full + 1 of 8)
    assert "stopped by SIGTERM at epoch 1, step 2" in stopped.stdout, stopped.stdout[-2000:]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2
    assert not (run_dir / "results.json").exists()

    resumed = run_train(f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "results.json").read_text())["status"] == "completed"
    got, expected = last_weights(run_dir), last_weights(tmp_path / "straight")
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.skipif(
    shutil.which("torchrun") is None
    and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "torchrun")),
    reason="torchrun not installed",
)
def test_torchrun_makes_one_run_dir_held_by_rank_0(tiny_mnist, tmp_path):
    """torchrun starts both ranks as commands of their own; with the default, time-stamped run
    dir they still write one run (rank 1's log beside rank 0's), not a second dir of a log."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    result = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "experiments.train",
            *tiny_overrides(tiny_mnist),
            *DDP[:2],
            "trainer.max_epochs=1",
            "threads=1",
        ],
        cwd=tmp_path,  # the default run dir: outputs/ under here
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "classify" / "gru-1x32").iterdir()
    assert json.loads((run_dir / "results.json").read_text())["status"] == "completed"
    assert (run_dir / "train.log").is_file() and (run_dir / "train_ddp_process_1.log").is_file()
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    assert "hydra.output_subdir" not in (run_dir / ".hydra" / "overrides.yaml").read_text()


SRUN_RANK_1 = {"SLURM_STEP_ID": "0", "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_JOB_ID": "77"}


@pytest.mark.parametrize(
    ("argv", "env", "stamp", "added"),
    [
        ([], {}, None, []),  # one process
        ([], {**SRUN_RANK_1, "SLURM_NTASKS": "1"}, None, []),  # a one-task step
        ([], {**SRUN_RANK_1, "SLURM_PROCID": "0"}, "slurm-77.0", []),
        ([], SRUN_RANK_1, "slurm-77.0", ["hydra.output_subdir=null"]),
        (["hydra.run.dir=/x"], SRUN_RANK_1, None, []),  # the command names its dir
        (["resume=/x"], SRUN_RANK_1, None, []),
        (["-m", "cell=gru,lstm"], SRUN_RANK_1, None, []),  # a sweep: dirs are the sweeper's
    ],
)
def test_the_ranks_of_an_outside_launcher_agree_on_one_run_dir(
    argv, env, stamp, added, monkeypatch
):
    from experiments._ranks import STAMP_VARIABLE, rank_overrides

    monkeypatch.setenv(STAMP_VARIABLE, "unset")
    got = rank_overrides(argv, env)
    assert os.environ[STAMP_VARIABLE] == (stamp or "unset")
    assert got[: len(added)] == added
    if added:  # and its own log beside rank 0's
        assert got[1].endswith("${hydra.job.name}_ddp_process_1.log")


@pytest.mark.parametrize(
    ("trainer", "gpus", "wanted"),
    [
        ({"accelerator": "auto", "devices": 1}, 4, True),
        ({"accelerator": "gpu", "devices": "1"}, 2, True),
        ({"accelerator": "auto", "devices": 1}, 1, False),  # one GPU: nothing to share out
        ({"accelerator": "auto", "devices": 1}, 0, False),
        ({"accelerator": "cpu", "devices": 1}, 4, False),
        ({"accelerator": "gpu", "devices": 4}, 4, False),  # DDP over them: Lightning's
        ({"accelerator": "gpu", "devices": [2]}, 4, False),  # the user chose one
    ],
)
def test_a_job_that_asks_for_one_device_holds_one_of_several_gpus(trainer, gpus, wanted):
    from seqrnn.training.gpus import wants_one_of

    assert wants_one_of(trainer, gpus) is wanted


def test_jobs_side_by_side_each_hold_their_own_gpu_and_wait_when_all_are_held(tmp_path):
    """Two parallel jobs (or search workers) get GPUs 0 and 1; a third waits until one ends and
    then takes the GPU that one held."""
    import threading

    from seqrnn.training.gpus import one_gpu

    got: dict[str, int] = {}
    with one_gpu(2, tmp_path) as first:
        with one_gpu(2, tmp_path) as second:
            assert (first, second) == (0, 1)

            def third_job():
                with one_gpu(2, tmp_path, poll_seconds=0.01) as index:
                    got["third"] = index

            waiting = threading.Thread(target=third_job)
            waiting.start()
            waiting.join(0.3)
            assert waiting.is_alive() and "third" not in got  # both held: it waits
        waiting.join(5)  # the second job ended: GPU 1 is free
        assert got == {"third": 1}
    with one_gpu(2, tmp_path) as again:
        assert again == 0  # released on the way out
