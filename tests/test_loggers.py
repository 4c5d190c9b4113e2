"""MLflow and CSV beside TensorBoard: one run logs its curves, settings, final metrics and files
to each, and MLflow's own client reads them back."""

import csv
import json

import pytest
from conftest import PROJECT_ROOT, run_entry, tiny_overrides


def test_a_run_logs_to_tensorboard_mlflow_and_csv_at_once(tiny_mnist, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="an extra: pip install -e '.[mlflow]'")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store: under the root
    run_dir, root, work = tmp_path / "run", tmp_path / "root", tmp_path / "work"
    root.mkdir()
    work.mkdir()
    result = run_entry(
        "train",
        *tiny_overrides(tiny_mnist, run_dir),
        "logger=[tensorboard,mlflow,csv]",
        f"paths.root={root}",
        "data.order=row",
        "trainer.max_epochs=2",
        env={"PYTHONPATH": str(PROJECT_ROOT)},
        cwd=work,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not any(work.iterdir())  # MLflow's files too are under the outputs root
    results = json.loads((run_dir / "results.json").read_text())
    assert (run_dir / "tensorboard").is_dir()

    client = mlflow.tracking.MlflowClient(f"sqlite:///{root}/mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name == "seqrnn-classify"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "gru-1x32"
    # the curve: one validation per epoch; the final metrics: results.json's numbers
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 2
    assert run.data.metrics["final/test_acc"] == pytest.approx(results["test_acc"])
    assert run.data.metrics["final/val_loss"] == pytest.approx(results["val_loss"])
    assert run.data.params["cell"] == "gru" and run.data.params["order"] == "row"
    files = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert files == {"results.json", "config.yaml"}
    assert (root / "mlartifacts").is_dir()

    with (run_dir / "csv" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    val_losses = [float(row["val/loss"]) for row in rows if row.get("val/loss")]
    assert len(val_losses) == 2
    assert val_losses[-1] == pytest.approx(
        client.get_metric_history(run.info.run_id, "val/loss")[-1].value
    )


def test_a_logger_whose_package_is_missing_is_refused_in_one_line(monkeypatch):
    from omegaconf import OmegaConf

    from experiments import _runs
    from seqrnn.errors import ConfigError

    monkeypatch.setitem(_runs.LOGGER_PACKAGES, "mlflow", ("seqrnn_absent", "pip install it"))
    cfg = OmegaConf.create({"logger": {"tensorboard": {}, "mlflow": {}}})
    with pytest.raises(ConfigError, match="logger=mlflow needs the seqrnn_absent package, not"):
        _runs.check_loggers(cfg)
