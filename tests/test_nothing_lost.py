"""Nothing a user made is lost or half-written: a full disk mid-run, an export onto a file that is
there, a refused command's run dir; and a run's progress and results are in its train.log."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import run_entry, run_train, tiny_overrides

from seqrnn.errors import CheckpointError, OutputError
from seqrnn.files import write_atomic
from seqrnn.training.checkpoints import export_weights

# A callback that fills the run dir's disk at the end of a training epoch, after that epoch's
# checkpoints are written: the next write finds no space.
FILLER = textwrap.dedent(
    """
    from lightning.pytorch.callbacks import Callback

    class FillDiskAt(Callback):
        def __init__(self, epoch, path):
            self.epoch, self.path = epoch, path

        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch != self.epoch:
                return
            with open(self.path, "wb") as f:
                try:
                    while True:
                        f.write(b"\\0" * 65536)
                        f.flush()
                except OSError:
                    pass
    """
)


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MB tmpfs of its own (root only), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)])
    if made.returncode != 0:
        pytest.skip("this machine cannot mount a tmpfs")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_mid_run_is_one_line_keeps_last_ckpt_and_leaves_no_temporary_file(
    tiny_mnist, tmp_path, small_disk, monkeypatch
):
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "filler.py").write_text(FILLER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(helpers), os.getcwd()]))
    run_dir, filler = small_disk / "run", small_disk / "filler"
    result = run_train(
        *tiny_overrides(tiny_mnist, run_dir),
        "trainer.max_epochs=3",
        "+callbacks.fill._target_=filler.FillDiskAt",
        "+callbacks.fill.epoch=0",
        f"+callbacks.fill.path={filler}",
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert "no space left" in errors[0] and f"{last} is the last good checkpoint" in errors[0]
    assert torch.load(last, weights_only=False)["epoch"] == 0  # the first epoch's, whole
    assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name]
    filler.unlink()  # space again: the run goes on
    resumed = run_train(f"resume={run_dir}", "~callbacks.fill")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "results.json").read_text())["epochs"] == 3


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "weights.ckpt"
    target.write_bytes(b"old")

    def half_then_full(out):
        out.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match=f"no space left on the device of {target}"):
        write_atomic(target, half_then_full)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.ckpt"]


def test_export_never_replaces_a_checkpoint_without_force(checkpoints, tmp_path):
    target = tmp_path / "shipped.ckpt"
    export_weights(checkpoints["classify"], target)
    before = target.read_bytes()
    with pytest.raises(CheckpointError, match="exists; --force replaces it"):
        export_weights(checkpoints["predict"], target)
    assert target.read_bytes() == before
    export_weights(checkpoints["predict"], target, overwrite=True)
    assert torch.load(target, weights_only=False)["task"] == "predict"


def test_export_of_a_name_that_is_shipped_already_is_refused_by_default(checkpoints):
    from seqrnn.pretrained import PRETRAINED_DIR

    shipped = sorted(PRETRAINED_DIR.glob("classify-*.ckpt"))
    if not shipped:
        pytest.skip("no shipped classifier")
    before = {path: path.stat().st_mtime_ns for path in shipped}
    # an untrained 1x8 classifier exported to the default folder, under a name of its own
    result = run_entry("export", str(checkpoints["classify"]), "--to", str(PRETRAINED_DIR))
    made = PRETRAINED_DIR / "classify-gru-1x8.ckpt"
    try:
        assert result.returncode == 0, result.stderr
        again = run_entry("export", str(checkpoints["classify"]))
        assert again.returncode == 2 and again.stderr.startswith(f"error: {made} exists;")
    finally:
        made.unlink(missing_ok=True)
    assert {path: path.stat().st_mtime_ns for path in shipped} == before


def test_a_refused_command_leaves_no_run_dir_behind(tiny_mnist, checkpoints, tmp_path):
    # found only once the checkpoint is read, after Hydra made the dir: the dir goes again
    out = tmp_path / "refused"
    result = run_entry(
        "complete",
        f"ckpt={checkpoints['classify']}",
        f"data.root={tiny_mnist}",
        "data.verify=false",
        f"hydra.run.dir={out}",
    )
    assert result.returncode == 2 and "complete takes task=predict" in result.stderr
    assert not out.exists()


def test_the_run_log_holds_the_progress_lines_and_the_results(tiny_mnist, tmp_path):
    result = run_train(
        *tiny_overrides(tiny_mnist, tmp_path),
        "trainer.max_epochs=1",
        "callbacks.last_checkpoint.every_minutes=null",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "train.log").read_text()
    assert "epoch 1/1  train loss" in log and "epoch 1/1  train loss" in result.stdout
    assert f"results:     {tmp_path / 'results.json'}" in log
    assert "1 epoch," in result.stdout and "1 epochs" not in result.stdout


def test_a_long_epoch_prints_progress_lines_with_step_rate_and_time_left(tiny_mnist, tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from conftest import quiet_trainer, tiny_rows
        from seqrnn.callbacks import EpochLog
        from seqrnn.models import SequenceClassifier
        data = tiny_rows({str(tiny_mnist)!r})
        trainer = quiet_trainer(max_epochs=1, limit_val_batches=0, callbacks=[EpochLog(1e-9)])
        trainer.fit(SequenceClassifier(units=8, in_features=28), data)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [line for line in result.stdout.splitlines() if " step " in line]
    assert steps[0].startswith("epoch 1/1  step 1/5 (20%)  loss ")
    assert "seq/s, the epoch's training ends in" in steps[0]
    assert steps[-1].startswith("epoch 1/1  step 5/5 (100%)")
