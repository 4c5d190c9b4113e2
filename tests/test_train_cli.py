"""`python -m experiments.train` end to end on tiny data: results, checkpoints, logs, resume,
errors."""

import json
import math

import pytest
import torch
from conftest import TINY_SIZES, TINY_VAL, run_train, tiny_overrides
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqrnn.data import read_bytes

RESULT_KEYS = {
    "task",
    "cell",
    "units",
    "layers",
    "order",
    "data",
    "params",
    "epochs",
    "wall_seconds",
    "checkpoint",
    "train_loss",
    "val_loss",
    "test_loss",
    "train_acc",
    "val_acc",
    "test_acc",
    "evaluated",
    "milestones",
    "status",
}


def scalars(run_dir, tag):
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return events, [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.fixture(scope="module")
def finished_run(tiny_mnist, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    result = run_train(*tiny_overrides(tiny_mnist, run_dir), "trainer.max_epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


def test_writes_results_json_with_the_design_schema(finished_run):
    run_dir, result = finished_run
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results) == RESULT_KEYS
    assert (results["task"], results["cell"], results["units"], results["layers"]) == (
        "classify",
        "gru",
        32,
        1,
    )
    assert results["epochs"] == 2 and results["wall_seconds"] > 0
    # GRU-32: input affine 1->32, stack 3 gates x 32 x (32 + 32 + 2 biases),
    # head Linear 32->32, Linear 32->10 (the GRU-32's recipe has no BatchNorm in its head)
    assert results["params"] == 64 + 3 * 32 * 66 + (32 * 32 + 32) + (32 * 10 + 10)
    assert results["evaluated"] == {
        "train": TINY_SIZES["train"] - TINY_VAL,
        "val": TINY_VAL,
        "test": TINY_SIZES["test"],
    }
    for key in ("train_loss", "val_loss", "test_loss"):
        assert 0 < results[key] < 10 and math.isfinite(results[key])
    for key in ("train_acc", "val_acc", "test_acc"):
        assert 0 <= results[key] <= 1
    assert results["checkpoint"] == "checkpoints/best.ckpt"
    assert str(run_dir) in result.stdout and "results.json" in result.stdout


def test_keeps_best_and_last_checkpoints_of_the_task(finished_run):
    run_dir, _ = finished_run
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=False)
    assert last["task"] == best["task"] == "classify"
    assert last["epoch"] == 1 and best["hyper_parameters"]["units"] == 32


def test_final_metrics_equal_the_best_checkpoints_validation(finished_run):
    # results.json evaluates the best checkpoint, chosen by the recipe's monitor (the GRU-32's:
    # val/acc, the first epoch at its highest): its val_loss is that epoch's val/loss.
    run_dir, _ = finished_run
    results = json.loads((run_dir / "results.json").read_text())
    _, val_loss = scalars(run_dir, "val/loss")
    _, val_acc = scalars(run_dir, "val/acc")
    assert len(val_loss) == len(val_acc) == 2
    best = max(range(2), key=lambda i: (val_acc[i][1], -i))
    assert results["val_acc"] == pytest.approx(val_acc[best][1], abs=1e-6)
    assert results["val_loss"] == pytest.approx(val_loss[best][1], abs=1e-5)


def test_tensorboard_has_curves_and_hparams_with_final_metrics(finished_run):
    run_dir, _ = finished_run
    events, test_acc = scalars(run_dir, "final/test_acc")
    results = json.loads((run_dir / "results.json").read_text())
    assert test_acc[-1][1] == pytest.approx(results["test_acc"])
    assert {"train/loss", "train/acc", "val/acc", "final/train_loss"} <= set(
        events.Tags()["scalars"]
    )
    hparams = events.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams)
    assert b"final/test_acc" in hparams["_hparams_/experiment"]
    assert b"hp_metric" not in hparams["_hparams_/experiment"]


def test_predict_run_reports_per_pixel_cross_entropy(tiny_mnist, tmp_path):
    result = run_train(
        *tiny_overrides(tiny_mnist, tmp_path), "task=predict", "trainer.max_epochs=1"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["task"] == "predict" and "test_acc" not in results
    for split in ("train", "val", "test"):
        # About 90% of the tiny random pixels are on (intensity > 25 of 255): even a barely
        # trained model has learned that much and beats a coin flip, log 2 nats a pixel.
        assert 0.2 < results[f"{split}_loss"] < math.log(2)
        assert results[f"{split}_bits"] == pytest.approx(
            results[f"{split}_loss"] * 784 / math.log(2), rel=1e-4
        )
        assert 0 <= results[f"{split}_pixel_acc"] <= 1
    checkpoint = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)
    assert checkpoint["task"] == "predict"
    assert checkpoint["datamodule_hyper_parameters"]["threshold"] == 0.1


def test_resume_continues_from_last_checkpoint_without_losing_epochs(tiny_mnist, tmp_path):
    run_dir = tmp_path / "run"
    first = run_train(*tiny_overrides(tiny_mnist, run_dir), "trainer.max_epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    _, before = scalars(run_dir, "val/loss")
    resumed = run_train(f"resume={run_dir}", "trainer.max_epochs=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["epochs"] == 3
    _, after = scalars(run_dir, "val/loss")
    # One validation per epoch, the first kept, global steps continuing where they stopped
    # (80 training images in batches of 16: 5 steps an epoch).
    assert len(before) == 1 and after[0] == before[0]
    assert [step for step, _ in after] == [4, 9, 14]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 2


@pytest.fixture(scope="module")
def truncated_data(tmp_path_factory, tiny_mnist):
    """A copy of the tiny data whose test images are stored raw and lack their last 100 bytes."""
    folder = tmp_path_factory.mktemp("truncated")
    for path in tiny_mnist.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    images = folder / "t10k-images-idx3-ubyte.gz"
    (folder / images.stem).write_bytes(read_bytes(images)[:-100])
    images.unlink()
    return folder


@pytest.mark.parametrize(
    ("case", "message"),
    [
        # (bad values of the options themselves: tests/test_bad_inputs.py)
        ("missing", "is missing in"),
        # the tiny random images are not MNIST: the canonical checksum must catch them
        ("not_mnist", "train-images-idx3-ubyte.gz fails its checksum"),
        ("truncated", "t10k-images-idx3-ubyte is truncated"),
    ],
)
def test_bad_input_gets_one_line_and_a_nonzero_exit(
    case, message, tmp_path, tiny_mnist, truncated_data
):
    extra = {
        "missing": [f"data.root={tmp_path / 'absent'}", "data.download=false"],
        "not_mnist": ["data.verify=true"],
        "truncated": [f"data.root={truncated_data}"],
    }.get(case, [case])
    (tmp_path / "runs").mkdir()  # a folder of the user's: kept; the ones the run made: gone
    run_dir = tmp_path / "runs" / "classify" / "gru-1x32" / "run"
    result = run_train(*tiny_overrides(tiny_mnist, run_dir), *extra, "debug=fast")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert (tmp_path / "runs").is_dir() and not any((tmp_path / "runs").iterdir())


def test_a_log_file_gets_one_plain_line_per_epoch(tiny_mnist, tmp_path):
    # the progress bar stays configured: standard output that is not a terminal drops it
    overrides = [o for o in tiny_overrides(tiny_mnist, tmp_path) if "progress_bar" not in o]
    result = run_train(*overrides, "data.order=row", "trainer.max_epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert " train loss " in lines[0] and " | val loss " in lines[0] and "seq/s" in lines[0]
    assert "it/s" not in result.stdout  # no bar drawn


def test_enable_progress_bar_false_is_accepted(tiny_mnist, tmp_path):
    overrides = [o for o in tiny_overrides(tiny_mnist, tmp_path) if "progress_bar" not in o]
    result = run_train(*overrides, "data.order=row", "trainer.enable_progress_bar=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch 1/" in result.stdout


def test_a_one_cycle_run_can_be_extended_by_resume(tiny_mnist, tmp_path):
    overrides = [*tiny_overrides(tiny_mnist, tmp_path), "data.order=row"]
    first = run_train(*overrides, "model.lr_schedule=onecycle", "trainer.max_epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_train(f"resume={tmp_path}", "trainer.max_epochs=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((tmp_path / "results.json").read_text())["epochs"] == 3
