"""Sweeps: a tiny grid and its report, a killed sweep re-launched, a DDP run on CPU."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

from conftest import PROJECT_ROOT, run_train, tiny_overrides
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqrnn.sweeps.report import find_runs


def table_rows(markdown: str, heading: str) -> dict[str, list[str]]:
    """The rows of the table under ``heading`` in report.md, by row title."""
    block = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in block.splitlines() if line.startswith("|")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


def test_tiny_grid_sweep_writes_a_report_with_every_cell(tiny_mnist, tmp_path):
    result = run_train(
        "-m",
        *tiny_overrides(tiny_mnist),
        "cell=gru,lstm",
        "size=1x32,3x32",
        "trainer.max_epochs=1",
        "hydra/launcher=parallel",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [p.name for p in tmp_path.iterdir() if p.name.startswith("classify")]
    assert sorted(name.rsplit("_", 1)[0] for name in jobs) == [
        "classify-gru-1x32",
        "classify-gru-3x32",
        "classify-lstm-1x32",
        "classify-lstm-3x32",
    ]
    assert sorted(name.rsplit("_", 1)[1] for name in jobs) == ["0", "1", "2", "3"]
    report = (tmp_path / "report.md").read_text()  # written by the sweep's callback
    assert "4 runs: 4 done, 0 incomplete, 0 failed" in report
    for cell in ("gru", "lstm"):
        rows = table_rows(report, f"## classify: {cell.upper()}, pixel order")
        assert rows[""] == ["1x32", "3x32"]
        for column, size in enumerate(("1x32", "3x32")):
            (job,) = tmp_path.glob(f"classify-{cell}-{size}_*")
            results = json.loads((job / "results.json").read_text())
            for title, key, fmt in (
                ("test loss", "test_loss", "{:.4f}"),
                ("train loss", "train_loss", "{:.4f}"),
                ("test accuracy", "test_acc", "{:.4f}"),
                ("train accuracy", "train_acc", "{:.4f}"),
                ("epochs", "epochs", "{:.0f}"),
                ("wall time (s)", "wall_seconds", "{:.0f}"),
                ("parameters", "params", "{:.0f}"),
            ):
                assert rows[title][column] == fmt.format(results[key]), (cell, size, title)
        assert (tmp_path / f"curves_classify_{cell}_pixel_order.png").is_file()
    with (tmp_path / "report.csv").open() as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["done"] * 4


def test_a_killed_sweep_skips_finished_jobs_and_resumes_the_rest(tiny_mnist, tmp_path):
    command = [
        sys.executable,
        "-m",
        "experiments.train",
        "-m",
        *tiny_overrides(tiny_mnist),
        "cell=gru,lstm",
        "size=1x32",
        "trainer.max_epochs=4",
        f"hydra.sweep.dir={tmp_path}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "SEQRNN_DATA_DIR"}
    first, second = tmp_path / "classify-gru-1x32_0", tmp_path / "classify-lstm-1x32_1"
    sweep = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not (second / "checkpoints" / "last.ckpt").is_file():
        assert sweep.poll() is None and time.monotonic() < deadline, "sweep ended too early"
        time.sleep(0.02)
    os.killpg(sweep.pid, signal.SIGKILL)  # as a cluster's time limit or a Ctrl-\ would
    sweep.wait()
    assert (first / "results.json").is_file() and not (second / "results.json").is_file()
    done_before = (first / "results.json").stat().st_mtime_ns
    events = EventAccumulator(str(second / "tensorboard"))
    events.Reload()
    epochs_before = len(events.Scalars("val/loss"))
    assert 1 <= epochs_before < 4

    again = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "done before" in again.stdout
    assert (first / "results.json").stat().st_mtime_ns == done_before
    results = json.loads((second / "results.json").read_text())
    assert results["epochs"] == 4
    events = EventAccumulator(str(second / "tensorboard"))
    events.Reload()
    assert len(events.Scalars("val/loss")) == 4  # the epochs before the kill were kept
    assert {run.status for run in find_runs(tmp_path)} == {"done"}
